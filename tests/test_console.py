"""Console output: commands print a short human summary; --json keeps the full record for scripts."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.postgres


@pytest.fixture
def trained_output(db) -> str:
    call_command("seed_demo_erp", items=300, seed=61, stdout=io.StringIO())
    out = io.StringIO()
    call_command("train", sync=True, label="console", candidates="baseline", activate=True, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_train_prints_a_short_summary_and_json_on_request(trained_output):
    lines = trained_output.strip().splitlines()
    assert lines[0].startswith("Model version console is ready and active (job ")
    assert "process match 0." in lines[1] and "min/unit" in lines[1]
    assert lines[2].startswith("  trained on 300 items, ") and "candidates: baseline" in lines[2]
    assert len(lines) <= 5 and len(trained_output) < 800

    out = io.StringIO()
    call_command("train", sync=True, json=True, label="console-json", candidates="baseline", stdout=out, stderr=io.StringIO())
    record = json.loads(out.getvalue().strip().splitlines()[-1])
    assert record["label"] == "console-json" and "process_match" in record["metrics"]


def test_quality_cycle_prints_a_short_summary_and_json_on_request(trained_output):
    out = io.StringIO()
    call_command("run_quality_cycle", sync=True, sample_size=20, strategy="random", stdout=out)
    text = out.getvalue()
    lines = text.strip().splitlines()
    assert lines[0].startswith("Quality cycle ") and "succeeded on model console: 20 of 20 items evaluated" in lines[0]
    assert lines[1].startswith("  MAE ") and "process match" in lines[1]
    assert len(lines) <= 7 and len(text) < 800

    out = io.StringIO()
    call_command("run_quality_cycle", sync=True, json=True, sample_size=20, strategy="random", stdout=out)
    assert json.loads(out.getvalue().strip().splitlines()[-1])["items_evaluated"] == 20
