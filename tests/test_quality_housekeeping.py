"""Quality housekeeping: a cycle whose process died (no heartbeat) or that no worker took is failed by the every-minute task."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

from quality.models import QualityAlert, QualityCycle
from routing_ml.schedules import ensure_schedules


def _running_cycle(age: timedelta, beat_age: timedelta | None = None) -> QualityCycle:
    """A cycle row as a worker leaves it when SIGKILLed mid-cycle: status running, no finish, its last heartbeat `beat_age` ago."""
    now = timezone.now()
    return QualityCycle.objects.create(
        sample_strategy="stratified", sample_size=500, started_at=now - age, heartbeat_at=None if beat_age is None else now - beat_age
    )


def _run_scheduled(name: str):
    """Run a schedule's function the way the cluster does (by its dotted path), here and now."""
    schedule = Schedule.objects.get(name=name)
    return async_task(schedule.func, sync=True), schedule


@pytest.mark.django_db
def test_housekeeping_reaps_a_cycle_whose_heartbeat_stopped_and_leaves_a_beating_one():
    timeout = timedelta(seconds=settings.QUALITY_CYCLE_HEARTBEAT_TIMEOUT)
    assert timeout + timedelta(minutes=1) <= timedelta(minutes=2)  # a killed cycle is failed within 2 minutes
    stuck = _running_cycle(timedelta(minutes=10), beat_age=timeout + timedelta(seconds=5))
    fresh = _running_cycle(timedelta(minutes=50), beat_age=timedelta(seconds=5))  # long, but alive
    finished = _running_cycle(timeout * 2)
    finished.succeed(metrics={"mae": 1.0})

    _run_scheduled("quality-housekeeping")

    stuck.refresh_from_db()
    assert stuck.status == "failed" and "Reaped" in stuck.error and f"no heartbeat for {timeout.total_seconds():.0f} s" in stuck.error
    assert stuck.finished_at is not None and stuck.duration_seconds == pytest.approx(600, abs=5)
    alert = QualityAlert.objects.get(cycle=stuck)
    assert (alert.level, alert.metric, alert.status) == ("critical", "cycle", "open") and "Reaped" in alert.message
    fresh.refresh_from_db()
    finished.refresh_from_db()
    assert fresh.status == "running" and fresh.error == "" and not fresh.alerts.exists()
    assert finished.status == "succeeded" and not finished.alerts.exists()


@pytest.mark.django_db
def test_reaping_twice_fails_a_stuck_cycle_once_with_one_alert():
    stuck = _running_cycle(timedelta(seconds=settings.QUALITY_CYCLE_HEARTBEAT_TIMEOUT + 60))
    assert QualityCycle.reap_stale() == [stuck.pk]
    assert QualityCycle.reap_stale() == []
    assert QualityAlert.objects.filter(cycle=stuck).count() == 1


@pytest.mark.django_db
def test_stale_uses_the_cycle_heartbeat_timeout_not_the_training_timeout(settings):
    settings.QUALITY_CYCLE_HEARTBEAT_TIMEOUT = 600
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 3600}
    ten_minutes_silent = _running_cycle(timedelta(hours=2), beat_age=timedelta(minutes=11))
    five_minutes_silent = _running_cycle(timedelta(minutes=5))
    assert list(QualityCycle.objects.stale()) == [ten_minutes_silent]
    assert set(QualityCycle.objects.stale(timedelta(minutes=1))) == {ten_minutes_silent, five_minutes_silent}


@pytest.mark.django_db
def test_a_cycle_queued_longer_than_the_queue_timeout_is_failed_so_it_blocks_nothing(settings):
    settings.QUALITY_CYCLE_QUEUE_TIMEOUT = 600
    lost = QualityCycle.request()
    QualityCycle.objects.filter(pk=lost.pk).update(started_at=timezone.now() - timedelta(minutes=11))
    assert QualityCycle.reap_stale() == [lost.pk]
    lost.refresh_from_db()
    assert lost.status == "failed" and "not taken by a worker within 600 s" in lost.error
    assert QualityCycle.request().status == "queued"  # the next one may be requested


@pytest.mark.django_db
def test_quality_housekeeping_is_its_own_every_minute_schedule_created_once():
    ensure_schedules()
    ensure_schedules()  # post_migrate runs it after every migrate: no duplicates
    schedule = Schedule.objects.get(name="quality-housekeeping")
    assert (schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats) == ("quality.tasks.housekeeping", Schedule.MINUTES, 1, -1)
    assert Schedule.objects.filter(func="quality.tasks.housekeeping").count() == 1
    assert Schedule.objects.get(name="housekeeping").func == "training.tasks.housekeeping"
