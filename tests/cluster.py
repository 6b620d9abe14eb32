"""Run real processes against the test database: a django-q2 cluster (`manage.py qcluster`), gunicorn."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
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
        _stop(process)
        if log_path:
            log.close()


@contextmanager
def gunicorn(log_path: Path, env: dict | None = None, workers: int = 2, timeout: int = 120):
    """gunicorn serving the app on a free loopback port for the duration of the block, once it answers; yields its base URL."""
    port = free_port()
    log = open(log_path, "w")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "routing_ml.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--timeout", str(timeout)],
        cwd=ROOT, env=env or cluster_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(base), timeout=60, message="gunicorn to answer")
        yield base
    finally:
        _stop(process)
        log.close()


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group, SIGKILL after 30 s; always reaped."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(base: str) -> bool:
    """Whether a server answers HTTP at `base` (any status)."""
    try:
        with urllib.request.urlopen(f"{base}/health/db", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def http_json(method: str, url: str, body: dict | None = None, token: str | None = None, timeout: float = 30) -> tuple[int, dict]:
    """(status, decoded JSON body) of one real HTTP request, error statuses included."""
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for(predicate, timeout: float, interval: float = 0.5, message: str = "condition"):
    """Poll until predicate() is truthy; its value is returned. Fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}")
