"""Recurring django-q2 schedules, created idempotently after every migrate."""

from __future__ import annotations

# name → func of the every-minute schedules (each its own row, so one failing does not hide the other).
EVERY_MINUTE = {
    "housekeeping": "training.tasks.housekeeping",
    "quality-housekeeping": "quality.tasks.housekeeping",
}


def ensure_schedules(*args, **kwargs) -> None:
    from django_q.models import Schedule

    for name, func in EVERY_MINUTE.items():
        Schedule.objects.update_or_create(
            name=name,
            defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1},
        )
    try:
        from quality.schedule import sync_quality_schedule
    except ImportError:
        return
    sync_quality_schedule()
