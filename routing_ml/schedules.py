"""Recurring django-q2 schedules, created idempotently after every migrate."""

from __future__ import annotations


def ensure_schedules(*args, **kwargs) -> None:
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name="housekeeping",
        defaults={"func": "training.tasks.housekeeping", "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1},
    )
    try:
        from quality.schedule import sync_quality_schedule
    except ImportError:
        return
    sync_quality_schedule()
