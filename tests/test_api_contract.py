"""The OpenAPI schema is truthful: schemathesis drives every operation of a live gunicorn with generated requests.

Bounded (a few examples per operation, deterministic generation): 0 server errors, 0 responses that
contradict the schema, 0 statuses the schema does not document.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from tests.cluster import cluster_env, gunicorn
from tests.fixtures_model import *  # noqa: F403

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@pytest.mark.django_db(transaction=True)
def test_every_operation_answers_as_the_schema_says(trained_model, ml_admin, tmp_path):
    tokens = APIClient().post("/api/v1/auth/token/", {"username": ml_admin.username, "password": "pw-" + ml_admin.username}, format="json").json()
    env = {**cluster_env(), "QUALITY_CYCLE_HEARTBEAT_INTERVAL": "0"}
    with gunicorn(tmp_path / "gunicorn.log", env) as base:
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
