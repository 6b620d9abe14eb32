"""Faults injected with real processes: a bundle corrupted under a running gunicorn, a quality cycle SIGKILLed.

(A training worker SIGKILLed mid-job: tests/test_training.py::test_killed_worker_leaves_no_running_job_after_the_reaper.
 A quality cycle SIGKILLed mid-cycle: tests/test_quality_hardening.py::test_a_cycle_killed_with_sigkill_is_reaped_by_the_housekeeping_schedule.)
"""

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

import pytest

from quality.models import QualityAlert
from tests.cluster import ROOT, cluster_env, wait_for
from tests.fixtures_model import *  # noqa: F403
from tests.fixtures_model import _trained_bundle, register_bundle

pytestmark = pytest.mark.postgres


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(method: str, url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.django_db(transaction=True)
def test_a_bundle_corrupted_under_a_running_gunicorn_is_no_longer_served(trained_model, planner, tmp_path_factory, tmp_path):
    from erp.models import Item

    register_bundle(_trained_bundle(tmp_path_factory), "demo-v0")  # an older ready version to fall back to
    code = Item.objects.order_by("item_cd").values_list("item_cd", flat=True).first()
    port = _free_port()
    env = {**cluster_env(), "MODEL_RELOAD_INTERVAL": "0.2"}
    log = open(tmp_path / "gunicorn.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "routing_ml.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(base), timeout=60, message="gunicorn to answer")
        status, tokens = _http("POST", f"{base}/api/v1/auth/token/", {"username": planner.username, "password": "pw-" + planner.username})
        assert status == 200, tokens
        predict = lambda: _http("POST", f"{base}/api/v1/predictions/", {"item_codes": [code]}, tokens["access"])  # noqa: E731
        assert {predict()[1]["model_version"] for _ in range(6)} == {trained_model.label}  # both workers serve it

        victim = sorted(trained_model.artifact_dir.glob("*.npy"))[0]
        data = bytearray(victim.read_bytes())
        data[-1] ^= 0xFF
        victim.write_bytes(bytes(data))  # memory-mapped by both workers
        time.sleep(0.5)

        answers = [predict() for _ in range(8)]
        assert all(status == 200 for status, _ in answers), answers
        assert {body["model_version"] for _, body in answers} == {"demo-v0"}  # each worker fell back to a version that verifies
        alert = QualityAlert.objects.get(metric="model_files")
        assert alert.level == "critical" and victim.name in alert.message
        status, health = _http("GET", f"{base}/health")  # loopback: with details
        assert health["checks"]["model"]["status"] == "degraded" and health["checks"]["model"]["served_by_this_process"] == "demo-v0"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _up(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/health/db", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
