"""Training jobs end to end: the command, the cluster, cancellation, failures, the reaper, the queue."""

from __future__ import annotations

import io
import json
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from erp import snapshot
from registry.models import ModelVersion
from routing_ml.errors import QueueFull
from training import pipeline
from training.engine.config import CANDIDATES
from training.models import TrainingJob
from training.signals import version_trained
from training.tasks import housekeeping

from .cluster import qcluster, wait_for

# Database-facing: run again on PostgreSQL by `make test` (see the Makefile).
pytestmark = pytest.mark.postgres

SMALL = 400


@pytest.fixture
def small_erp(db):
    call_command("seed_demo_erp", items=SMALL, seed=21, stdout=io.StringIO())


def train_sync(**options) -> dict:
    out = io.StringIO()
    call_command("train", sync=True, json=True, stdout=out, stderr=io.StringIO(), **options)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def leftover_dirs() -> list[str]:
    """What jobs left under MODEL_ROOT; the ERP snapshot is the trainings' shared cache, not a job's artifact."""
    return sorted(p.name for p in Path(settings.MODEL_ROOT).iterdir() if p.name != snapshot.DIRNAME)


def test_train_sync_registers_a_ready_version_with_held_out_scores_of_every_candidate(small_erp):
    result = train_sync(label="first", candidates=",".join(CANDIDATES), activate=True)
    version = ModelVersion.objects.get(label="first")
    assert result["label"] == "first" and result["active"] is True
    assert version.status == "ready" and version.is_active
    assert set(version.candidate_scores) == set(CANDIDATES)
    for name, scores in version.candidate_scores.items():
        assert scores["items_evaluated"] > 0, name
        assert scores["trim_mae"] is not None and scores["trim_mae"] >= 0, name
    assert version.selected_estimator in CANDIDATES
    assert 0 < version.metrics["process_match"] <= 1
    # Dataset statistics describe what the model learned from.
    from erp.data import load_current_routings

    routings = load_current_routings()
    assert version.total_samples == len(routings)
    assert version.unique_items == routings["ITEM_CD"].nunique()
    assert version.unique_processes == routings["JOB_CD"].nunique()
    assert version.dataset_stats["feature_profile"]
    # The bundle is on disk under its label with a manifest that pins every file.
    files = {p.name for p in version.artifact_dir.iterdir()}
    assert {"manifest.json", "metrics.json", "training_request.json", "feature_weights.json"} <= files
    manifest = version.verify_artifacts()
    assert {"metrics.json", "training_request.json", "feature_weights.json"} <= set(manifest["files"])
    assert json.loads((version.artifact_dir / "metrics.json").read_text())["metrics"] == version.metrics
    job = TrainingJob.objects.get(model_version=version)
    assert job.status == "succeeded" and job.progress == 100
    assert "registered model version first" in job.log
    assert leftover_dirs() == ["first"]


def test_train_with_empty_erp_fails_cleanly(db):
    with pytest.raises(CommandError, match="no routings"):
        train_sync(label="nothing")
    job = TrainingJob.objects.get(label="nothing")
    assert job.status == "failed" and job.error_code == 1004
    assert not ModelVersion.objects.exists()
    assert leftover_dirs() == []


