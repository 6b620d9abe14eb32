"""The whole quality loop on seeded data with drift, with the retraining on a real qcluster.

healthy cycle → drift → cycle with a critical MAE alert → retraining job (trigger quality_alert)
→ the cluster trains → the gate scores challenger and champion on the same sample → activation
→ next cycle back under the threshold → the critical alert resolves itself.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command

from quality.cycle import run_cycle
from quality.models import QualityAlert, QualityCycle, QualitySettings
from registry.models import DeploymentEvent, ModelVersion
from training.models import TrainingJob

from .cluster import qcluster, wait_for

# Database-facing: run again on PostgreSQL by `make test` (see the Makefile).
pytestmark = pytest.mark.postgres


def cycle_json(**options) -> dict:
    out = io.StringIO()
    call_command("run_quality_cycle", sync=True, json=True, stdout=out, **options)
    return json.loads(out.getvalue().strip().splitlines()[-1])


@pytest.mark.cluster
@pytest.mark.django_db(transaction=True)
def test_drift_alert_retrains_on_the_cluster_gates_and_recovers(tmp_path):
    call_command("seed_demo_erp", items=2000, seed=5, stdout=io.StringIO())
    call_command("train", sync=True, label="champion", candidates="baseline", activate=True, stdout=io.StringIO(), stderr=io.StringIO())
    cfg = QualitySettings.current()

    healthy = cycle_json()
    assert healthy["status"] == "succeeded" and healthy["model_version"] == "champion"
    report = json.loads(Path(QualityCycle.objects.get(pk=healthy["cycle"]).report_path).read_text())
    # Graded on the monitoring set: no evaluated item was seen by a learned part of the champion.
    assert report["population"]["evaluated_in_learned_fit"] == 0
    population = report["population"]
    assert population["from_monitoring_set"] > 0
    assert population["from_monitoring_set"] + population["from_outside_learned_fits"] == healthy["items_sampled"]
    assert healthy["items_evaluated"] > 100 and healthy["items_failed"] == 0
    assert healthy["mae"] < cfg.mae_warning
    assert healthy["process_match"] > cfg.process_match_warning
    assert not QualityAlert.objects.critical().exists()
    assert healthy["retraining_job"] is None

    call_command("simulate_drift", items=5000, stdout=io.StringIO())
    degraded = cycle_json()
    assert degraded["mae"] > cfg.mae_critical, degraded
    critical = QualityAlert.objects.get(cycle_id=degraded["cycle"], metric="mae")
    assert (critical.level, critical.error_code, critical.status) == ("critical", 3001, "open")
    assert critical.value == pytest.approx(degraded["mae"]) and critical.threshold == cfg.mae_critical
    job = TrainingJob.objects.get(pk=degraded["retraining_job"])
    assert job.trigger == "quality_alert" and job.status == "queued"
    assert job.parameters["gate"] is True and job.parameters["quality_cycle"] == degraded["cycle"]
    # The gate will score on the alerting cycle's sample, so the job must keep those items out of its time estimators.
    sample = json.loads(Path(QualityCycle.objects.get(pk=degraded["cycle"]).report_path).read_text())["sample"]["items"]
    assert job.parameters["gate_items"] == sample and len(sample) == degraded["items_sampled"]

    # A second cycle while the job waits must not pile up another retraining (cooldown).
    again = run_cycle()
    assert again.retraining_job is None and "cooldown" in again.retraining_decision

    with qcluster(tmp_path / "qcluster.log"):
        wait_for(lambda: TrainingJob.objects.get(pk=job.pk).is_terminal, timeout=300, message="the retraining job")
    job.refresh_from_db()
    assert job.status == "succeeded", job.error + (tmp_path / "qcluster.log").read_text()[-3000:]
    gate = job.gate
    assert gate["champion"] == "champion" and gate["challenger"] == job.model_version.label
    assert gate["deployed"] is True, gate
    manifest = json.loads((job.model_version.artifact_dir / "manifest.json").read_text())
    assert manifest["gate_items_excluded"] == len(sample) and manifest["time_fit_excluded_items"] >= len(sample)
    # No learned part of either version was fitted on an item the gate scored them on.
    from registry.loader import loader

    fitted = set(loader.get("champion")[1].fit_codes.tolist()) | set(loader.get(job.model_version.label)[1].fit_codes.tolist())
    assert gate["population"]["fitted_by_either"] == len(fitted) > 0
    assert gate["sample_size"] > 0
    assert gate["challenger_metrics"]["mae"] <= gate["champion_metrics"]["mae"] * (1 - cfg.min_improvement_pct / 100)
    assert gate["challenger_metrics"]["process_match"] >= gate["champion_metrics"]["process_match"] - 0.005
    active = ModelVersion.objects.get_active()
    assert active == job.model_version
    event = DeploymentEvent.objects.get(to_version=active)
    assert event.kind == "auto_deploy" and event.from_version.label == "champion"
    assert event.details["challenger_metrics"]["mae"] == gate["challenger_metrics"]["mae"]

    recovered = cycle_json()
    assert recovered["model_version"] == active.label
    assert recovered["mae"] < cfg.mae_critical < degraded["mae"]
    assert recovered["mae"] < degraded["mae"] * 0.7
    critical.refresh_from_db()
    assert critical.status == "resolved" and f"cycle {recovered['cycle']}" in critical.resolution
    assert not QualityAlert.objects.open().critical().exists()
    assert recovered["retraining_job"] is None
