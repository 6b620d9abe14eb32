"""Restore a backup into DATABASE_URL, MODEL_ROOT and QUALITY_REPORT_ROOT, after verifying every file."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from django.db.migrations.loader import MigrationLoader

from routing_ml.backup import BackupError, restore_backup


class Command(BaseCommand):
    help = "Verify a backup, then restore it. Refuses a damaged backup, and a target that holds data unless --force."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path)
        parser.add_argument("--force", action="store_true", help="Replace a database and MODEL_ROOT that already hold data.")

    def handle(self, *args, path, force, **options):
        try:
            result = restore_backup(path, force=force)
        except BackupError as exc:
            raise CommandError(str(exc))
        self.stdout.write(
            f"Restored {result.database} database, {len(result.model_versions)} model bundle(s) ({', '.join(result.model_versions) or 'none'}) "
            f"and {result.reports} quality report(s) from {path}."
        )
        backed_up = {tuple(m) for m in result.manifest.get("migrations", [])}
        known = set(MigrationLoader(connections["default"], ignore_no_migrations=True).disk_migrations)
        if known - backed_up:
            self.stdout.write(self.style.WARNING(f"This code has {len(known - backed_up)} migration(s) newer than the backup: run `manage.py migrate`."))
        if backed_up - known:
            self.stdout.write(self.style.WARNING("The backup was made by a newer version of the application: install that version to use it."))
        self.stdout.write("Restart the web and worker processes so every one reloads the restored model.")
