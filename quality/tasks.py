"""django-q2 entry points for quality cycles."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def run_cycle_task(
    trigger: str = "manual", user_id: int | None = None, sample_size: int | None = None, strategy: str | None = None, cycle_id: int | None = None
) -> dict:
    """Run a queued cycle (`cycle_id`, from QualityCycle.enqueue), or request and run one (the schedule)."""
    from django.contrib.auth import get_user_model

    from .cycle import run_cycle
    from .models import CycleInProgress, QualityCycle

    if cycle_id is not None:
        return run_cycle(cycle=QualityCycle.objects.get(pk=cycle_id)).summary()
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    try:
        return run_cycle(trigger=trigger, by=user, sample_size=sample_size, strategy=strategy).summary()
    except CycleInProgress as exc:
        logger.warning("Quality cycle (%s) skipped: %s", trigger, exc.message)
        return {"skipped": exc.message, **(exc.details or {})}


def scheduled_cycle() -> dict:
    return run_cycle_task(trigger="schedule")


def housekeeping() -> dict:
    """Every minute on the cluster: fail quality cycles whose process died (no heartbeat) or whose task no worker took."""
    from .models import QualityCycle

    reaped = QualityCycle.reap_stale()
    if reaped:
        logger.warning("Reaped stale quality cycles: %s", reaped)
    return {"reaped": reaped}
