"""The training pipeline: ERP data → engine → bundle on disk → registered ModelVersion.

Runs inside a django-q2 worker (or in-process with `train --sync`). Every failure leaves
the job `failed` with its error, and no ModelVersion row and no directory behind.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
import traceback
import uuid
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from registry.models import ModelVersion, manifest_digest
from routing_ml.errors import ErrorCode
from training.engine import drift

from .models import TrainingJob
from .signals import version_trained

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10
TMP_PREFIX = ".tmp-"


def engine_config(parameters: dict):
    """Map a job's parameters onto the engine's configuration."""
    from training.engine import EngineConfig

    fields = {}
    if parameters.get("candidates"):
        fields["candidates"] = tuple(parameters["candidates"])
    for name in ("min_improvement_pct", "seed", "top_k", "n_components", "holdout_share"):
        if parameters.get(name) is not None:
            fields[name] = parameters[name]
    return EngineConfig(**fields)


# Each item's times are learned from its most recent work orders per operation (see latest_per_operation).
DEFAULT_RECENT_ORDERS = 3


def load_frames(parameters: dict):
    """The engine's three input frames, optionally restricted to a seeded sample of items."""
    import numpy as np

    from erp.data import load_training_frames
    from erp.frames import latest_per_operation

    items, routings, actuals = load_training_frames(until=parameters.get("until"))
    actuals = latest_per_operation(actuals, int(parameters.get("recent_orders", DEFAULT_RECENT_ORDERS)))
    sample_size = parameters.get("sample_size")
    if sample_size and sample_size < len(items):
        rng = np.random.default_rng(parameters.get("seed", 0))
        chosen = set(rng.choice(items["ITEM_CD"].to_numpy(), size=int(sample_size), replace=False))
        items = items[items["ITEM_CD"].isin(chosen)].reset_index(drop=True)
        routings = routings[routings["ITEM_CD"].isin(chosen)].reset_index(drop=True)
        actuals = actuals[actuals["ITEM_CD"].isin(chosen)].reset_index(drop=True)
    return items, routings, actuals


class _Heartbeat(threading.Thread):
    """Beats every few seconds while the worker is alive, even inside one long engine stage."""

    def __init__(self, job: TrainingJob):
        super().__init__(daemon=True, name=f"heartbeat-{job.pk}")
        self.job = job
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(HEARTBEAT_SECONDS):
            try:
                self.job.beat()
            except Exception:  # a missed beat is harmless; the next one retries
                logger.debug("heartbeat failed", exc_info=True)
            finally:
                close_old_connections()

    def stop(self) -> None:
        self.stopped.set()


def final_dir(label: str) -> Path:
    return Path(settings.MODEL_ROOT) / label


def discard_job_artifacts(job: TrainingJob) -> None:
    """Remove what a failed/cancelled job may have written: its temp dirs, and its final dir if no version owns it."""
    root = Path(settings.MODEL_ROOT)
    for tmp in root.glob(f"{TMP_PREFIX}{job.label}-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    if not ModelVersion.objects.filter(label=job.label).exists():
        shutil.rmtree(final_dir(job.label), ignore_errors=True)


def _aware(value):
    """The engine speaks naive UTC timestamps (ISO strings); the database wants aware datetimes."""
    if not value:
        return None
    parsed = parse_datetime(str(value)) or datetime.fromisoformat(str(value))
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))


