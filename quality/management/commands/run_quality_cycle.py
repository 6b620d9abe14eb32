"""Run a quality cycle now (in this process with --sync, else on the cluster)."""

import json

from django.core.management.base import BaseCommand, CommandError

from quality.models import CycleInProgress, QualityCycle, QualitySettings


class Command(BaseCommand):
    help = "Evaluate the active model on recent items against actual work orders; prints the result as JSON on the last line."

    def add_arguments(self, parser):
        parser.add_argument("--sample-size", type=int)
        parser.add_argument("--strategy", choices=QualitySettings.Strategy.values)
        parser.add_argument("--sync", action="store_true", help="Run here and wait (default: hand it to the task cluster).")
        parser.add_argument("--if-none", action="store_true", help="Do nothing if a quality cycle was ever run (make run's first cycle).")

    def handle(self, *args, sample_size, strategy, sync, if_none, **options):
        if if_none and QualityCycle.objects.exists():
            self.stdout.write("A quality cycle has already run: nothing to do.")
            return
        if sample_size is not None and not 10 <= sample_size <= 10000:
            raise CommandError("--sample-size must be between 10 and 10,000.")
        try:
            if not sync:
                cycle, task_id = QualityCycle.enqueue(trigger=QualityCycle.Trigger.MANUAL, sample_size=sample_size, strategy=strategy)
                self.stdout.write(f"Quality cycle {cycle.pk} queued as task {task_id}.")
                return
            from quality.cycle import run_cycle

            cycle = run_cycle(trigger=QualityCycle.Trigger.MANUAL, sample_size=sample_size, strategy=strategy)
        except CycleInProgress as exc:
            raise CommandError(exc.message)
        self.stdout.write(json.dumps(cycle.summary(), default=str))
        if cycle.status != QualityCycle.Status.SUCCEEDED:
            raise CommandError(f"Quality cycle {cycle.pk} failed: {cycle.error}")
