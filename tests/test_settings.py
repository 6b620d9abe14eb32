"""Settings come from the environment; bad values stop the start with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_django(env_overrides: dict, code: str = "import django; django.setup(); print('ok')", tmp_path=None):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "ERP_DATABASE_URL", "DEBUG", "SECRET_KEY", "REDIS_URL"}}
    env.update({"DJANGO_SETTINGS_MODULE": "routing_ml.settings", **env_overrides})
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "variable, value",
    [
        ("DEBUG", "perhaps"),
        ("DATABASE_URL", "nosuchdb://x/y"),
        ("ERP_DATABASE_URL", "nosuchdb://x/y"),
        ("REDIS_URL", "http://localhost:6379"),
        ("MODEL_RELOAD_INTERVAL", "soon"),
        ("PREDICTION_BATCH_LIMIT", "many"),
        ("METRICS_ALLOWED_IPS", "10.0.0.0/8,not-an-address"),
        ("HTTPS", "maybe"),
    ],
)
def test_bad_environment_value_fails_start_naming_the_variable(variable, value, tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3", variable: value}
    result = run_django(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr


def test_production_is_the_default_and_its_secret_key_is_generated_once_and_kept(tmp_path):
    key_file = tmp_path / "var" / "secret_key"
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3", "SECRET_KEY_FILE": str(key_file)}
    code = "import django; django.setup(); from django.conf import settings; print(settings.DEBUG, settings.SECRET_KEY)"
    first, second = run_django(env, code), run_django(env, code)
    assert first.returncode == 0, first.stderr
    debug, key = first.stdout.split()
    assert debug == "False" and len(key) >= 50 and len(set(key)) >= 5
    assert second.stdout.split() == [debug, key]  # reused, not regenerated
    assert key_file.read_text().strip() == key and (key_file.stat().st_mode & 0o777) == 0o600


def test_secret_key_file_that_cannot_be_written_stops_the_start_naming_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = run_django({"DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3", "SECRET_KEY_FILE": str(blocker / "secret_key")})
    assert result.returncode != 0 and "ImproperlyConfigured" in result.stderr and "SECRET_KEY" in result.stderr


def test_make_run_settings_answer_an_unknown_page_without_the_debug_listing(tmp_path):
    """What `make run` serves with (no DEBUG, no SECRET_KEY, HTTPS=false): a plain 404, not Django's list of every URL."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3", "SECRET_KEY_FILE": str(tmp_path / "secret_key"), "HTTPS": "false"}
    code = (
        "import django; django.setup(); from django.core.management import call_command; call_command('migrate', verbosity=0); "
        "from django.test import Client; r = Client().get('/no-such-page/', HTTP_HOST='localhost'); "
        "print(r.status_code, b'URLconf' in r.content, Client().get('/health', HTTP_HOST='evil.example').status_code)"
    )
    result = run_django(env, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-3:] == ["404", "False", "400"]  # plain 404; unknown hosts refused (ALLOWED_HOSTS)


def test_make_run_passes_production_settings_to_the_servers():
    dry = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    serve = next(line for line in dry.splitlines() if "scripts/serve.sh" in line)
    assert "HTTPS=false" in serve and "DEBUG" not in dry


def test_check_deploy_is_clean_in_production_mode(tmp_path):
    env = {
        "DEBUG": "false",
        "SECRET_KEY": "x7#k2!Lr9@qP0zV$w3Tn8&bYc5^mH1jD6fG4sA-eU_iO+lKQ-more-random-9Zr",
        "ALLOWED_HOSTS": "routing.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        "MODEL_ROOT": str(tmp_path / "models"),
    }
    code = "import sys; from django.core.management import execute_from_command_line; execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])"
    result = run_django(env, code)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_sqlite_default_uses_wal_and_immediate_transactions(settings):
    assert settings.DATABASES["default"]["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert settings.DATABASES["default"]["OPTIONS"]["timeout"] >= 5


@pytest.mark.django_db
def test_sqlite_connection_is_in_wal_mode():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        mode = cursor.fetchone()[0]
    # The test database is a file (a real qcluster shares it), so it must be in WAL mode like production.
    assert mode == "wal"


def test_sqlite_connection_is_kept_from_one_request_to_the_next(tmp_path):
    # What a gunicorn worker does around each request: opening and closing the SQLite connection
    # (PRAGMAs, WAL checkpoint on the last close) cost more than a one-item prediction.
    code = (
        "import django; django.setup(); from django.core.signals import request_finished, request_started; "
        "from django.db import connection; "
        "request_started.send(None); connection.ensure_connection(); first = connection.connection; request_finished.send(None); "
        "request_started.send(None); connection.ensure_connection(); print(connection.connection is first)"
    )
    result = run_django({"DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"}, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_erp_database_url_adds_a_routed_alias(tmp_path):
    code = (
        "import django; django.setup(); from django.conf import settings; from django.db import router; from erp.models import Item; "
        "from registry.models import ModelVersion; print(sorted(settings.DATABASES), router.db_for_read(Item), router.db_for_read(ModelVersion), Item._meta.managed)"
    )
    result = run_django({"DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3", "ERP_DATABASE_URL": f"sqlite:///{tmp_path}/erp.sqlite3"}, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["['default',", "'erp']", "erp", "default", "False"]
