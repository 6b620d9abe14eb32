"""System checks for configuration mistakes an operator can fix."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.checks import Error, Warning, register


@register()
def model_root_writable(app_configs, **kwargs):
    root = settings.MODEL_ROOT
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return [Error(f"MODEL_ROOT {root} cannot be created: {exc}", hint="Set MODEL_ROOT to a writable directory.", id="routing_ml.E001")]
    if not os.access(root, os.W_OK):
        return [Error(f"MODEL_ROOT {root} is not writable.", hint="Fix its permissions or set MODEL_ROOT.", id="routing_ml.E002")]
    return []


@register()
def sqlite_with_redis(app_configs, **kwargs):
    engine = settings.DATABASES["default"]["ENGINE"]
    if settings.REDIS_URL and engine.endswith("sqlite3"):
        return [
            Warning(
                "REDIS_URL is set while the database is SQLite.",
                hint="A Redis broker helps only when several machines share a server database (PostgreSQL or SQL Server).",
                id="routing_ml.W001",
            )
        ]
    return []
