"""Build (or check) a model version's neighbour table now, instead of waiting for the cluster's minute."""

from django.core.management.base import BaseCommand, CommandError

from registry.models import ModelVersion
from registry.neighbour_tables import ensure, state
from routing_ml.errors import RoutingMLError
from training.engine import BundleError


class Command(BaseCommand):
    help = (
        "Work out every known item's neighbours for a model version (the active one by default), so its "
        "predictions of known items read them instead of searching. The cluster does this within a minute "
        "of an activation; this runs it now."
    )

    def add_arguments(self, parser):
        parser.add_argument("label", nargs="?", help="Model version (default: the active one).")
        parser.add_argument("--force", action="store_true", help="Build it again even if a usable one is there.")
        parser.add_argument("--check", action="store_true", help="Only say whether the version has a usable table (exit 1 if not).")
        parser.add_argument("--threads", type=int, default=None, help="Search threads (default: NEIGHBOUR_TABLE_THREADS).")

    def handle(self, *args, label, force, check, threads, **options):
        if threads is not None and threads < 1:
            raise CommandError("--threads must be at least 1.")
        version = ModelVersion.objects.filter(label=label).first() if label else ModelVersion.objects.get_active()
        if version is None:
            raise CommandError(f"[1002] Model version {label!r} does not exist." if label else "[1002] No model version is active.")
        if check:
            status = state(version)
            self.stdout.write(f"{version.label}: neighbour table {status}")
            if status != "ready":
                raise CommandError(f"Model version {version.label} has no usable neighbour table ({status}).")
            return
        try:
            # Waits for a build another process runs (the cluster's minute task), then finds its table there.
            result = ensure(version, force=force, threads=threads, wait=True)
        except (BundleError, RoutingMLError) as exc:
            raise CommandError(f"[1002] No neighbour table for {version.label}: {getattr(exc, 'message', exc)}")
        if result["status"] in ("disabled", "skipped"):
            why = "NEIGHBOUR_TABLE is off" if result["status"] == "disabled" else result.get("reason")
            raise CommandError(f"Neighbour table of {version.label} not built: {why}.")
        if result["status"] == "present":
            self.stdout.write(f"{version.label}: the neighbour table is there already (--force builds it again).")
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"{version.label}: neighbour table of {result['items']} items x {result['k']} built in {result['seconds']} s."
                )
            )
