"""Benchmark: full training through the real pipeline (load → fit → score → save → register) on the current DATABASE_URL."""

from __future__ import annotations

import json
import resource
import time

from django.core.management.base import BaseCommand, CommandError

from erp.data import table_counts
from registry.models import ModelVersion
from training.models import DEFAULT_CANDIDATES, TrainingJob
from training.pipeline import run_job


def _number(value) -> float:
    """A score for a :f column: a candidate without aligned actuals has None where a number is expected."""
    return float("nan") if value is None else value


def _dir_bytes(path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


class Command(BaseCommand):
    help = "Train once through the pipeline and print wall time per stage, peak memory, bundle size and load time."

    def add_arguments(self, parser):
        parser.add_argument("--candidates", default=",".join(DEFAULT_CANDIDATES))
        parser.add_argument("--label", default=None)
        parser.add_argument("--activate", action="store_true", help="Activate the version (the prediction and quality benchmarks need one).")
        parser.add_argument("--min-improvement-pct", type=float, default=None, help="e.g. -100 to force a learned candidate")

    def handle(self, *args, candidates, label, activate, min_improvement_pct, **options):
        counts = table_counts()
        if not counts.get("RoutingOperation"):
            raise CommandError("No ERP data: run seed_demo_erp --items 325000 on this DATABASE_URL first.")
        parameters = {"candidates": candidates.split(","), "seed": 0, "activate": activate}
        if min_improvement_pct is not None:
            parameters["min_improvement_pct"] = min_improvement_pct
        job = TrainingJob.enqueue(parameters=parameters, label=label or f"bench-{int(time.time())}", run_inline=True)
        started = time.perf_counter()
        outcome = run_job(job)
        wall = time.perf_counter() - started
        job.refresh_from_db()
        if job.status != TrainingJob.Status.SUCCEEDED:
            raise CommandError(f"{outcome}\n{job.error}")
        version: ModelVersion = job.model_version
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        from training.engine import RoutingModel

        t0 = time.perf_counter()
        RoutingModel.load(version.artifact_dir, mmap=True)
        load_s = time.perf_counter() - t0
        self.stdout.write(f"ERP rows: {counts}")
        self.stdout.write("Job log (stage timings):")
        for line in job.log.splitlines():
            self.stdout.write(f"  {line}")
        self.stdout.write(f"Selected estimator: {version.selected_estimator}")
        self.stdout.write(f"{'candidate':<10} {'trim_mae':>9} {'mae':>8} {'setup_mae':>9} {'process_match':>13} {'exact_match':>11} {'items':>6}")
        for name, scores in version.candidate_scores.items():
            trim_mae, mae, setup_mae, process_match, exact_match = (
                _number(scores.get(key)) for key in ("trim_mae", "mae", "setup_mae", "process_match", "exact_match")
            )
            self.stdout.write(
                f"{name:<10} {trim_mae:>9.4f} {mae:>8.4f} {setup_mae:>9.4f} "
                f"{process_match:>13.4f} {exact_match:>11.4f} {scores.get('items_evaluated') or 0:>6}"
            )
        figures = {
            "wall_seconds_end_to_end": round(wall, 1),
            "peak_rss_gib": round(peak_gib, 2),
            "bundle_mib": round(_dir_bytes(version.artifact_dir) / 2**20, 1),
            "bundle_load_seconds": round(load_s, 3),
            "label": version.label,
            "dataset": {k: version.dataset_stats.get(k) for k in ("total_samples", "unique_items", "unique_processes", "items_with_actuals", "actual_rows")},
        }
        stages = version.dataset_stats.get("stage_seconds") or {}
        search = sum(v for k, v in stages.items() if k.startswith("searching"))
        if stages:
            self.stdout.write("Engine stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
            # The budget: the settings search adds at most 30 % to the training without it.
            self.stdout.write(f"Settings search: {search:.1f} s = {100 * search / max(wall - search, 1e-9):.1f} % on top of the rest of the training ({wall - search:.1f} s)")
        figures["settings_search_seconds"] = round(search, 1)
        self.stdout.write(json.dumps(figures))
