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
    """Every minute on the cluster: fail quality cycles whose process died (no heartbeat) or whose task no worker
    took; resend lost notifications; drop served-prediction log entries past PREDICTION_LOG_RETENTION_DAYS; check
    disk, memory and the active model (2001, 2002, 1005)."""
    from predictions.models import PredictionLog

    from .models import QualityCycle
    from .notifications import redeliver_lost

    reaped = QualityCycle.reap_stale()
    if reaped:
        logger.warning("Reaped stale quality cycles: %s", reaped)
    resent = redeliver_lost()
    if resent:
        logger.warning("Queued lost notification deliveries again: %s", resent)
    return {"reaped": reaped, "notifications_resent": resent, "prediction_log_purged": PredictionLog.purge(), "conditions": check_system()}


def check_system() -> dict[str, bool]:
    """Disk space (2001), memory (2002), the active model's loadability (1005): raise or resolve their alerts. Returns metric → ok."""
    from routing_ml import resources

    from .models import QualityAlert

    conditions = [*resources.check_disk(), resources.check_memory(), resources.check_model_loadable()]
    for condition in conditions:
        if condition.ok:
            QualityAlert.clear_condition(condition.metric, resolution="back to normal (housekeeping)")
        else:
            logger.warning("%s: %s", condition.metric, condition.message)
            QualityAlert.raise_condition(metric=condition.metric, level=condition.level, error_code=condition.code, value=condition.value,
                                         threshold=condition.threshold, message=condition.message)
    return {c.metric: c.ok for c in conditions}
