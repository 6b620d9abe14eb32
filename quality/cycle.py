"""A quality cycle: sample → predict as new items → compare with actuals → alerts → maybe retrain.

`run_cycle` is the one entry point; the command, the admin, the API and the schedule call it.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from erp.data import columns_of, select_frame
from erp.models import Item
from predictions import agreement as planner_agreement
from registry.loader import loader
from registry.models import ModelVersion
from routing_ml.errors import ErrorCode, QueueFull
from training.engine import drift as drift_module
from training.models import DEFAULT_CANDIDATES, TrainingJob

from .evaluation import evaluate
from .models import CycleReaped, QualityAlert, QualityCycle, QualitySettings
from .sampling import eligible_items, is_in, learned_code_sets, monitoring_sample
from .thresholds import Breach, breaches

logger = logging.getLogger(__name__)

# Attributes of at most this many recent items (a seeded random sample of them) are compared with the training profile.
DRIFT_ITEM_LIMIT = 20000


def run_cycle(
    *, trigger: str = QualityCycle.Trigger.MANUAL, by=None, sample_size: int | None = None, strategy: str | None = None, cycle: QualityCycle | None = None
) -> QualityCycle:
    """Evaluate the active model on recent items, record the cycle and its alerts, and close the loop.

    `cycle`: a queued one (QualityCycle.enqueue); otherwise one is requested here (CycleInProgress, 409, if another is queued or running).
    """
    cfg = QualitySettings.current()
    if cycle is None:
        cycle = QualityCycle.request(trigger=trigger, by=by, sample_size=sample_size, strategy=strategy)
    version = ModelVersion.objects.get_active()
    cycle.start(model_version=version)
    started = time.perf_counter()
    try:
        if version is None:
            raise CycleFailure("No model version is active: there is nothing to evaluate.", code=ErrorCode.MODEL_NOT_FOUND)
        eligible, window_start, window_end = eligible_items(
            cfg.recent_window_days, cfg.min_work_orders, last_report=cycle.sample_strategy == QualitySettings.Strategy.RECENT
        )
        _, model = loader.get(version.label)
        # Graded on items no learned part of the version was fitted on (its monitoring set first).
        codes, population = monitoring_sample(eligible, model, cycle.sample_size, cycle.sample_strategy, cfg.sample_seed)
        cycle.items_sampled = len(codes)
        if not codes:
            raise CycleFailure(
                f"No item has {cfg.min_work_orders}+ work results in the {cfg.recent_window_days} days before the newest work result "
                f"({window_end or 'none'}): the cycle evaluated 0 items."
            )
        evaluation = evaluate(codes, version.label, after=version.training_cutoff, since=window_start)
        evaluated_codes = np.array([item["item_cd"] for item in evaluation.items], dtype=str)
        population["evaluated_in_learned_fit"] = int(is_in(evaluated_codes, learned_code_sets(model)[1]).sum())
        evaluation.metrics.update(planner_agreement.cycle_metrics(version.label))  # issue 11: alerted like the other metrics
        drift = _drift(version, eligible, cfg.sample_seed)
        cycle.items_evaluated = evaluation.items_evaluated
        cycle.items_without_actuals = len(evaluation.items_without_actuals)
        cycle.items_failed = len(evaluation.items_failed)
        report = {
            "cycle": cycle.pk,
            "model_version": version.label,
            "training_cutoff": version.training_cutoff.isoformat() if version.training_cutoff else None,
            "window": {"start": window_start.isoformat(), "end": window_end.isoformat(), "days": cfg.recent_window_days},
            "eligible_items": int(len(eligible)),
            "sample": {"strategy": cycle.sample_strategy, "size": cycle.sample_size, "seed": cfg.sample_seed, "items": codes},
            "population": population,
            "actuals": evaluation.actuals_source,
            "metrics": evaluation.metrics,
            "metrics_by_part_type": evaluation.by_part_type,
            "drift_psi": drift,
            "drift_items": min(len(eligible), DRIFT_ITEM_LIMIT) if drift else 0,
            "items_without_actuals": evaluation.items_without_actuals,
            "items_failed": evaluation.items_failed,
            "items": evaluation.items,
        }
        if cycle.items_evaluated == 0:
            raise CycleFailure(f"The cycle evaluated 0 of {len(codes)} sampled items (all predictions failed).", report=report)
        found = breaches(evaluation.metrics, cfg, drift)
        with transaction.atomic():
            cycle.succeed(metrics=evaluation.metrics, metrics_by_part_type=evaluation.by_part_type, drift=drift, report=_summary(report))
            _raise_alerts(cycle, found)
            _resolve_recovered(cycle, found)
        _maybe_retrain(cycle, cfg, found, codes)
        report["alerts"] = [f"{b.level}:{b.metric}" for b in found]
        report["retraining"] = {"job": cycle.retraining_job_id, "decision": cycle.retraining_decision}
    except CycleFailure as exc:
        report = exc.report or {"cycle": cycle.pk}
        with transaction.atomic():
            if cycle.fail(str(exc)):
                QualityAlert.record(
                    cycle=cycle, level=QualityAlert.Level.CRITICAL, metric="items_evaluated", value=cycle.items_evaluated, threshold=1,
                    error_code=exc.code, message=f"Quality cycle {cycle.pk} failed: {exc}",
                )
    except CycleReaped as exc:
        logger.warning("%s", exc)
        report = {"cycle": cycle.pk, "error": str(exc)}
    except Exception as exc:
        logger.exception("Quality cycle %s crashed", cycle.pk)
        report = {"cycle": cycle.pk, "error": f"{type(exc).__name__}: {exc}"}
        if cycle.fail(f"{type(exc).__name__}: {exc}"):
            QualityAlert.record(
                cycle=cycle, level=QualityAlert.Level.CRITICAL, metric="cycle", error_code=None, message=f"Quality cycle {cycle.pk} crashed: {type(exc).__name__}: {exc}"
            )
    report["duration_seconds"] = round(time.perf_counter() - started, 3)
    cycle.report_path = str(_write_report(cycle, report))
    cycle.save(update_fields=["report_path"])
    return cycle


class CycleFailure(Exception):
    def __init__(self, message: str, code: int | None = None, report: dict | None = None):
        super().__init__(message)
        self.code, self.report = code, report


def _summary(report: dict) -> dict:
    """What the row keeps of the report (the file has the per-item detail)."""
    keep = ("window", "eligible_items", "population", "actuals", "items_without_actuals", "items_failed")
    summary = {k: report[k] for k in keep if k in report}
    summary["sample"] = {k: v for k, v in report["sample"].items() if k != "items"}
    return summary


def drift_sample(eligible: pd.DataFrame, seed: int, limit: int | None = None) -> list[str]:
    """The items whose attributes are compared with the training profile: all eligible ones, or a seeded random `limit` of them.

    Never the first `limit` codes: item codes start with their part type's prefix, so a slice of
    the sorted codes would hold a few part types only and show drift that is not there.
    """
    limit = DRIFT_ITEM_LIMIT if limit is None else limit
    codes = eligible["ITEM_CD"].to_numpy()
    if len(codes) > limit:
        codes = codes[np.random.default_rng(seed).choice(len(codes), size=limit, replace=False)]
    return sorted(codes.tolist())


def _drift(version: ModelVersion, eligible: pd.DataFrame, seed: int) -> dict[str, float]:
    reference = (version.dataset_stats or {}).get("feature_profile")
    if not reference or eligible.empty:
        return {}
    # Only the profiled columns: `compare` reads no other, and the whole item rows of 20,000 items cost far more.
    columns = ["ITEM_CD", *(c for c in columns_of(Item) if c in reference and c != "ITEM_CD")]
    return drift_module.compare(reference, select_frame(Item, columns, drift_sample(eligible, seed)))


def _raise_alerts(cycle: QualityCycle, found: list[Breach]) -> None:
    for b in found:  # an open alert for the same breach is updated, not repeated
        QualityAlert.record(cycle=cycle, level=b.level, metric=b.metric, value=b.value, threshold=b.threshold, error_code=b.error_code, message=b.message)


def _resolve_recovered(cycle: QualityCycle, found: list[Breach]) -> None:
    """Earlier alerts resolve themselves once a cycle measures their metric back inside their threshold.

    A critical MAE alert resolves when MAE drops under the critical threshold, even if it is still
    over the warning one (this cycle then has its own warning alert).
    """
    severity = {"warning": 1, "critical": 2}
    worst_now = {}
    for breach in found:
        worst_now[breach.metric] = max(worst_now.get(breach.metric, 0), severity[breach.level])
    measured = {name for name, value in (cycle.metrics or {}).items() if value is not None} | {f"drift:{f}" for f in cycle.drift or {}}
    measured |= {"items_evaluated", "cycle"}  # a successful cycle answers earlier "cycle failed" alerts
    for alert in QualityAlert.objects.open().exclude(cycle=cycle).exclude(last_cycle=cycle).filter(metric__in=measured):
        if worst_now.get(alert.metric, 0) < severity[alert.level]:
            alert.resolve(resolution=f"back inside the threshold in cycle {cycle.pk}")


def _maybe_retrain(cycle: QualityCycle, cfg: QualitySettings, found: list[Breach], sample: list[str]) -> None:
    """A critical breach queues a retraining job unless auto-retrain is off, a recent one is cooling down, or the queue is full.

    The cooldown check and the enqueue run in one transaction under the training queue's lock
    (the one `TrainingJob.enqueue` takes for its capacity check), so two cycles finishing at the
    same moment cannot both see "no recent job" and both enqueue one.
    """
    critical = [b for b in found if b.level == "critical"]
    if not critical:
        decision = "No critical alert: no retraining needed."
    elif not cfg.auto_retrain:
        decision = "Critical alert, but auto_retrain is off: nothing enqueued."
    else:
        with transaction.atomic():
            TrainingJob.lock_queue()
            decision = _retrain_unless_cooling_down(cycle, cfg, critical, sample)
    cycle.retraining_decision = decision
    cycle.save(update_fields=["retraining_job", "retraining_decision"])


def _retrain_unless_cooling_down(cycle: QualityCycle, cfg: QualitySettings, critical: list[Breach], sample: list[str]) -> str:
    """Enqueue one retraining job unless one was started within the cooldown; the caller holds the queue lock.

    The job's gate will score challenger and champion on this cycle's `sample`, so the job is told
    to keep those items out of its learned time estimators' training rows.
    """
    since = timezone.now() - timedelta(hours=cfg.cooldown_hours)
    recent = TrainingJob.objects.filter(trigger=TrainingJob.Trigger.QUALITY_ALERT, created_at__gte=since).order_by("-created_at").first()
    if recent is not None:
        return (
            f"Critical alert, but retraining job {recent.pk} was started {recent.created_at:%Y-%m-%d %H:%M} UTC, "
            f"within the {cfg.cooldown_hours:g} h cooldown: nothing enqueued."
        )
    parameters = {
        "candidates": list(DEFAULT_CANDIDATES),
        "min_improvement_pct": cfg.min_improvement_pct,
        "gate": True,
        "gate_items": sample,
        "quality_cycle": cycle.pk,
        "description": f"retraining after quality cycle {cycle.pk}: " + "; ".join(b.message for b in critical),
    }
    try:
        job = TrainingJob.enqueue(parameters=parameters, trigger=TrainingJob.Trigger.QUALITY_ALERT)
    except QueueFull as exc:
        return f"Critical alert, but the training queue is full: {exc.message}"
    cycle.retraining_job = job
    return f"Critical alert ({', '.join(b.metric for b in critical)}): retraining job {job.pk} enqueued."


def _write_report(cycle: QualityCycle, report: dict) -> Path:
    root = Path(settings.QUALITY_REPORT_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"cycle_{cycle.pk}.json"
    tmp = path.with_suffix(".json.tmp")
    # Compact: with `indent` json falls back to its pure-Python encoder (~5x slower for a 500-item report).
    tmp.write_text(json.dumps(report, default=str))
    tmp.replace(path)
    return path
