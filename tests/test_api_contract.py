"""The OpenAPI schema is truthful: schemathesis drives every operation of a live gunicorn with generated requests.

Bounded (a few examples per operation, deterministic generation): 0 server errors, 0 responses that
contradict the schema, 0 statuses the schema does not document.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from tests.cluster import ROOT, cluster_env, wait_for
from tests.fixtures_model import *  # noqa: F403
from tests.test_faults import _free_port, _up

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@pytest.mark.django_db(transaction=True)
def test_every_operation_answers_as_the_schema_says(trained_model, ml_admin, tmp_path):
    tokens = APIClient().post("/api/v1/auth/token/", {"username": ml_admin.username, "password": "pw-" + ml_admin.username}, format="json").json()
    port = _free_port()
    env = {**cluster_env(), "QUALITY_CYCLE_HEARTBEAT_INTERVAL": "0"}
    log = open(tmp_path / "gunicorn.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "routing_ml.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--timeout", "120"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(base), timeout=60, message="gunicorn to answer")
        command = [
            str(Path(sys.executable).parent / "schemathesis"), "run", f"{base}/api/schema/?format=json", "--url", base,
            "-H", f"Authorization: Bearer {tokens['access']}", "--checks", CHECKS, "--max-examples", "8",
            "--phases", "examples,coverage,fuzzing", "--generation-deterministic", "--no-color",
            # The token endpoints would rotate and blacklist the token this run authenticates with; they have their own tests.
            "--exclude-path-regex", "^/api/v1/auth/",
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
        (tmp_path / "schemathesis.txt").write_text(result.stdout)
        assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-3000:]
        counts = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
        assert counts and int(counts[1]) >= 500 and counts[1] == counts[2], result.stdout[-3000:]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
