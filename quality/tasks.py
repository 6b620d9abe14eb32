"""django-q2 entry points for quality cycles."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def run_cycle_task(trigger: str = "manual", user_id: int | None = None, sample_size: int | None = None, strategy: str | None = None) -> dict:
    from django.contrib.auth import get_user_model

    from .cycle import run_cycle

    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    return run_cycle(trigger=trigger, by=user, sample_size=sample_size, strategy=strategy).summary()


def scheduled_cycle() -> dict:
    return run_cycle_task(trigger="schedule")


def housekeeping() -> dict:
    """Every minute on the cluster: fail quality cycles left `running` by a killed or timed-out worker, and
    drop served-prediction log entries past PREDICTION_LOG_RETENTION_DAYS."""
    from predictions.models import PredictionLog

    from .models import QualityCycle

    reaped = QualityCycle.reap_stale()
    if reaped:
        logger.warning("Reaped stale quality cycles: %s", reaped)
    return {"reaped": reaped, "prediction_log_purged": PredictionLog.purge()}
