"""Recurring django-q2 schedules, created idempotently after every migrate."""

from __future__ import annotations

# name → func of the every-minute schedules (each its own row, so one failing does not hide the other).
EVERY_MINUTE = {
    "housekeeping": "training.tasks.housekeeping",
    "quality-housekeeping": "quality.tasks.housekeeping",
    "neighbour-table": "registry.tasks.ensure_neighbour_table",
}


def ensure_schedules(*args, **kwargs) -> None:
    from django_q.models import Schedule

    for name, func in EVERY_MINUTE.items():
        Schedule.objects.update_or_create(
            name=name,
            defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1},
        )
    sync_backup_schedule()
    sync_training_cluster_beat()
    try:
        from quality.schedule import sync_quality_schedule
    except ImportError:
        return
    sync_quality_schedule()


BACKUP_SCHEDULE = "backup"


def sync_backup_schedule() -> None:
    """The daily backup: a cron schedule following BACKUP_SCHEDULE_CRON (removed when it is empty)."""
    from django.conf import settings
    from django_q.models import Schedule

    if not settings.BACKUP_SCHEDULE_CRON:
        Schedule.objects.filter(name=BACKUP_SCHEDULE).delete()
        return
    schedule = Schedule.objects.filter(name=BACKUP_SCHEDULE).first()
    if schedule is None:
        Schedule.objects.create(name=BACKUP_SCHEDULE, func="routing_ml.tasks.scheduled_backup", schedule_type=Schedule.CRON,
                                cron=settings.BACKUP_SCHEDULE_CRON, repeats=-1)
    elif schedule.cron != settings.BACKUP_SCHEDULE_CRON or schedule.schedule_type != Schedule.CRON:
        schedule.schedule_type, schedule.cron = Schedule.CRON, settings.BACKUP_SCHEDULE_CRON
        schedule.next_run = schedule.calculate_next_run()
        schedule.save(update_fields=["schedule_type", "cron", "next_run"])


TRAINING_BEAT = "training-cluster-beat"


def sync_training_cluster_beat() -> None:
    """With a separate training cluster, a schedule only it runs: its success rows show /health that it is alive."""
    from django.conf import settings
    from django_q.models import Schedule

    if not settings.TRAINING_CLUSTER:
        Schedule.objects.filter(name=TRAINING_BEAT).delete()
        return
    Schedule.objects.update_or_create(
        name=TRAINING_BEAT,
        defaults={"func": "training.tasks.cluster_beat", "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1,
                  "cluster": settings.TRAINING_CLUSTER},
    )
