"""Quality housekeeping: a cycle left `running` by a killed or timed-out worker is failed by the every-minute task."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

from quality.models import QualityAlert, QualityCycle
from routing_ml.schedules import ensure_schedules


def _running_cycle(age: timedelta) -> QualityCycle:
    """A cycle row as a worker leaves it when SIGKILLed mid-cycle: status running, no finish."""
    return QualityCycle.objects.create(sample_strategy="stratified", sample_size=500, started_at=timezone.now() - age)


def _run_scheduled(name: str):
    """Run a schedule's function the way the cluster does (by its dotted path), here and now."""
    schedule = Schedule.objects.get(name=name)
    return async_task(schedule.func, sync=True), schedule


@pytest.mark.django_db
def test_housekeeping_reaps_a_cycle_running_longer_than_the_cluster_timeout_and_leaves_a_fresh_one():
    timeout = timedelta(seconds=settings.Q_CLUSTER["timeout"])
    stuck = _running_cycle(timeout + timedelta(minutes=1))
    fresh = _running_cycle(timedelta(minutes=5))
    finished = _running_cycle(timeout * 2)
    finished.succeed(metrics={"mae": 1.0})

    _run_scheduled("quality-housekeeping")

    stuck.refresh_from_db()
    assert stuck.status == "failed" and "Reaped" in stuck.error and f"{timeout.total_seconds():.0f} s" in stuck.error
    assert stuck.finished_at is not None and stuck.duration_seconds == pytest.approx((timeout + timedelta(minutes=1)).total_seconds(), abs=5)
    alert = QualityAlert.objects.get(cycle=stuck)
    assert (alert.level, alert.metric, alert.status) == ("critical", "cycle", "open") and "Reaped" in alert.message
    fresh.refresh_from_db()
    finished.refresh_from_db()
    assert fresh.status == "running" and fresh.error == "" and not fresh.alerts.exists()
    assert finished.status == "succeeded" and not finished.alerts.exists()


@pytest.mark.django_db
def test_reaping_twice_fails_a_stuck_cycle_once_with_one_alert():
    stuck = _running_cycle(timedelta(seconds=settings.Q_CLUSTER["timeout"] + 60))
    assert QualityCycle.reap_stale() == [stuck.pk]
    assert QualityCycle.reap_stale() == []
    assert QualityAlert.objects.filter(cycle=stuck).count() == 1


@pytest.mark.django_db
def test_stale_uses_the_cluster_timeout_unless_told_otherwise(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 600}
    ten_minutes_old = _running_cycle(timedelta(minutes=11))
    five_minutes_old = _running_cycle(timedelta(minutes=5))
    assert list(QualityCycle.objects.stale()) == [ten_minutes_old]
    assert set(QualityCycle.objects.stale(timedelta(minutes=1))) == {ten_minutes_old, five_minutes_old}


@pytest.mark.django_db
def test_quality_housekeeping_is_its_own_every_minute_schedule_created_once():
    ensure_schedules()
    ensure_schedules()  # post_migrate runs it after every migrate: no duplicates
    schedule = Schedule.objects.get(name="quality-housekeeping")
    assert (schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats) == ("quality.tasks.housekeeping", Schedule.MINUTES, 1, -1)
    assert Schedule.objects.filter(func="quality.tasks.housekeeping").count() == 1
    assert Schedule.objects.get(name="housekeeping").func == "training.tasks.housekeeping"