def run_job(job: TrainingJob) -> str:
    """Claim and run one job. Returns a one-line outcome (also stored in django-q2's task result)."""
    from training.engine import TrainingCancelled, train

    if not job.start():
        job.refresh_from_db()
        return f"job {job.pk} not claimed: it is {job.status}"
    heartbeat = _Heartbeat(job)
    heartbeat.start()
    params = job.parameters or {}
    started = time.monotonic()

    def progress(percent: float, stage: str) -> None:
        # The engine reports 0…100 for its own work; loading and saving take the ends of the bar.
        overall = 10 + percent * 0.8
        job.beat(overall, stage)
        job.append_log(f"{overall:5.1f}% {stage}")

    def check_cancel() -> None:
        if job.cancel_was_requested():
            raise TrainingCancelled(f"job {job.pk} cancelled on request")

    try:
        job.beat(1, "loading ERP data")
        job.append_log(f"loading ERP data (parameters: {json.dumps(params, sort_keys=True)})")
        items, routings, actuals = load_frames(params)
        job.append_log(f"loaded {len(items)} items, {len(routings)} routing operations, {len(actuals)} work results")
        if routings.empty:
            raise ValueError("The ERP source has no routings to learn from: import or seed ERP data first.")
        check_cancel()
        result = train(items, routings, actuals, engine_config(params), progress=progress, check_cancel=check_cancel)
        check_cancel()
        job.beat(92, "saving the bundle")
        version = _register(job, result, params, time.monotonic() - started, items)
        job.append_log(f"registered model version {version.label} (selected estimator: {result.selected})")
        # Listeners (the quality gate) and activation run before the job is marked done, so anyone
        # waiting for a terminal job sees their outcome too. The version stays if they fail.
        job.beat(96, "after training: gate / activation")
        for receiver, response in version_trained.send_robust(sender=TrainingJob, job=job, version=version):
            if isinstance(response, Exception):
                job.append_log(f"{getattr(receiver, '__name__', receiver)} failed after training: {response}")
        if params.get("activate"):
            version.activate(by=job.requested_by, reason=f"activated by training job {job.pk}")
            job.append_log(f"activated {version.label}")
        job.finish(version, candidate_scores=result.candidate_scores, selected=result.selected)
        return f"job {job.pk} succeeded: {version.label}"
    except TrainingCancelled as exc:
        discard_job_artifacts(job)
        job.mark_cancelled()
        return f"job {job.pk} cancelled: {exc}"
    except Exception as exc:
        logger.exception("Training job %s failed", job.pk)
        discard_job_artifacts(job)
        job.fail(f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}", code=ErrorCode.TRAINING_FAILED)
        return f"job {job.pk} failed: {type(exc).__name__}: {exc}"
    finally:
        heartbeat.stop()


def _register(job: TrainingJob, result, params: dict, duration: float, items) -> ModelVersion:
    """Write the bundle to a temporary directory, rename it into place, then point a ready row at it."""
    root = Path(settings.MODEL_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    target = final_dir(job.label)
    if target.exists():
        raise FileExistsError(f"{target} already exists; refusing to overwrite another version's files")
    tmp = root / f"{TMP_PREFIX}{job.label}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    _write_json(tmp / "metrics.json", {"selected": result.selected, "metrics": result.metrics, "candidates": result.candidate_scores})
    _write_json(tmp / "training_request.json", {"job": job.pk, "trigger": job.trigger, "parameters": params, "label": job.label})
    result.model.save(tmp)
    manifest_sha256 = manifest_digest(tmp)
    tmp.rename(target)
    stats = dict(result.dataset_stats)
    # The items' attribute distribution, so quality cycles can measure drift against it.
    stats["feature_profile"] = drift.profile(items)
    try:
        with transaction.atomic():
            version = ModelVersion.objects.create(
                label=job.label,
                status=ModelVersion.Status.READY,
                artifact_path=job.label,
                manifest_sha256=manifest_sha256,
                metrics=result.metrics,
                candidate_scores=result.candidate_scores,
                selected_estimator=result.selected,
                parameters=params,
                total_samples=stats.get("total_samples", 0),
                unique_items=stats.get("unique_items", 0),
                unique_processes=stats.get("unique_processes", 0),
                dataset_stats=stats,
                training_duration_seconds=round(duration, 2),
                training_cutoff=_aware(result.training_cutoff),
                description=params.get("description", ""),
                tags=params.get("tags", []),
            )
    except Exception:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return version
