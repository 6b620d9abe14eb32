"""Check a backup's every file against its manifest, without restoring anything."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from routing_ml.backup import BackupError, verify_backup


class Command(BaseCommand):
    help = "Verify a backup directory: every file present and matching its sha256, no unlisted file."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path)

    def handle(self, *args, path, **options):
        try:
            manifest = verify_backup(path)
        except BackupError as exc:
            raise CommandError(str(exc))
        self.stdout.write(
            f"OK: {len(manifest['files'])} files verified; made {manifest['created_at']} by version {manifest['app_version']}; "
            f"{manifest['database']['vendor']} database; model versions: {', '.join(manifest['model_versions']) or 'none'}."
        )
