"""django-q2 task entry points: thin wrappers around model methods and the pipeline."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def run_training_job(job_id: int) -> str:
    """Run one queued training job (the cluster calls this)."""
    from .models import TrainingJob
    from .pipeline import run_job

    job = TrainingJob.objects.get(pk=job_id)
    return run_job(job)


def housekeeping() -> dict:
    """Every minute on the cluster: fail training jobs whose worker died or whose task was lost. Its success rows are the worker's heartbeat for /health."""
    from .models import TrainingJob

    reaped = TrainingJob.reap_stale()
    if reaped:
        logger.warning("Reaped stale training jobs: %s", reaped)
    return {"reaped": reaped}


def cluster_beat() -> str:
    """Every minute on the training cluster (TRAINING_CLUSTER): proves to /health that it runs."""
    from django.conf import settings

    return settings.TRAINING_CLUSTER or "default"
