"""Roll back to the previously active model version (operators)."""

from django.core.management.base import BaseCommand, CommandError

from registry.models import ModelVersion
from routing_ml.errors import RoutingMLError


class Command(BaseCommand):
    help = "Re-activate the version that was active before the current one."

    def add_arguments(self, parser):
        parser.add_argument("--reason", default="rolled back from the command line")

    def handle(self, *args, reason, **options):
        try:
            event = ModelVersion.rollback(reason=reason)
        except RoutingMLError as exc:
            raise CommandError(f"[{exc.code}] {exc.message}")
        self.stdout.write(self.style.SUCCESS(f"Rolled back: {event.from_version} → {event.to_version}."))
