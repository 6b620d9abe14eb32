"""Benchmark: full training through the real pipeline (load → fit → score → save → register) on the current DATABASE_URL."""

from __future__ import annotations

import json
import resource
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import F

from erp.data import erp_write_alias, table_counts
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
        parser.add_argument("--skip-erp-read", action="store_true", help="Do not time the ERP reads (cold, snapshot warm, after a change) first.")
        parser.add_argument("--erp-read-only", action="store_true", help="Only time the ERP reads; do not train.")
        parser.add_argument(
            "--training-after",
            choices=["month", "day", "nothing"],
            default="month",
            help="What changed in the ERP since the snapshot the training reads: the newest month's or day's small change "
            "(see the ERP reads), or nothing (default: month, the largest of the three).",
        )

    def handle(self, *args, candidates, label, activate, min_improvement_pct, skip_erp_read, erp_read_only, training_after, **options):
        counts = table_counts()
        if not counts.get("RoutingOperation"):
            raise CommandError("No ERP data: run seed_demo_erp --items 325000 on this DATABASE_URL first.")
        erp_read = {} if skip_erp_read else self._time_erp_reads()
        if erp_read_only:
            self.stdout.write(json.dumps({"erp_read_seconds": erp_read}))
            return
        self._prepare_snapshot(training_after)
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
        if erp_read:
            figures["erp_read_seconds"] = erp_read
        read_line = next((line for line in job.log.splitlines() if "ERP snapshot:" in line), "")
        if read_line:
            figures["erp_read_in_training"] = read_line.split("ERP snapshot:", 1)[1].strip()
        self.stdout.write(json.dumps(figures))

    def _prepare_snapshot(self, training_after: str) -> None:
        """Leave the snapshot one small change (of the newest `training_after` period) behind the ERP, or level with it.

        The change is read into the snapshot inside a transaction that is then rolled back: to the
        training, those partitions have changed again (as after the timed reads).
        """
        from erp import snapshot
        from erp.data import load_training_frames

        if not snapshot.enabled() or settings.ERP_EXTERNAL:
            return
        if training_after == "nothing":
            load_training_frames(snapshot=True)
            self.stdout.write("The training reads an ERP snapshot that nothing has changed since.")
            return
        with transaction.atomic(using=erp_write_alias()):
            changed = _small_change(training_after)
            load_training_frames(snapshot=True)
            transaction.set_rollback(True, using=erp_write_alias())
        self.stdout.write(f"The training reads the ERP after a small change since its snapshot ({changed}, then undone).")

    def _time_erp_reads(self) -> dict[str, float]:
        """Seconds to get the training frames: a full read, the read that builds the snapshot, a warm one, and one after
        each of two small changes.

        A small change (100 work results of the newest day, then of the newest month, re-reported;
        one routing operation deleted, one item's attribute edited) is made in a transaction that
        is rolled back: the database is left as it was, and the next read re-reads those
        partitions again.
        """
        from erp import snapshot
        from erp.data import load_training_frames

        def timed(**kwargs) -> float:
            started = time.perf_counter()
            load_training_frames(**kwargs)
            return round(time.perf_counter() - started, 2)

        figures = {"cold_full_read": timed(snapshot=False)}
        self.stdout.write(f"ERP read, full (no snapshot): {figures['cold_full_read']:.2f} s")
        if not snapshot.enabled():
            self.stdout.write("ERP snapshot is off (ERP_SNAPSHOT=false): the training reads in full.")
            return figures
        snapshot.drop()
        figures["snapshot_build"] = timed(snapshot=True)
        figures["snapshot_warm"] = timed(snapshot=True)
        self.stdout.write(f"ERP read, first with the snapshot (builds it): {figures['snapshot_build']:.2f} s; warm (nothing changed): {figures['snapshot_warm']:.2f} s")
        if settings.ERP_EXTERNAL:
            self.stdout.write("A real ERP is attached (read-only): the read after a change is not timed.")
            return figures
        # A day's corrections (what a nightly retrain meets), then the same spread over the newest month.
        for scope, name in (("day", "snapshot_after_day_change"), ("month", "snapshot_after_change")):
            with transaction.atomic(using=erp_write_alias()):
                changed = _small_change(scope)
                figures[name] = timed(snapshot=True)
                transaction.set_rollback(True, using=erp_write_alias())
            self.stdout.write(f"ERP read after a small change ({changed}): {figures[name]:.2f} s")
        return figures


def _small_change(scope: str = "month") -> str:
    """Re-report 100 work results of the newest month (`scope` "day": of the newest day), delete one routing operation,
    edit one item; say what. The snapshot re-reads whole days: spread over a month, 100 rows touch most of its days."""
    from erp.models import Item, RoutingOperation, WorkResult

    newest = WorkResult.objects.order_by("-report_dt").values_list("report_dt", flat=True).first()
    rows = WorkResult.objects.filter(report_dt__year=newest.year, report_dt__month=newest.month)
    if scope == "day":
        rows = rows.filter(report_dt__day=newest.day)
    work = WorkResult.objects.filter(pk__in=list(rows.order_by("pk").values_list("pk", flat=True)[:100])).update(mach_worked_hours=F("mach_worked_hours") * 1.1)
    operation = RoutingOperation.objects.order_by("-pk").first()
    RoutingOperation.objects.filter(pk=operation.pk).delete()
    item = Item.objects.order_by("-insrt_dt").first()
    Item.objects.filter(pk=item.pk).update(item_material="BENCH-EDIT")
    return f"{work} work results of the newest {scope} updated, 1 routing operation deleted, 1 item edited"
