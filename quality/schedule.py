"""The quality-cycle schedule: one django-q2 cron Schedule kept in step with QualitySettings."""

from __future__ import annotations

SCHEDULE_NAME = "quality-cycle"


def sync_quality_schedule() -> None:
    """Create, update or remove the schedule so it matches the settings (idempotent)."""
    from django_q.models import Schedule

    from .models import QualitySettings

    cfg = QualitySettings.current()
    if not cfg.schedule_enabled:
        Schedule.objects.filter(name=SCHEDULE_NAME).delete()
        return
    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={"func": "quality.tasks.scheduled_cycle", "schedule_type": Schedule.CRON, "cron": cfg.schedule_cron, "repeats": -1},
    )
