"""Faults injected with real processes (issue 13 point 8): a training worker SIGKILLed mid-job, a quality cycle
SIGKILLed mid-cycle, a bundle corrupted under a running gunicorn."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import pytest

from quality.models import QualityAlert
from tests.cluster import ROOT, cluster_env, gunicorn, http_json, wait_for
from tests.fixtures_model import *  # noqa: F403
from tests.fixtures_model import _trained_bundle, register_bundle

pytestmark = pytest.mark.postgres


@pytest.mark.cluster
@pytest.mark.django_db(transaction=True)
def test_a_training_worker_killed_mid_job_is_failed_within_the_heartbeat_timeout_leaving_nothing(tmp_path, settings):
    from pathlib import Path

    from django.core.management import call_command

    from registry.models import ModelVersion
    from tests.cluster import qcluster
    from training.models import TrainingJob

    call_command("seed_demo_erp", items=3000, seed=23, stdout=io.StringIO())
    job = TrainingJob.enqueue(label="killed", parameters={"candidates": ["baseline", "mlp", "stacking"]})
    with qcluster(tmp_path / "qcluster.log") as process:
        wait_for(lambda: TrainingJob.objects.get(pk=job.pk).status == "running", timeout=120, message="the job to start")
        os.killpg(process.pid, signal.SIGKILL)  # the machine dies mid-training
        process.wait()
    killed_at = time.monotonic()
    stuck = TrainingJob.objects.get(pk=job.pk)
    assert stuck.status == "running", stuck.log
    # The worker beats every 10 s: with a 15 s timeout its last beat is still fresh right after the kill.
    settings.TRAINING_HEARTBEAT_TIMEOUT = 15
    assert TrainingJob.reap_stale() == []
    wait_for(lambda: TrainingJob.reap_stale() == [job.pk], timeout=40, interval=0.5, message="the reaper to fail the job")
    assert time.monotonic() - killed_at <= settings.TRAINING_HEARTBEAT_TIMEOUT + 1  # failed within the heartbeat timeout
    job.refresh_from_db()
    assert job.status == "failed" and "no heartbeat" in job.error
    assert not ModelVersion.objects.exists()
    # no version directory, no temporary one (the ERP snapshot is the trainings' cache, not the job's)
    assert not [p for p in Path(settings.MODEL_ROOT).iterdir() if p.name != "erp_snapshot"]


@pytest.mark.django_db(transaction=True)
def test_a_cycle_killed_with_sigkill_is_reaped_by_the_housekeeping_schedule(trained_model, settings):
    """A real `run_quality_cycle --sync` process, SIGKILLed mid-cycle: its row stays running until the heartbeat timeout, then is failed."""
    import os
    import signal

    from django_q.models import Schedule
    from django_q.tasks import async_task

    from quality.models import QualityCycle

    env = {**cluster_env(), "QUALITY_CYCLE_HEARTBEAT_INTERVAL": "0.2"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_quality_cycle", "--sync", "--sample-size", "10000"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        running = wait_for(lambda: QualityCycle.objects.filter(status="running").first(), timeout=90, interval=0.02, message="a running cycle")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert QualityCycle.objects.get(pk=running.pk).status == "running"  # killed: nobody closed it

    settings.QUALITY_CYCLE_HEARTBEAT_TIMEOUT = 1
    time.sleep(1.5)
    schedule = Schedule.objects.get(name="quality-housekeeping")
    async_task(schedule.func, sync=True)  # as the cluster runs it every minute
    reaped = QualityCycle.objects.get(pk=running.pk)
    assert reaped.status == "failed" and reaped.error.startswith("Reaped: no heartbeat for 1 s")
    assert QualityCycle.request().status == "queued"  # it no longer blocks the next cycle


@pytest.mark.django_db(transaction=True)
def test_a_bundle_corrupted_under_a_running_gunicorn_is_no_longer_served(trained_model, planner, tmp_path_factory, tmp_path):
    from erp.models import Item

    register_bundle(_trained_bundle(tmp_path_factory), "demo-v0")  # an older ready version to fall back to
    code = Item.objects.order_by("item_cd").values_list("item_cd", flat=True).first()
    env = {**cluster_env(), "MODEL_RELOAD_INTERVAL": "0.2"}
    with gunicorn(tmp_path / "gunicorn.log", env) as base:
        status, tokens = http_json("POST", f"{base}/api/v1/auth/token/", {"username": planner.username, "password": "pw-" + planner.username})
        assert status == 200, tokens
        predict = lambda: http_json("POST", f"{base}/api/v1/predictions/", {"item_codes": [code]}, tokens["access"])  # noqa: E731
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
        status, health = http_json("GET", f"{base}/health")  # loopback: with details
        assert health["checks"]["model"]["status"] == "degraded" and health["checks"]["model"]["served_by_this_process"] == "demo-v0"
