"""Benchmark: quality cycles on the current DATABASE_URL with the active model."""

from __future__ import annotations

import json
import time

from django.core.management.base import BaseCommand, CommandError

from quality.cycle import run_cycle
from quality.models import QualityCycle
from registry.models import ModelVersion


class Command(BaseCommand):
    help = "Run quality cycles (default: 500 items, stratified) and print their wall time and figures."

    def add_arguments(self, parser):
        parser.add_argument("--sample-size", type=int, default=500)
        parser.add_argument("--repeat", type=int, default=3)
        parser.add_argument("--strategy", default="stratified")

    def handle(self, *args, sample_size, repeat, strategy, **options):
        if ModelVersion.objects.get_active() is None:
            raise CommandError("No active model: run bench_training --activate first.")
        from registry.loader import loader

        # The first use in a process loads and verifies the bundle (every file's sha256); a cluster
        # worker keeps it between cycles, so that one-time cost is timed and printed on its own.
        started = time.perf_counter()
        loader.active()
        load_seconds = time.perf_counter() - started
        self.stdout.write(f"active model loaded and verified in {load_seconds:.2f} s (once per process)")
        walls = []
        for _ in range(max(1, repeat)):
            started = time.perf_counter()
            cycle = run_cycle(trigger=QualityCycle.Trigger.MANUAL, sample_size=sample_size, strategy=strategy)
            walls.append(time.perf_counter() - started)
            if cycle.status != QualityCycle.Status.SUCCEEDED:
                raise CommandError(f"cycle {cycle.pk} failed: {cycle.error}")
        summary = cycle.summary()
        self.stdout.write(f"{repeat} cycle(s) of {sample_size} items ({strategy}): wall seconds {', '.join(f'{w:.2f}' for w in walls)}")
        self.stdout.write(json.dumps({k: summary[k] for k in ("items_sampled", "items_evaluated", "items_without_actuals", "items_failed", "mae", "trim_mae", "process_match", "exact_match", "duration_seconds") if k in summary}))
        self.stdout.write(
            json.dumps(
                {
                    "model_load_seconds": round(load_seconds, 2),
                    "cycle_wall_seconds_best": round(min(walls), 2),
                    "cycle_wall_seconds_worst": round(max(walls), 2),
                }
            )
        )
