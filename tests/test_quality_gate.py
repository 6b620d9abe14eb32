"""The deployment gate's decision is visible where ML admins and integrations look at a training job."""

from __future__ import annotations

import pytest
from django.urls import reverse

from quality.gate import run_gate
from tests.fixtures_model import *  # noqa: F403  (demo_erp, trained_model)
from tests.fixtures_model import _trained_bundle, register_bundle
from training.models import TrainingJob


@pytest.fixture
def gated_job(trained_model, tmp_path_factory):
    """A retraining job whose challenger (the same bundle again) was gated against the active champion: not better, kept."""
    challenger = register_bundle(_trained_bundle(tmp_path_factory), "demo-v2")
    job = TrainingJob.enqueue(label="demo-v2-job", parameters={"gate": True}, trigger=TrainingJob.Trigger.QUALITY_ALERT, run_inline=True)
    run_gate(job, challenger)
    job.refresh_from_db()
    return job


def test_gate_decision_and_both_scores_show_on_the_job_admin_page(client, ml_admin, gated_job):
    gate = gated_job.gate
    assert gate["deployed"] is False and gate["champion"] == "demo-v1" and gate["challenger"] == "demo-v2"
    client.force_login(ml_admin)
    page = client.get(reverse("admin:training_trainingjob_change", args=[gated_job.pk])).content.decode()
    assert "deployment gate" in page.lower() and "kept, not deployed" in page
    assert "is not 5% better than champion MAE" in page
    assert f"sample {gate['sample_size']} items" in page
    assert "<th>champion demo-v1</th><th>challenger demo-v2</th>" in page
    champion_mae, challenger_mae = gate["champion_metrics"]["mae"], gate["challenger_metrics"]["mae"]
    assert f"<tr><td>mae</td><td>{champion_mae:.3f}</td><td>{challenger_mae:.3f}</td></tr>" in page


def test_a_job_without_a_gate_says_so_on_its_admin_page(client, ml_admin):
    job = TrainingJob.enqueue(label="plain", run_inline=True)
    client.force_login(ml_admin)
    page = client.get(reverse("admin:training_trainingjob_change", args=[job.pk])).content.decode()
    assert "no gate: only retraining jobs that ask for it are gated" in page


def test_training_job_api_returns_the_gate_record(planner_api, gated_job):
    body = planner_api.get(f"/api/v1/training/jobs/{gated_job.pk}/").json()
    gate = body["gate"]
    assert gate == gated_job.gate
    assert (gate["deployed"], gate["better"], gate["champion"], gate["challenger"]) == (False, False, "demo-v1", "demo-v2")
    assert gate["challenger_metrics"]["mae"] == pytest.approx(gate["champion_metrics"]["mae"]) and "not 5% better" in gate["reason"]
    listed = planner_api.get("/api/v1/training/jobs/").json()["results"]
    assert [job["gate"]["deployed"] for job in listed if job["id"] == gated_job.pk] == [False]
