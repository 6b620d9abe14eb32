"""Activate a model version (operators)."""

from django.core.management.base import BaseCommand, CommandError

from registry.models import ModelVersion
from routing_ml.errors import RoutingMLError


class Command(BaseCommand):
    help = "Activate a ready model version; every process serves it within seconds."

    def add_arguments(self, parser):
        parser.add_argument("label")
        parser.add_argument("--reason", default="activated from the command line")

    def handle(self, *args, label, reason, **options):
        version = ModelVersion.objects.filter(label=label).first()
        if version is None:
            raise CommandError(f"[1002] Model version {label!r} does not exist.")
        try:
            event = version.activate(reason=reason)
        except RoutingMLError as exc:
            raise CommandError(f"[{exc.code}] {exc.message}")
        self.stdout.write(self.style.SUCCESS(f"Active model version: {label} (was {event.from_version or 'none'})."))
