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
    """Every minute on the cluster: fail quality cycles left `running` by a killed or timed-out worker; resend lost
    notifications; drop served-prediction log entries past PREDICTION_LOG_RETENTION_DAYS; check disk, memory, model."""
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
