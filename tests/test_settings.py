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
    ],
)
def test_bad_environment_value_fails_start_naming_the_variable(variable, value, tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3", variable: value}
    result = run_django(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr


def test_production_mode_without_secret_key_refuses_to_start(tmp_path):
    result = run_django({"DEBUG": "false", "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"})
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


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


def test_erp_database_url_adds_a_routed_alias(tmp_path):
    code = (
        "import django; django.setup(); from django.conf import settings; from django.db import router; from erp.models import Item; "
        "from registry.models import ModelVersion; print(sorted(settings.DATABASES), router.db_for_read(Item), router.db_for_read(ModelVersion), Item._meta.managed)"
    )
    result = run_django({"DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3", "ERP_DATABASE_URL": f"sqlite:///{tmp_path}/erp.sqlite3"}, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["['default',", "'erp']", "erp", "default", "False"]
