"""Housekeeping: delete the files of old versions nobody serves, keeping their records as archived."""

from django.core.management.base import BaseCommand, CommandError

from registry.models import ModelVersion


class Command(BaseCommand):
    help = (
        "Archive all but the newest N non-active ready versions (files removed, records and metrics kept). "
        "The version a rollback would return to is always kept."
    )

    def add_arguments(self, parser):
        parser.add_argument("--keep", type=int, default=10, help="Non-active versions to keep (newest first).")
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args, keep, dry_run, **options):
        if keep < 0:
            raise CommandError("--keep must be zero or more.")
        candidates = ModelVersion.objects.filter(is_active=False, status=ModelVersion.Status.READY)
        rollback_target = ModelVersion.rollback_target()
        if rollback_target is not None:
            # Archiving it would make the next rollback fail exactly when it is needed.
            candidates = candidates.exclude(pk=rollback_target.pk)
        candidates = candidates.order_by("-created_at", "-pk")[keep:]
        archived = []
        for version in candidates:
            archived.append(version.label)
            if not dry_run:
                version.archive()
        verb = "Would archive" if dry_run else "Archived"
        self.stdout.write(f"{verb} {len(archived)} version(s): {', '.join(archived) or '—'}")
