"""The training pipeline: ERP data → engine → bundle on disk → registered ModelVersion.

Runs inside a django-q2 worker (or in-process with `train --sync`). Every failure, an
interruption included, leaves the job `failed` with its error, and no ModelVersion row and no
directory behind; only a version that already went live (auto-deployed) is kept, and then the
job succeeds.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
import traceback
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from registry.models import ModelVersion, manifest_digest
from routing_ml.errors import ErrorCode, InvalidTransition
from training.engine import drift

from .models import TrainingJob, summarize_value
from .signals import version_trained
from .storage import check_model_root_writable, make_read_only

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10
# How long a job waits for the ERP snapshot it refreshed in the background before it reports its outcome (seconds):
# ~2 s at 325k items; a hung disk must not hold the job (the write goes on, or CURRENT stays on the last generation).
SNAPSHOT_WRITE_WAIT = 300
TMP_PREFIX = ".tmp-"


def engine_config(parameters: dict):
    """Map a job's parameters onto the engine's configuration."""
    from training.engine import EngineConfig

    fields = {}
    if parameters.get("candidates"):
        fields["candidates"] = tuple(parameters["candidates"])
    for name in ("min_improvement_pct", "seed", "top_k", "n_components", "holdout_share", "max_embedding_width"):
        if parameters.get(name) is not None:
            fields[name] = parameters[name]
    if "min_improvement_pct" not in fields:
        # Not asked for by this job: the admin-tunable threshold applies (quality settings).
        from quality.models import QualitySettings

        fields["min_improvement_pct"] = float(QualitySettings.current().min_improvement_pct)
    if parameters.get("search") is not None:
        fields["search"] = bool(parameters["search"])
    config = EngineConfig(**fields)
    if parameters.get("feature_weights"):
        # An admin's explicit weights are an override: the settings search keeps them and tunes the rest.
        config = config.with_weights(parameters["feature_weights"]).replace(fixed_weights=True)
    return config


def drift_reference(items, actuals, window_days: int):
    """The items produced in the last `window_days` before the newest work result: the population a
    quality cycle samples from, so PSI compares like with like (not the whole item master)."""
    import pandas as pd

    if actuals.empty or "REPORT_DT" not in actuals.columns:
        return items
    reported = pd.to_datetime(actuals["REPORT_DT"], errors="coerce")
    newest = reported.max()
    if pd.isna(newest):
        return items
    recent = set(actuals.loc[reported >= newest - pd.Timedelta(days=window_days), "ITEM_CD"].astype(str))
    chosen = items[items["ITEM_CD"].astype(str).isin(recent)]
    return chosen if len(chosen) else items


# Each item's times are learned from its most recent work orders per operation (see latest_per_operation).
DEFAULT_RECENT_ORDERS = 3


def results_before(until):
    """The exclusive bound on REPORT_DT for a job's `until`.

    `until` names a day and includes it (`--until 2026-03-31` learns from March 31st too), so the
    bound is the next midnight (UTC). A full timestamp is taken as the exact moment.
    """
    if not until or isinstance(until, datetime):
        return until or None
    if isinstance(until, date):
        return until + timedelta(days=1)
    try:
        return date.fromisoformat(str(until)) + timedelta(days=1)
    except ValueError:
        return until


def load_frames(parameters: dict, on_read=None):
    """The engine's three input frames, optionally restricted to a seeded sample of items.

    `on_read(stats)` hears what the ERP snapshot read (`erp.snapshot.ReadStats`), when it is on.
    """
    import numpy as np

    from erp.data import load_training_frames
    from erp.frames import latest_per_operation
    from training.engine.tables import assign_occurrences

    until = parameters.get("until")
    # Routings as current at the named moment (as before); work results through the whole named day.
    # The refreshed ERP snapshot is written beside the training (~2 s of Parquet at 325k items), not before it.
    items, routings, actuals = load_training_frames(until=results_before(until), when=until, on_read=on_read, background_write=True)
    # Each work-order row is placed on its operation (the second GRIND is not the first) before
    # the most recent orders per operation are kept.
    actuals = latest_per_operation(assign_occurrences(actuals, routings), int(parameters.get("recent_orders", DEFAULT_RECENT_ORDERS)))
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
                # No connection held between beats (close_old_connections would keep it for CONN_MAX_AGE).
                connections.close_all()  # this thread's only

    def stop(self) -> None:
        self.stopped.set()


def final_dir(label: str) -> Path:
    return Path(settings.MODEL_ROOT) / label


def was_deployed(version: ModelVersion | None) -> bool:
    """Whether a version is or has been served (active, or named by a deployment event): such a version is kept."""
    if version is None:
        return False
    return ModelVersion.objects.filter(Q(is_active=True) | Q(deployment_events__isnull=False), pk=version.pk).exists()


def discard_job_artifacts(job: TrainingJob, version: ModelVersion | None = None) -> None:
    """Remove what a failed/cancelled job wrote: its temp dirs, the `version` it registered, and its final dir.

    A version that has been deployed is never removed (it is or was serving, and the deployment
    history points at it); nor is the final dir of a version someone else owns.
    """
    root = Path(settings.MODEL_ROOT)
    for tmp in root.glob(f"{TMP_PREFIX}{job.label}-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    if version is not None and not was_deployed(version):
        if ModelVersion.objects.filter(pk=version.pk).delete()[0]:
            job.append_log(f"removed model version {version.label}: this job registered it, then failed")
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
    from erp import snapshot as erp_snapshot
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

    version = result = None
    try:
        check_model_root_writable()  # fail in a second, not after minutes of computing
        job.beat(1, "loading ERP data")
        job.append_log(f"loading ERP data (parameters: {'; '.join(f'{k}={summarize_value(v)}' for k, v in sorted(params.items()))})")
        items, routings, actuals = load_frames(params, on_read=lambda stats: job.append_log(stats.summary()))
        job.append_log(f"loaded {len(items)} items, {len(routings)} routing operations, {len(actuals)} work results")
        if routings.empty:
            raise ValueError("The ERP source has no routings to learn from: import or seed ERP data first.")
        check_cancel()
        # A gated job will be scored on these items: its learned time estimators must not have seen them.
        gate_items = params.get("gate_items") or []
        result = train(
            items, routings, actuals, engine_config(params), progress=progress, check_cancel=check_cancel, exclude_from_time_fit=gate_items
        )
        check_cancel()
        erp_snapshot.wait_for_writes(SNAPSHOT_WRITE_WAIT)  # long done at scale; a job is not done before the snapshot it refreshed
        job.beat(92, "saving the bundle")
        from quality.models import QualitySettings

        reference = drift_reference(items, actuals, QualitySettings.current().recent_window_days)
        version = _register(job, result, params, time.monotonic() - started, reference)
        job.append_log(f"registered model version {version.label} (selected estimators: run {result.selected}, setup {result.selected_setup})")
        # Listeners (the quality gate) and activation run before the job is marked done, so anyone
        # waiting for a terminal job sees their outcome too. A listener's error is logged and the
        # version stays ready; any other error from here on fails the job and removes the version,
        # unless it has gone live meanwhile (see _finish_deployed).
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
        erp_snapshot.wait_for_writes(SNAPSHOT_WRITE_WAIT)
        discard_job_artifacts(job)
        job.mark_cancelled()
        return f"job {job.pk} cancelled: {exc}"
    except Exception as exc:
        if was_deployed(version):
            return _finish_deployed(job, version, result, exc)
        logger.exception("Training job %s failed", job.pk)
        erp_snapshot.wait_for_writes(SNAPSHOT_WRITE_WAIT)
        discard_job_artifacts(job, version)
        job.fail(f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}", code=ErrorCode.TRAINING_FAILED)
        return f"job {job.pk} failed: {type(exc).__name__}: {exc}"
    except BaseException as exc:
        # Ctrl-C in `train --sync`, SystemExit when a worker is stopped: nothing may stay running or half-written.
        if was_deployed(version):
            _finish_deployed(job, version, result, exc)
        else:
            discard_job_artifacts(job, version)
            job.fail(
                f"interrupted ({type(exc).__name__}) during {job.stage or 'start-up'!r}; nothing was kept. Start the job again.",
                code=ErrorCode.TRAINING_FAILED,
            )
        raise
    finally:
        erp_snapshot.wait_for_writes(SNAPSHOT_WRITE_WAIT)
        heartbeat.stop()


def _finish_deployed(job: TrainingJob, version: ModelVersion, result, exc: BaseException) -> str:
    """A step after registration failed, but the version had already gone live (e.g. the gate auto-deployed it).

    A serving version is never deleted under its users, so the job succeeded with it; the
    later step's error goes to the job log.
    """
    error = f"{type(exc).__name__}: {exc}"
    logger.error("Training job %s: a step after %s went live failed: %s", job.pk, version.label, error, exc_info=exc)
    job.append_log(f"{version.label} is live, but a later step failed: {error}")
    try:
        job.finish(version, candidate_scores=result.candidate_scores, selected=result.selected)
    except InvalidTransition:
        # Someone else ended the job meanwhile (the reaper); the live version stays all the same.
        job.refresh_from_db()
        return f"job {job.pk} is {job.status}; its version {version.label} is live and stays ({error})"
    return f"job {job.pk} succeeded: {version.label} (a step after it went live failed: {error})"


def _register(job: TrainingJob, result, params: dict, duration: float, drift_items) -> ModelVersion:
    """Write the bundle to a temporary directory, rename it into place, then point a ready row at it."""
    root = Path(settings.MODEL_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    target = final_dir(job.label)
    if target.exists():
        raise FileExistsError(f"{target} already exists; refusing to overwrite another version's files")
    tmp = root / f"{TMP_PREFIX}{job.label}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    _write_json(tmp / "metrics.json", {"selected": result.selected, "selected_setup": result.selected_setup, "metrics": result.metrics, "candidates": result.candidate_scores})
    _write_json(tmp / "training_request.json", {"job": job.pk, "trigger": job.trigger, "parameters": params, "label": job.label})
    result.model.save(tmp)
    make_read_only(tmp)
    manifest_sha256 = manifest_digest(tmp)
    tmp.rename(target)
    stats = dict(result.dataset_stats)
    # The attribute distribution of the recently produced items, so quality cycles (which sample
    # recently produced items) measure drift against the same population.
    stats["feature_profile"] = drift.profile(drift_items)
    stats["feature_profile_items"] = int(len(drift_items))
    stats["stage_seconds"] = {name: round(seconds, 2) for name, seconds in result.stage_seconds.items()}
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
