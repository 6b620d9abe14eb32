"""Train a model version, on the cluster (default) or in this process (--sync)."""

from __future__ import annotations

import json
from datetime import date

from django.core.management.base import BaseCommand, CommandError

from registry.models import ModelVersion
from routing_ml.errors import RoutingMLError
from training.models import CANDIDATES, DEFAULT_CANDIDATES, TrainingJob
from training.pipeline import run_job


def parse_candidates(text: str) -> list[str]:
    names = [c.strip() for c in text.split(",") if c.strip()]
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        raise CommandError(f"Unknown candidate(s) {', '.join(unknown)}; choose from {', '.join(CANDIDATES)}.")
    if "baseline" not in names:
        names.insert(0, "baseline")  # the others are judged against it
    return names


def parse_until(text: str) -> str:
    """`--until` as an ISO date (the job parameter's form), or a CommandError saying what is expected."""
    try:
        return date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise CommandError(f"--until must be a date as YYYY-MM-DD (e.g. 2026-03-31), not {text!r}.") from None


def parse_feature_weights(text: str) -> dict[str, float]:
    """`--feature-weights` as validated weights, or a CommandError naming the problem."""
    from training.engine import check_feature_weights

    try:
        return check_feature_weights(json.loads(text))
    except json.JSONDecodeError as exc:
        raise CommandError(f"--feature-weights must be a JSON object such as '{{\"OUTDIAMETER\": 2}}': {exc}") from None
    except ValueError as exc:
        raise CommandError(f"--feature-weights: {exc}") from None


def _figure(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def training_summary(record: dict) -> str:
    """A few lines a person reads after `train --sync` (the full record: --json)."""
    metrics, dataset = record.get("metrics") or {}, record.get("dataset") or {}
    duration = record.get("duration_seconds")
    return "\n".join(
        [
            f"Model version {record['label']} is ready{' and active' if record.get('active') else ''} "
            f"(job {record['job']}, time estimator {record.get('selected') or '—'}"
            + (f", {duration:.1f} s)." if duration is not None else ")."),
            f"  held-out items: process match {_figure(metrics.get('process_match'))} · exact match {_figure(metrics.get('exact_match'))}"
            f" · MAE {_figure(metrics.get('mae'), 2)} · trim MAE {_figure(metrics.get('trim_mae'), 2)} min/unit"
            f" · setup MAE {_figure(metrics.get('setup_mae'), 1)} min",
            f"  trained on {dataset.get('unique_items', '—')} items, {dataset.get('total_samples', '—')} routing operations, "
            f"{dataset.get('unique_processes', '—')} job codes; candidates: {', '.join(record.get('candidates') or {}) or '—'}",
            "  (--json prints the full record)",
        ]
    )


class Command(BaseCommand):
    help = "Train a new model version from the ERP data. Without --sync the job goes to the task cluster and its id is printed."

    def add_arguments(self, parser):
        parser.add_argument("--label", help="Label of the new version (default: a timestamp).")
        parser.add_argument("--candidates", default=",".join(DEFAULT_CANDIDATES), help=f"Comma-separated, from {','.join(CANDIDATES)}.")
        parser.add_argument("--sample-size", type=int, help="Train on a seeded sample of this many items.")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--min-improvement-pct", type=float, help="A candidate must beat baseline's trimmed MAE by this much.")
        parser.add_argument(
            "--until", help="Only learn from work results reported up to and including this date (YYYY-MM-DD, UTC), with the routings current then."
        )
        parser.add_argument(
            "--feature-weights",
            help='JSON object of similarity weights per item attribute, e.g. \'{"OUTDIAMETER": 2, "DRAW_NO": 0.5}\' (0 switches one off).',
        )
        parser.add_argument(
            "--max-embedding-width", type=int,
            help="Widest item embedding the settings search may choose (default 256; 32 for the fastest answers).",
        )
        parser.add_argument("--activate", action="store_true", help="Activate the version when training succeeds.")
        parser.add_argument("--sync", action="store_true", help="Run in this process and print a short summary of the new version.")
        parser.add_argument("--json", action="store_true", help="With --sync: print the full record as JSON on the last line instead.")
        parser.add_argument("--if-no-model", action="store_true", help="Do nothing when a model version is already active.")

    def handle(self, *args, **opts):
        if opts["if_no_model"] and ModelVersion.objects.active().exists():
            self.stdout.write(f"Model version {ModelVersion.objects.get_active().label} is active; not training.")
            return
        if opts["sample_size"] is not None and opts["sample_size"] < 20:
            raise CommandError("--sample-size must be at least 20 items.")
        if opts["max_embedding_width"] is not None and opts["max_embedding_width"] < 16:
            raise CommandError("--max-embedding-width must be at least 16 (the narrowest embedding the search tries).")
        if opts["until"] is not None:
            opts["until"] = parse_until(opts["until"])
        parameters = {"candidates": parse_candidates(opts["candidates"]), "seed": opts["seed"], "activate": opts["activate"]}
        if opts["feature_weights"]:
            parameters["feature_weights"] = parse_feature_weights(opts["feature_weights"])
        for name in ("sample_size", "min_improvement_pct", "until", "max_embedding_width"):
            if opts[name] is not None:
                parameters[name] = opts[name]
        try:
            job = TrainingJob.enqueue(parameters=parameters, trigger=TrainingJob.Trigger.MANUAL, label=opts["label"], run_inline=opts["sync"])
        except RoutingMLError as exc:
            raise CommandError(f"[{exc.code}] {exc.message}")
        if not opts["sync"]:
            self.stdout.write(f"Queued training job {job.pk} (label {job.label}). Follow it in the admin or at /api/v1/training/jobs/{job.pk}/.")
            self.stdout.write(str(job.pk))
            return
        outcome = run_job(job)
        job.refresh_from_db()
        self.stderr.write(outcome)
        if job.status != TrainingJob.Status.SUCCEEDED:
            raise CommandError(f"Training job {job.pk} {job.status}: {job.error.splitlines()[0] if job.error else outcome}")
        version = job.model_version
        record = {
            "label": version.label,
            "job": job.pk,
            "active": ModelVersion.objects.filter(pk=version.pk, is_active=True).exists(),
            "selected": version.selected_estimator,
            "metrics": version.metrics,
            "candidates": version.candidate_scores,
            # The feature profile (drift reference) is kept on the version; it is too long for a terminal.
            "dataset": {k: v for k, v in (version.dataset_stats or {}).items() if k != "feature_profile"},
            "duration_seconds": version.training_duration_seconds,
        }
        if opts["json"]:
            self.stdout.write(json.dumps(record, default=str))
        else:
            self.stdout.write(training_summary(record))