def test_failure_while_registering_leaves_no_version_and_no_directory(small_erp, monkeypatch):
    def broken_create(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(ModelVersion.objects, "create", broken_create)
    with pytest.raises(CommandError, match="database went away"):
        train_sync(label="broken", candidates="baseline")
    assert TrainingJob.objects.get(label="broken").status == "failed"
    assert not ModelVersion.objects.filter(label="broken").exists()
    assert leftover_dirs() == []


def test_failure_after_registration_removes_the_version_and_its_directory(small_erp, monkeypatch):
    from registry.models import ModelVersion as Version
    from routing_ml.errors import ArtifactError

    def unreadable(self):
        raise ArtifactError(f"Model version {self.label} cannot be served: disk unreadable")

    monkeypatch.setattr(Version, "verify_artifacts", unreadable)  # activation is the step that fails
    with pytest.raises(CommandError, match="disk unreadable"):
        train_sync(label="half-done", candidates="baseline", activate=True)
    job = TrainingJob.objects.get(label="half-done")
    assert job.status == "failed" and job.error_code == 1004
    assert "registered model version half-done" in job.log and "removed model version half-done" in job.log
    assert not ModelVersion.objects.exists()
    assert leftover_dirs() == []


def test_failure_after_the_version_went_live_keeps_it_and_the_job_succeeds(small_erp):
    def auto_deploy(sender, job, version, **kwargs):  # as the quality gate does with auto_deploy on
        version.activate(reason="auto-deploy in test")

    version_trained.connect(auto_deploy, dispatch_uid="test-auto-deploy")
    try:
        # --activate then fails: the version is already active.
        result = train_sync(label="live", candidates="baseline", activate=True)
    finally:
        version_trained.disconnect(dispatch_uid="test-auto-deploy")
    job = TrainingJob.objects.get(label="live")
    assert job.status == "succeeded" and job.model_version.label == "live"
    assert "live is live, but a later step failed: InvalidTransition" in job.log and "already active" in job.log
    assert result["active"] is True and ModelVersion.objects.get_active().label == "live"
    assert leftover_dirs() == ["live"]


def test_interrupted_sync_training_fails_the_job_and_leaves_no_directory(small_erp, monkeypatch):
    from training.engine.model import RoutingModel

    real_save = RoutingModel.save

    def save_then_ctrl_c(self, directory):
        real_save(self, directory)
        raise KeyboardInterrupt  # Ctrl-C while the bundle is in its temporary directory

    monkeypatch.setattr(RoutingModel, "save", save_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        train_sync(label="ctrl-c", candidates="baseline")
    job = TrainingJob.objects.get(label="ctrl-c")
    assert job.status == "failed" and job.error.startswith("interrupted (KeyboardInterrupt) during 'saving the bundle'")
    assert not TrainingJob.objects.in_flight().exists()
    assert not ModelVersion.objects.exists() and leftover_dirs() == []



@pytest.mark.parametrize("outcome", ["failed", "cancelled"])
def test_a_training_that_stops_reports_only_once_its_snapshot_write_has_landed(small_erp, monkeypatch, outcome):
    """The refreshed ERP snapshot is written beside the engine; a job that fails or is cancelled meanwhile
    waits for that write before it reports, so nothing of it is still running once it says it stopped."""
    import threading

    from training import engine
    from training.engine import TrainingCancelled

    release, landed = threading.Event(), threading.Event()
    real_write = snapshot._write_generation

    def slow_write(*args, **kwargs):
        assert release.wait(30)
        result = real_write(*args, **kwargs)
        landed.set()
        return result

    def engine_stops(*args, **kwargs):
        threading.Timer(0.5, release.set).start()  # the write is still going when the engine stops
        raise TrainingCancelled("cancelled on request") if outcome == "cancelled" else MemoryError("the engine ran out of memory")

    reported = []
    for method in ("fail", "mark_cancelled"):
        real = getattr(TrainingJob, method)

        def spy(self, *args, _real=real, **kwargs):
            reported.append(landed.is_set())
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(TrainingJob, method, spy)
    monkeypatch.setattr(snapshot, "_write_generation", slow_write)
    monkeypatch.setattr(engine, "train", engine_stops)
    with pytest.raises(CommandError, match="cancelled" if outcome == "cancelled" else "out of memory"):
        train_sync(label="stops", candidates="baseline")
    assert TrainingJob.objects.get(label="stops").status == outcome
    assert reported == [True]  # it reported once, after the write had landed
    assert snapshot.load_manifest() is not None and leftover_dirs() == []

def test_cancellation_is_honoured_between_stages(small_erp, monkeypatch):
    real_load = pipeline.load_frames

    def load_then_cancel(parameters, **kwargs):
        frames = real_load(parameters, **kwargs)
        TrainingJob.objects.filter(label="cancel-me").get().cancel(by=None)  # someone presses Cancel meanwhile
        return frames

    monkeypatch.setattr(pipeline, "load_frames", load_then_cancel)
    with pytest.raises(CommandError, match="cancelled"):
        train_sync(label="cancel-me", candidates="baseline")
    job = TrainingJob.objects.get(label="cancel-me")
    assert job.status == "cancelled"
    assert not ModelVersion.objects.exists() and leftover_dirs() == []


def test_queued_job_cancels_at_once_and_finished_job_refuses(db):
    job = TrainingJob.enqueue(label="queued", run_inline=True)
    job.cancel()
    assert job.status == "cancelled"
    with pytest.raises(Exception, match="cannot be cancelled"):
        job.cancel()


def test_queue_capacity_refuses_the_next_job_with_1003(db, admin_api):
    for i in range(3):
        TrainingJob.enqueue(label=f"q{i}", run_inline=True)
    with pytest.raises(QueueFull) as caught:
        TrainingJob.enqueue(label="q3", run_inline=True)
    assert caught.value.code == 1003
    response = admin_api.post("/api/v1/training/jobs/", {"candidates": ["baseline"]}, format="json")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == 1003
    assert TrainingJob.objects.count() == 3


def test_reaper_fails_a_running_job_whose_heartbeat_stopped(db):
    job = TrainingJob.enqueue(label="orphan", run_inline=True)
    assert job.start()
    stale = timezone.now() - timedelta(seconds=settings.TRAINING_HEARTBEAT_TIMEOUT + 60)
    TrainingJob.objects.filter(pk=job.pk).update(heartbeat_at=stale)
    leftover = Path(settings.MODEL_ROOT) / ".tmp-orphan-1234"
    leftover.mkdir()
    fresh = TrainingJob.enqueue(label="alive", run_inline=True)
    fresh.start()
    assert housekeeping() == {"reaped": [job.pk]}
    job.refresh_from_db()
    fresh.refresh_from_db()
    assert job.status == "failed" and "no heartbeat" in job.error
    assert fresh.status == "running"
    assert not leftover.exists()


def test_reaper_fails_a_queued_job_nobody_started_and_frees_its_queue_place(db):
    lost = [TrainingJob.enqueue(label=f"lost{i}", run_inline=True) for i in range(3)]  # e.g. `train --sync` killed before it started
    window = settings.Q_CLUSTER["retry"]
    assert window > settings.TRAINING_TIMEOUT
    TrainingJob.objects.filter(pk__in=[j.pk for j in lost]).update(created_at=timezone.now() - timedelta(seconds=window + 60))
    with pytest.raises(QueueFull):
        TrainingJob.enqueue(label="blocked", run_inline=True)
    waiting = TrainingJob.objects.filter(pk=lost[2].pk)
    waiting.update(created_at=timezone.now() - timedelta(seconds=window - 60))  # still within the window: may be waiting for a worker
    running = TrainingJob.objects.get(pk=lost[1].pk)
    assert running.start()  # an old job a live `--sync` process is running: its heartbeat is fresh

    assert housekeeping() == {"reaped": [lost[0].pk]}
    reaped = TrainingJob.objects.get(pk=lost[0].pk)
    assert reaped.status == "failed" and reaped.error.startswith("never started: queued since")
    assert f"retry window ({window} s)" in reaped.error
    assert TrainingJob.objects.get(pk=lost[1].pk).status == "running"
    assert waiting.get().status == "queued"
    assert TrainingJob.enqueue(label="next", run_inline=True).status == "queued"


def test_job_whose_task_cannot_be_enqueued_fails_at_once(admin_api, monkeypatch, django_capture_on_commit_callbacks):
    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr("django_q.tasks.async_task", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_api.post("/api/v1/training/jobs/", {"candidates": ["baseline"], "label": "unsent"}, format="json")
    assert response.status_code == 202
    job = TrainingJob.objects.get(label="unsent")
    assert job.status == "failed" and job.error_code == 1004
    assert "could not hand the job to the task queue (ConnectionError: broker unreachable)" in job.error
    assert not TrainingJob.objects.in_flight().exists()


def test_train_until_includes_the_named_day(small_erp):
    from erp.models import WorkResult

    day = WorkResult.objects.order_by("report_dt")[WorkResult.objects.count() // 2].report_dt.date()
    assert WorkResult.objects.filter(report_dt__date=day).exists()
    train_sync(label="as-of", candidates="baseline", until=day.isoformat())
    version = ModelVersion.objects.get(label="as-of")
    assert version.training_cutoff.date() == day  # the newest work result learned from is of that day
    assert TrainingJob.objects.get(label="as-of").parameters["until"] == day.isoformat()


@pytest.mark.parametrize("bad", ["2026-13-01", "yesterday", "31.03.2026"])
def test_train_refuses_an_until_that_is_not_a_date(db, bad):
    with pytest.raises(CommandError, match=r"--until must be a date as YYYY-MM-DD"):
        train_sync(label="bad-until", until=bad)
    assert not TrainingJob.objects.exists()


def test_candidate_selection_uses_the_admin_min_improvement_unless_the_job_sets_one(small_erp):
    from quality.models import QualitySettings

    cfg = QualitySettings.current()
    cfg.min_improvement_pct = 37.5
    cfg.save()
    train_sync(label="from-settings", candidates="baseline")
    train_sync(label="from-job", candidates="baseline", min_improvement_pct=2.0)
    configs = {v.label: v.read_manifest()["config"] for v in ModelVersion.objects.all()}
    assert configs["from-settings"]["min_improvement_pct"] == 37.5
    assert configs["from-job"]["min_improvement_pct"] == 2.0


def test_bench_training_prints_nan_for_scores_without_actuals(small_erp, monkeypatch):
    from training.engine import metrics

    real_evaluate = metrics.evaluate

    def without_time_actuals(*args, **kwargs):
        scores = real_evaluate(*args, **kwargs)
        return {**scores, "trim_mae": None, "mae": None, "setup_mae": None}  # no held-out operation had actual times

    monkeypatch.setattr(metrics, "evaluate", without_time_actuals)
    out = io.StringIO()
    call_command("bench_training", candidates="baseline", label="bench-none", stdout=out)
    row = next(line for line in out.getvalue().splitlines() if line.startswith("baseline "))
    assert row.split()[1:4] == ["nan", "nan", "nan"]
    assert float(row.split()[4]) > 0  # process match is still there


@pytest.mark.parametrize("after, read", [("nothing", "unchanged"), ("day", "partial"), ("month", "partial")])
def test_bench_training_trains_after_the_change_it_is_asked_for(small_erp, settings, tmp_path, after, read):
    settings.ERP_SNAPSHOT = True
    settings.MODEL_ROOT = tmp_path / "models"
    out = io.StringIO()
    call_command("bench_training", candidates="baseline", label=f"bench-{after}", skip_erp_read=True, training_after=after, stdout=out)
    figures = json.loads(out.getvalue().strip().splitlines()[-1])
    seen = {part.split()[0]: part.split()[1] for part in figures["erp_read_in_training"].split(" in ")[0].split(", ")}
    assert seen["work_results"] == read, figures["erp_read_in_training"]
    assert (seen["items"] == "unchanged") == (after == "nothing")


def test_api_starts_lists_reads_and_cancels_jobs(admin_api, planner_api, db):
    created = admin_api.post("/api/v1/training/jobs/", {"candidates": ["mlp"], "sample_size": 100, "label": "api-job"}, format="json")
    assert created.status_code == 202, created.content
    body = created.json()
    assert body["status"] == "queued" and body["trigger"] == "api"
    assert body["parameters"]["candidates"] == ["baseline", "mlp"]
    job_id = body["id"]
    assert planner_api.get("/api/v1/training/jobs/").json()["results"][0]["id"] == job_id
    assert planner_api.get(f"/api/v1/training/jobs/{job_id}/").json()["label"] == "api-job"
    assert admin_api.delete(f"/api/v1/training/jobs/{job_id}/").json()["status"] == "cancelled"
    again = admin_api.post(f"/api/v1/training/jobs/{job_id}/cancel/")
    assert again.status_code == 409 and "cannot be cancelled" in again.json()["error"]["message"]


def test_planner_may_not_start_or_cancel_training(planner_api, db):
    assert planner_api.post("/api/v1/training/jobs/", {}, format="json").status_code == 403
    job = TrainingJob.enqueue(label="x", run_inline=True)
    assert planner_api.post(f"/api/v1/training/jobs/{job.pk}/cancel/").status_code == 403


def test_bad_training_request_is_400_naming_the_field(admin_api, db):
    response = admin_api.post("/api/v1/training/jobs/", {"candidates": ["xgboost"], "sample_size": 3}, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]) == {"candidates", "sample_size"}


@pytest.mark.cluster
@pytest.mark.django_db(transaction=True)
def test_job_enqueued_over_http_runs_on_a_real_qcluster(admin_api, tmp_path):
    call_command("seed_demo_erp", items=SMALL, seed=22, stdout=io.StringIO())
    response = admin_api.post("/api/v1/training/jobs/", {"candidates": ["baseline"], "label": "from-cluster", "activate": True}, format="json")
    job_id = response.json()["id"]
    with qcluster(tmp_path / "qcluster.log"):
        wait_for(lambda: TrainingJob.objects.get(pk=job_id).is_terminal, timeout=240, message="the cluster to finish the job")
    job = TrainingJob.objects.get(pk=job_id)
    assert job.status == "succeeded", job.error + (tmp_path / "qcluster.log").read_text()[-3000:]
    assert job.task_id
    assert ModelVersion.objects.get_active().label == "from-cluster"


def test_feature_weights_from_the_command_are_used_and_saved_with_the_model(small_erp):
    result = train_sync(label="weighted", candidates="baseline", feature_weights='{"OUTDIAMETER": 3, "ITEM_MATERIAL": 0}')
    version = ModelVersion.objects.get(label=result["label"])
    saved = json.loads((version.artifact_dir / "feature_weights.json").read_text())
    assert saved["OUTDIAMETER"] == 3.0 and saved["ITEM_MATERIAL"] == 0.0 and saved["INDIAMETER"] == 1.0
    assert TrainingJob.objects.get(model_version=version).parameters["feature_weights"] == {"OUTDIAMETER": 3.0, "ITEM_MATERIAL": 0.0}


def test_max_embedding_width_bounds_what_the_settings_search_may_choose(small_erp, admin_api):
    result = train_sync(label="narrow", candidates="baseline", max_embedding_width=32)
    version = ModelVersion.objects.get(label=result["label"])
    search = version.metrics["search"]
    assert search["chosen"]["embedding"] in (16, 32)
    assert all(t["embedding"] in (16, 32) for t in search["trials"])  # "none" and 64 were never tried
    assert TrainingJob.objects.get(model_version=version).parameters["max_embedding_width"] == 32
    with pytest.raises(CommandError, match="at least 16"):
        call_command("train", max_embedding_width=8, stdout=io.StringIO())
    refused = admin_api.post("/api/v1/training/jobs/", {"max_embedding_width": 4}, format="json")
    assert refused.status_code == 400 and "max_embedding_width" in refused.content.decode()


@pytest.mark.parametrize(
    "text, reason",
    [("{not json", "JSON object"), ('{"NO_SUCH_COLUMN": 1}', "unknown feature 'NO_SUCH_COLUMN'"), ('{"OUTDIAMETER": -1}', "number >= 0")],
)
def test_train_refuses_bad_feature_weights_before_queueing(db, text, reason):
    with pytest.raises(CommandError, match=reason):
        call_command("train", feature_weights=text, stdout=io.StringIO())
    assert not TrainingJob.objects.exists()


def test_api_and_admin_take_feature_weights_and_name_a_bad_one(db, admin_api, client, ml_admin):
    refused = admin_api.post("/api/v1/training/jobs/", {"feature_weights": {"OUTDIAMETER": "heavy"}}, format="json")
    assert refused.status_code == 400 and "feature_weights" in refused.json()["error"]["details"]
    accepted = admin_api.post("/api/v1/training/jobs/", {"label": "api-weights", "feature_weights": {"OUTDIAMETER": 2}}, format="json")
    assert accepted.status_code == 202, accepted.json()
    assert TrainingJob.objects.get(label="api-weights").parameters["feature_weights"] == {"OUTDIAMETER": 2.0}

    client.force_login(ml_admin)
    start = "/admin/training/trainingjob/start/"
    page = client.post(start, {"candidates": ["baseline"], "feature_weights": '{"DIAMETER": 2}'})
    assert page.status_code == 200 and "unknown feature &#x27;DIAMETER&#x27;" in page.content.decode()
    client.post(start, {"label": "admin-weights", "candidates": ["baseline"], "feature_weights": '{"SealTypeGrup": 0.5}'})
    job = TrainingJob.objects.get(label="admin-weights")
    assert job.parameters["feature_weights"] == {"SealTypeGrup": 0.5} and "min_improvement_pct" not in job.parameters


def test_training_with_an_unwritable_model_root_fails_at_once_without_computing(small_erp, settings, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where MODEL_ROOT's parent should be")
    settings.MODEL_ROOT = blocker / "models"
    started = time.monotonic()
    with pytest.raises(CommandError, match="MODEL_ROOT .* is not writable"):
        train_sync(label="nowhere", candidates="baseline,mlp,stacking")
    elapsed = time.monotonic() - started
    job = TrainingJob.objects.get(label="nowhere")
    assert job.status == "failed" and job.error_code == 1004 and "nothing was computed" in job.error
    assert "loading ERP data" not in job.log and elapsed < 5
    assert not ModelVersion.objects.exists()
