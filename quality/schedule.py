"""The quality-cycle schedule: one django-q2 cron Schedule kept in step with QualitySettings."""

from __future__ import annotations

SCHEDULE_NAME = "quality-cycle"
SCHEDULE_FUNC = "quality.tasks.scheduled_cycle"


def sync_quality_schedule() -> None:
    """Create, update or remove the schedule so it matches the settings (idempotent).

    django-q2 computes a cron schedule's `next_run` only when the row is created (and after each
    run), so a changed cron would first fire at the old time. When the cron changes, `next_run`
    is recomputed here with django-q2's own calculation (croniter from the current time in the
    cluster's time zone); saving unchanged settings leaves it alone.
    """
    from django_q.models import Schedule

    from .models import QualitySettings

    cfg = QualitySettings.current()
    if not cfg.schedule_enabled:
        Schedule.objects.filter(name=SCHEDULE_NAME).delete()
        return
    schedule = Schedule.objects.filter(name=SCHEDULE_NAME).first()
    if schedule is None:
        # On creation django-q2's save() computes next_run from the cron.
        Schedule.objects.create(name=SCHEDULE_NAME, func=SCHEDULE_FUNC, schedule_type=Schedule.CRON, cron=cfg.schedule_cron, repeats=-1)
        return
    wanted = {"func": SCHEDULE_FUNC, "schedule_type": Schedule.CRON, "cron": cfg.schedule_cron, "repeats": -1}
    changed = [name for name, value in wanted.items() if getattr(schedule, name) != value]
    if not changed:
        return
    for name in changed:
        setattr(schedule, name, wanted[name])
    if {"schedule_type", "cron"} & set(changed):
        schedule.next_run = schedule.calculate_next_run()
        changed.append("next_run")
    # Only the changed columns: the scheduler may be advancing next_run at the same moment.
    schedule.save(update_fields=changed)
