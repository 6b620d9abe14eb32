"""django-q2 entry points of the project package."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def scheduled_backup() -> str:
    """The daily backup (BACKUP_SCHEDULE_CRON) into BACKUP_ROOT, keeping the newest BACKUP_KEEP."""
    from django.conf import settings

    from .backup import create_backup

    path = create_backup(keep=settings.BACKUP_KEEP)
    logger.info("Backup written to %s", path)
    return str(path)
