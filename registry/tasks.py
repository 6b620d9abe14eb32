"""django-q2 task entry points of the registry: thin wrappers."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def ensure_neighbour_table() -> dict:
    """Every minute on the cluster: build the active version's neighbour table if it is missing or unusable."""
    from .models import ModelVersion
    from .neighbour_tables import ensure

    active = ModelVersion.objects.get_active()
    if active is None:
        return {"status": "skipped", "reason": "no active version"}
    try:
        return ensure(active)
    except Exception as exc:  # the version still answers, by searching; say why in the task's result and the log
        logger.exception("Could not build the neighbour table of %s", active.label)
        return {"status": "failed", "label": active.label, "reason": f"{type(exc).__name__}: {exc}"}
