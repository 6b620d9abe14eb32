"""deploy/: the gunicorn config loads, and the systemd units start what the README says, with one shared environment."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "deploy" / "systemd"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(SYSTEMD / name)
    return parser


def test_gunicorn_config_is_valid():
    gunicorn = Path(sys.executable).parent / "gunicorn"
    result = subprocess.run([str(gunicorn), "--check-config", "-c", "deploy/gunicorn.conf.py", "routing_ml.wsgi"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_units_run_the_web_the_default_cluster_and_the_training_cluster():
    env_example = dict(line.split("=", 1) for line in (SYSTEMD / "routing-ml.env.example").read_text().splitlines() if "=" in line and not line.startswith("#"))
    web, default, training = (unit(f"routing-ml-{n}.service") for n in ("web", "cluster", "cluster-training"))
    assert "gunicorn -c deploy/gunicorn.conf.py routing_ml.wsgi" in web["Service"]["ExecStart"]
    for service in (default, training):
        assert service["Service"]["ExecStart"].endswith("manage.py qcluster")
    assert "Environment" not in default["Service"]  # the default queue: no Q_CLUSTER_NAME
    assert training["Service"]["Environment"] == f"Q_CLUSTER_NAME={env_example['TRAINING_CLUSTER']}"
    for service in (web, default, training):
        assert service["Service"]["EnvironmentFile"] == "/etc/routing-ml/routing-ml.env"
    assert (ROOT / "deploy" / "gunicorn.conf.py").is_file() and (ROOT / "manage.py").is_file()
