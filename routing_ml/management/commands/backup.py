"""Back up the database, the model bundles and the quality reports into one checksummed directory."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from routing_ml.backup import BackupError, create_backup


class Command(BaseCommand):
    help = "Write a consistent backup (database snapshot, every non-archived model bundle, quality reports, manifest); prints its path last."

    def add_arguments(self, parser):
        parser.add_argument("--to", type=Path, help="Directory to write the backup under (default: BACKUP_ROOT).")
        parser.add_argument("--keep", type=int, help=f"Keep only the newest N backups there (default: BACKUP_KEEP = {settings.BACKUP_KEEP}).")

    def handle(self, *args, to, keep, **options):
        try:
            path = create_backup(to=to, keep=keep if keep is not None else settings.BACKUP_KEEP)
        except BackupError as exc:
            raise CommandError(str(exc))
        self.stdout.write(str(path))
