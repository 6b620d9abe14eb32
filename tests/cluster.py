"""Run a real django-q2 cluster (`manage.py qcluster`) against the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def cluster_env() -> dict:
    """The environment a subprocess needs to see exactly what this test sees."""
    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="routing_ml.settings",
        MODEL_ROOT=str(settings.MODEL_ROOT),
        QUALITY_REPORT_ROOT=str(settings.QUALITY_REPORT_ROOT),
        Q_WORKERS="1",
        LOG_LEVEL="WARNING",
    )
    if db["ENGINE"].endswith("sqlite3"):
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    else:
        env["DATABASE_URL"] = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    return env


@contextmanager
def qcluster(log_path: Path | None = None):
    """A qcluster process for the duration of the block; stopped (and reaped) whatever happens."""
    log = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=cluster_env(), stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if log_path:
            log.close()


def wait_for(predicate, timeout: float, interval: float = 0.5, message: str = "condition"):
    """Poll until predicate() is truthy; its value is returned. Fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}")
