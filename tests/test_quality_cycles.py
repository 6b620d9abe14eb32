"""Quality cycles through their entry points: command, API, failures, cooldown, queue, reports, gauges."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from erp.models import WorkResult
from quality.cycle import run_cycle
from quality.models import CycleInProgress, QualityAlert, QualityCycle, QualitySettings
from training.models import TrainingJob

# Database-facing: run again on PostgreSQL by `make test` (see the Makefile).
pytestmark = pytest.mark.postgres


@pytest.fixture
def trained(db):
    call_command("seed_demo_erp", items=800, seed=41, stdout=io.StringIO())
    call_command("train", sync=True, label="q1", candidates="baseline", activate=True, stdout=io.StringIO(), stderr=io.StringIO())


def test_cycle_command_prints_metrics_and_counts_as_json_and_writes_a_report(trained, settings):
    out = io.StringIO()
    call_command("run_quality_cycle", sync=True, json=True, sample_size=60, strategy="random", stdout=out)
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    for key in ("mae", "trim_mae", "process_match", "exact_match", "items_evaluated", "items_without_actuals", "items_failed", "duration_seconds"):
        assert key in result, key
    cycle = QualityCycle.objects.get(pk=result["cycle"])
    report = json.loads(Path(cycle.report_path).read_text())
    # Up to 60 items, all outside every learned fit of the version (fewer when too few such items are recent).
    sampled = len(report["sample"]["items"])
    assert 40 <= sampled <= 60 and result["items_evaluated"] == sampled == len(report["items"]) and result["items_failed"] == 0
    assert report["population"]["evaluated_in_learned_fit"] == 0
    assert Path(cycle.report_path).parent == Path(settings.QUALITY_REPORT_ROOT)
    assert report["metrics"]["mae"] == pytest.approx(result["mae"])
    assert set(cycle.metrics_by_part_type) and all(m["items_evaluated"] > 0 for m in cycle.metrics_by_part_type.values())
    assert sum(m["items_evaluated"] for m in cycle.metrics_by_part_type.values()) == sampled


def test_cycle_never_uses_an_item_as_its_own_neighbour(trained, monkeypatch):
    from registry.loader import loader

    _, model = loader.active()
    real_predict, seen = model.predict, []

    def spy_predict(items, top_k=None, exclude_self=True, **options):
        results = real_predict(items, top_k=top_k, exclude_self=exclude_self, **options)
        seen.append(exclude_self)
        return results

    real_route, routed = model.route, []

    def spy_route(emb, self_rows, k, **options):
        core = real_route(emb, self_rows, k, **options)
        routed.append((self_rows, core.nbr))
        return core

    monkeypatch.setattr(model, "predict", spy_predict)
    monkeypatch.setattr(model, "route", spy_route)
    cycle = run_cycle(sample_size=40)
    assert cycle.status == "succeeded" and cycle.items_evaluated == 40
    assert seen == [True]  # the cycle's one batch asked for exclude-self
    (self_rows, nbr), = routed
    # Every sampled item is in the index, and its own row is never among its neighbours.
    assert (self_rows >= 0).all()
    assert not (nbr == self_rows[:, None]).any()


def test_first_cycle_command_runs_once(trained):
    first = io.StringIO()
    call_command("run_quality_cycle", sync=True, json=True, if_none=True, sample_size=20, stdout=first)
    assert json.loads(first.getvalue().strip().splitlines()[-1])["items_evaluated"] == 20
    again = io.StringIO()
    call_command("run_quality_cycle", sync=True, if_none=True, stdout=again)
    assert "already run" in again.getvalue() and QualityCycle.objects.count() == 1


def test_stratified_cycle_is_deterministic_for_a_seed(trained):
    first = json.loads(Path(run_cycle(sample_size=50).report_path).read_text())["sample"]["items"]
    second = json.loads(Path(run_cycle(sample_size=50).report_path).read_text())["sample"]["items"]
    assert first == second


def test_cycle_that_evaluates_zero_items_fails_with_a_critical_alert(trained):
    WorkResult.objects.all().delete()
    with pytest.raises(CommandError, match="0 items"):
        call_command("run_quality_cycle", sync=True, stdout=io.StringIO())
    cycle = QualityCycle.objects.get()
    assert cycle.status == "failed" and cycle.items_evaluated == 0
    alert = QualityAlert.objects.get(cycle=cycle)
    assert alert.level == "critical" and alert.metric == "items_evaluated"


def test_cycle_without_an_active_model_fails_with_code_1002(db):
    cycle = run_cycle()
    assert cycle.status == "failed" and "No model version is active" in cycle.error
    assert QualityAlert.objects.get(cycle=cycle).error_code == 1002


def test_critical_alert_with_auto_retrain_off_enqueues_nothing_and_says_why(trained):
    cfg = QualitySettings.current()
    cfg.mae_warning, cfg.mae_critical, cfg.auto_retrain = 0.0, 0.01, False
    cfg.save()
    cycle = run_cycle(sample_size=30)
    assert QualityAlert.objects.filter(cycle=cycle, level="critical", metric="mae", error_code=3001).exists()
    assert cycle.retraining_job is None and "auto_retrain is off" in cycle.retraining_decision


def test_full_queue_is_recorded_as_the_reason_nothing_was_enqueued(trained):
    cfg = QualitySettings.current()
    cfg.mae_warning, cfg.mae_critical, cfg.queue_capacity = 0.0, 0.01, 1
    cfg.save()
    TrainingJob.enqueue(label="blocking", run_inline=True)
    cycle = run_cycle(sample_size=30)
    assert cycle.retraining_job is None and "queue is full" in cycle.retraining_decision
    assert not TrainingJob.objects.filter(trigger="quality_alert").exists()


def test_critical_alert_enqueues_one_retraining_job_then_cools_down(trained, django_capture_on_commit_callbacks):
    cfg = QualitySettings.current()
    cfg.mae_warning, cfg.mae_critical = 0.0, 0.01
    cfg.save()
    with django_capture_on_commit_callbacks(execute=False):
        first = run_cycle(sample_size=30)
        second = run_cycle(sample_size=30)
    job = first.retraining_job
    assert job is not None and job.trigger == "quality_alert" and job.parameters["quality_cycle"] == first.pk
    assert second.retraining_job is None and "cooldown" in second.retraining_decision


def test_quality_api_runs_and_reads_cycles_current_state_and_alerts(trained, admin_api, planner_api):
    assert planner_api.post("/api/v1/quality/cycles/", {"sync": True}, format="json").status_code == 403
    created = admin_api.post("/api/v1/quality/cycles/", {"sync": True, "sample_size": 40}, format="json")
    assert created.status_code == 201, created.content
    cycle = created.json()
    assert cycle["items_evaluated"] == 40 and cycle["report"]["sample"]["size"] == 40
    listing = planner_api.get("/api/v1/quality/cycles/?days=7").json()
    assert [c["id"] for c in listing["results"]] == [cycle["id"]]
    assert planner_api.get("/api/v1/quality/cycles/?days=-1").status_code == 400
    assert planner_api.get(f"/api/v1/quality/cycles/{cycle['id']}/").json()["metrics"]["mae"] == pytest.approx(cycle["metrics"]["mae"])
    current = planner_api.get("/api/v1/quality/current/").json()
    assert current["active_model"] == "q1" and current["latest_cycle"]["id"] == cycle["id"]
    assert current["thresholds"]["mae"] == {"warning": 5.0, "critical": 10.0}
    bad = admin_api.post("/api/v1/quality/cycles/", {"sample_size": 5, "strategy": "psychic"}, format="json")
    assert bad.status_code == 400 and set(bad.json()["error"]["details"]) == {"sample_size", "strategy"}


def test_alerts_api_filters_and_acknowledges(trained, admin_api, planner_api, ml_admin):
    cfg = QualitySettings.current()
    cfg.mae_warning, cfg.mae_critical, cfg.auto_retrain = 0.0, 0.01, False
    cfg.save()
    run_cycle(sample_size=30)
    alerts = planner_api.get("/api/v1/quality/alerts/?status=open&level=critical").json()["results"]
    assert [a["metric"] for a in alerts] == ["mae"] and alerts[0]["error_code"] == 3001
    alert_id = alerts[0]["id"]
    assert planner_api.post(f"/api/v1/quality/alerts/{alert_id}/acknowledge/").status_code == 403
    acked = admin_api.post(f"/api/v1/quality/alerts/{alert_id}/acknowledge/").json()
    assert acked["status"] == "acknowledged" and acked["acknowledged_by"] == ml_admin.username
    again = admin_api.post(f"/api/v1/quality/alerts/{alert_id}/acknowledge/")
    assert again.status_code == 409
    assert planner_api.get("/api/v1/quality/alerts/?status=acknowledged").json()["count"] == 1


def test_prometheus_gauges_come_from_the_database(trained, client):
    cycle = run_cycle(sample_size=30)
    body = client.get("/metrics").content.decode()
    assert f"routing_ml_quality_mae_minutes {cycle.metrics['mae']}" in body.replace("e+00", "")
    assert "routing_ml_quality_process_match_percent" in body
    assert 'routing_ml_training_jobs_total{status="succeeded"} 1.0' in body
    assert "routing_ml_queue_size 0.0" in body


def test_migrate_creates_the_quality_schedule_from_the_settings(db):
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name="quality-cycle")
    assert schedule.cron == "0 2 * * *" and schedule.func == "quality.tasks.scheduled_cycle"


def test_drift_is_measured_on_a_seeded_random_sample_not_the_first_codes(trained, monkeypatch):
    # Item codes start with their part type's prefix: the first N sorted codes are one or two part types.
    monkeypatch.setattr("quality.cycle.DRIFT_ITEM_LIMIT", 200)
    cfg = QualitySettings.current()
    cfg.recent_window_days = 3650  # every produced item is eligible, as on a long-running factory
    cfg.save()
    first = run_cycle(sample_size=30)
    assert first.report["eligible_items"] > 2 * 200, "the drift sample must be a real subset for this test to mean anything"
    report = json.loads(Path(first.report_path).read_text())
    assert report["drift_items"] == 200
    # The data has not drifted: a representative sample shows no drift (the first 200 codes, a few part types only,
    # showed a part-type PSI near 4 and a material PSI near 0.7, both "drift" alerts) ...
    assert first.drift["PART_TYPE"] < 0.1 and max(first.drift.values()) < cfg.drift_psi_threshold, first.drift
    assert not QualityAlert.objects.filter(metric__startswith="drift:").exists()
    # ... and the same seed gives the same sample, hence the same PSI.
    assert run_cycle(sample_size=30).drift == first.drift
    cfg.sample_seed = 7
    cfg.save()
    assert run_cycle(sample_size=30).drift != first.drift


@pytest.mark.django_db(transaction=True)
def test_two_cycles_requested_together_run_one_and_enqueue_one_retraining_job(trained, monkeypatch):
    """Two requests at the same moment: one cycle runs, the other gets CycleInProgress; the next one cools down."""
    import threading

    from django.db import connection

    cfg = QualitySettings.current()
    cfg.mae_warning, cfg.mae_critical = 0.0, 0.01
    cfg.save()
    # Hold each enqueue until the other cycle has got there too (or 3 s passed): without one lock around
    # "is a retraining job cooling down?" and the enqueue, both cycles pass the check and both enqueue.
    arrived = threading.Barrier(2)
    original = TrainingJob.enqueue

    def enqueue_when_both_arrived(*args, **kwargs):
        try:
            arrived.wait(timeout=3)
        except threading.BrokenBarrierError:
            pass
        return original(*args, **kwargs)

    monkeypatch.setattr(TrainingJob, "enqueue", enqueue_when_both_arrived)
    cycles, errors = [], []

    def one_cycle():
        try:
            cycles.append(run_cycle(sample_size=30))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=one_cycle) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    # At most one cycle runs at a time: the second request is refused naming the first; one retraining job.
    assert len(cycles) == 1 and len(errors) == 1 and isinstance(errors[0], CycleInProgress)
    assert f"Quality cycle {cycles[0].pk} is already" in errors[0].message and errors[0].details["cycle"] == cycles[0].pk
    assert TrainingJob.objects.filter(trigger="quality_alert").count() == 1
    assert cycles[0].retraining_job == TrainingJob.objects.get(trigger="quality_alert")
    second = run_cycle(sample_size=30)
    assert second.retraining_job is None and "cooldown" in second.retraining_decision


@pytest.mark.django_db
def test_a_work_result_reported_exactly_at_a_window_bound_counts_on_every_database():
    """The window is [end - days, end], compared as datetimes: on SQLite the bounds used to be compared as text
    with a "+00:00" suffix, so a result reported exactly at the start was left out there and counted on PostgreSQL."""
    from datetime import timedelta

    from erp.data import load_actuals
    from quality.sampling import eligible_items, newest_report_date

    call_command("seed_demo_erp", items=60, seed=5, stdout=io.StringIO())
    end = newest_report_date()
    start = end - timedelta(days=30)
    inside = set(eligible_items(30)[0]["ITEM_CD"])
    outsider = WorkResult.objects.exclude(item_cd__in=inside).filter(report_dt__lt=start).values_list("item_cd", flat=True).first()
    assert outsider, "the test needs an item produced only before the window"
    WorkResult.objects.filter(pk=WorkResult.objects.filter(item_cd=outsider).values("pk")[:1]).update(report_dt=start)
    eligible, window_start, window_end = eligible_items(30)
    assert (window_start, window_end) == (start, end)
    assert outsider in set(eligible["ITEM_CD"])
    assert outsider in set(load_actuals([outsider], since=start)["ITEM_CD"])  # the evaluation reads the same row
    # One microsecond earlier is outside on every database.
    WorkResult.objects.filter(item_cd=outsider, report_dt=start).update(report_dt=start - timedelta(microseconds=1))
    assert outsider not in set(eligible_items(30)[0]["ITEM_CD"])
