"""The machine's resources and the active model's loadability, as conditions the housekeeping and /health share.

Each check returns `Condition`s: `ok` or not, with the runbook code (2001 disk space low,
2002 memory high, 1005 model cannot be loaded), the level, the measured value and the limit.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from django.conf import settings

from .errors import ErrorCode


@dataclass
class Condition:
    metric: str
    ok: bool
    code: int
    level: str = "warning"
    value: float | None = None
    threshold: float | None = None
    message: str = ""
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _existing(path: Path) -> Path:
    """The path, or its nearest existing parent (BACKUP_ROOT may not exist before the first backup)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk() -> list[Condition]:
    """Free space where the models and the backups live: low (2001) below DISK_FREE_MIN_PERCENT or DISK_FREE_MIN_MB."""
    conditions = []
    for name in ("MODEL_ROOT", "BACKUP_ROOT"):
        path = Path(getattr(settings, name))
        usage = shutil.disk_usage(_existing(path))
        free_percent = 100.0 * usage.free / usage.total if usage.total else 0.0
        free_mb = usage.free / 2**20
        min_percent, min_mb = settings.DISK_FREE_MIN_PERCENT, settings.DISK_FREE_MIN_MB
        low = free_percent < min_percent or free_mb < min_mb
        very_low = free_percent < min_percent / 2 or free_mb < min_mb / 2
        details = {"path": str(path), "free_mb": round(free_mb, 1), "free_percent": round(free_percent, 2), "total_mb": round(usage.total / 2**20, 1)}
        message = (
            f"Disk space low under {name} ({path}): {free_mb:,.0f} MB free ({free_percent:.1f} %), limit {min_mb:,.0f} MB / {min_percent:g} %. "
            "Free space (cleanup_models --keep N, fewer BACKUP_KEEP) or grow the volume."
        ) if low else ""
        conditions.append(Condition(f"disk_space:{name}", not low, int(ErrorCode.DISK_SPACE_LOW), "critical" if very_low else "warning",
                                    round(free_percent, 2), min_percent, message, details))
    return conditions


def check_memory() -> Condition:
    """Memory in use on this machine: high (2002) over MEMORY_HIGH_PERCENT, critical over halfway from it to 100 %."""
    import psutil

    memory = psutil.virtual_memory()
    limit = settings.MEMORY_HIGH_PERCENT
    high = memory.percent > limit
    details = {"used_percent": memory.percent, "available_mb": round(memory.available / 2**20, 1), "total_mb": round(memory.total / 2**20, 1)}
    message = (
        f"Memory high: {memory.percent:.1f} % in use ({memory.available / 2**20:,.0f} MB available), limit {limit:g} %. "
        "Fewer gunicorn workers or Q_WORKERS, or more memory."
    ) if high else ""
    level = "critical" if memory.percent > limit + (100 - limit) / 2 else "warning"
    return Condition("memory", not high, int(ErrorCode.MEMORY_HIGH), level, memory.percent, limit, message, details)


def check_model_loadable() -> Condition:
    """The active version's files are intact (every sha256) and this process can load it (1005 otherwise)."""
    from registry.loader import loader
    from registry.models import ModelVersion

    from .errors import ArtifactError

    active = ModelVersion.objects.get_active()
    if active is None:
        return Condition("model_load", True, int(ErrorCode.MODEL_LOAD_FAILED), details={"active_version": None})
    details = {"active_version": active.label}
    try:
        active.verify_artifacts()
    except ArtifactError as exc:
        return Condition("model_load", False, int(ErrorCode.MODEL_LOAD_FAILED), "critical", message=exc.message, details=details)
    loader.refresh(force=True)
    if loader.served_label() != active.label:
        error = loader.last_error or "it did not load"
        return Condition("model_load", False, int(ErrorCode.MODEL_LOAD_FAILED), "critical",
                         message=f"The active model version {active.label} cannot be loaded: {error}", details=details)
    return Condition("model_load", True, int(ErrorCode.MODEL_LOAD_FAILED), details=details)
