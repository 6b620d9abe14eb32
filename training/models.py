"""Training jobs: rows with a status, a heartbeat and a log, run by the django-q2 cluster."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from routing_ml.errors import ErrorCode, InvalidTransition, QueueFull

# The time-estimator candidates the engine knows (baseline is always fitted, the others must beat
# it) and those a training tries unless told otherwise.
from training.engine.config import CANDIDATES, DEFAULT_CANDIDATES  # noqa: F401 - re-exported

logger = logging.getLogger(__name__)


# Long lists in parameters (a gate's 500 item codes) are shown as a count and the first few.
SHOWN_LIST_ITEMS = 5


def summarize_value(value) -> str:
    """A parameter value for a person: short lists and dicts as JSON, long lists as "500 items: A, B, C, …"."""
    import json

    if isinstance(value, list) and len(value) > SHOWN_LIST_ITEMS:
        head = ", ".join(str(v) for v in value[:SHOWN_LIST_ITEMS])
        return f"{len(value)} items: {head}, …"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


class TrainingJobQuerySet(models.QuerySet):
    def in_flight(self) -> TrainingJobQuerySet:
        return self.filter(status__in=TrainingJob.ACTIVE_STATES)

    def stale(self, older_than: timedelta) -> TrainingJobQuerySet:
        """Running jobs whose worker stopped beating (killed, crashed, machine restarted)."""
        cutoff = timezone.now() - older_than
        return self.filter(status=TrainingJob.Status.RUNNING, heartbeat_at__lt=cutoff)

    def never_started(self, older_than: timedelta) -> TrainingJobQuerySet:
        """Queued jobs no worker claimed in time: their task was lost (enqueue error, dropped task, dead `--sync` process)."""
        cutoff = timezone.now() - older_than
        return self.filter(status=TrainingJob.Status.QUEUED, created_at__lt=cutoff)


class TrainingJob(models.Model):
    """One request to train a model version, from queueing to its result."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    class Trigger(models.TextChoices):
        MANUAL = "manual", "manual"
        API = "api", "API"
        QUALITY_ALERT = "quality_alert", "quality alert"
        SCHEDULE = "schedule", "schedule"

    ACTIVE_STATES = (Status.QUEUED, Status.RUNNING)
    TERMINAL_STATES = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    label = models.SlugField(max_length=100, help_text="Label the resulting model version will get.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.MANUAL)
    parameters = models.JSONField(default=dict, blank=True)
    progress = models.FloatField(default=0.0)
    stage = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    error_code = models.IntegerField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    candidate_scores = models.JSONField(default=dict, blank=True)
    selected_estimator = models.CharField(max_length=30, blank=True)
    gate = models.JSONField(default=dict, blank=True, help_text="Champion/challenger decision for retraining jobs.")
    model_version = models.ForeignKey("registry.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="training_jobs")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TrainingJobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        permissions = [("cancel_trainingjob", "Can cancel training jobs")]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.label}, {self.status})"

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at:
            return None
        return ((self.finished_at or timezone.now()) - self.started_at).total_seconds()

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL_STATES

    # -- creation ---------------------------------------------------------------------------

    @classmethod
    def queue_capacity(cls) -> int:
        from quality.models import QualitySettings

        return QualitySettings.current().queue_capacity

    @classmethod
    def lock_queue(cls) -> None:
        """Take the training queue's lock until the surrounding transaction ends.

        The settings row is locked (a write transaction on SQLite, which is IMMEDIATE), so a check
        of the queue followed by an insert, here or in a caller, cannot interleave with another's.
        """
        from quality.models import QualitySettings

        list(QualitySettings.objects.select_for_update().filter(pk=QualitySettings.current().pk))

    @classmethod
    def new_label(cls) -> str:
        return timezone.now().strftime("v%Y%m%d-%H%M%S-%f")

    @classmethod
    def enqueue(
        cls, *, parameters: dict | None = None, trigger: str = Trigger.MANUAL, by=None, label: str | None = None, run_inline: bool = False
    ) -> TrainingJob:
        """Queue a job for the cluster, or refuse with 1003 when `queue capacity` jobs are already queued or running.

        With `run_inline` the job takes its place in the queue but is not handed to the cluster:
        the caller runs it in-process (`train --sync`).
        """
        from registry.models import ModelVersion

        label = label or cls.new_label()
        if ModelVersion.objects.filter(label=label).exists() or cls.objects.in_flight().filter(label=label).exists():
            raise InvalidTransition(f"A model version or running job already uses the label {label!r}.", http_status=400)
        with transaction.atomic():
            # The capacity check and the insert share one write transaction (IMMEDIATE on SQLite,
            # a row lock on the settings row elsewhere), so two requests cannot both take the last place.
            cls.lock_queue()
            capacity = cls.queue_capacity()
            in_flight = cls.objects.in_flight().count()
            if in_flight >= capacity:
                raise QueueFull(
                    f"The training queue is full ({in_flight} of {capacity} jobs queued or running). Try again when one finishes.",
                    details={"in_flight": in_flight, "capacity": capacity},
                )
            job = cls.objects.create(label=label, parameters=parameters or {}, trigger=trigger, requested_by=by if getattr(by, "pk", None) else None)
            job.append_log(f"queued by {by or trigger}")
            if not run_inline:
                transaction.on_commit(job._submit)
        return job

    def _submit(self) -> None:
        """Hand the committed job to the cluster. If that fails the job fails at once, rather than hold a queue place forever."""
        from django_q.tasks import async_task

        try:
            # With TRAINING_CLUSTER set, only the training cluster takes it (long jobs never hold the quality cycles' workers).
            task_id = async_task("training.tasks.run_training_job", self.pk, task_name=f"train-{self.label}", group="training",
                                 cluster=settings.TRAINING_CLUSTER or None)
        except Exception as exc:
            logger.exception("Could not hand training job %s to the task queue", self.pk)
            self.fail(
                f"could not hand the job to the task queue ({type(exc).__name__}: {exc}). "
                "Check that the task broker (database or Redis) is reachable, then start the job again."
            )
            return
        TrainingJob.objects.filter(pk=self.pk).update(task_id=task_id or "")

    # -- transitions ------------------------------------------------------------------------

    def start(self) -> bool:
        """Claim the job for this worker: queued → running, atomically. False when someone else has it."""
        now = timezone.now()
        claimed = TrainingJob.objects.filter(pk=self.pk, status=self.Status.QUEUED, cancel_requested=False).update(
            status=self.Status.RUNNING, started_at=now, heartbeat_at=now, stage="starting"
        )
        if claimed:
            self.refresh_from_db()
        return bool(claimed)

    start.alters_data = True

    def beat(self, progress: float | None = None, stage: str | None = None) -> None:
        """Record progress and prove the worker is alive."""
        fields = {"heartbeat_at": timezone.now()}
        if progress is not None:
            fields["progress"] = round(float(progress), 1)
            self.progress = fields["progress"]
        if stage is not None:
            fields["stage"] = stage[:200]
            self.stage = fields["stage"]
        TrainingJob.objects.filter(pk=self.pk).update(**fields)

    beat.alters_data = True

    def append_log(self, line: str) -> None:
        stamp = timezone.now().strftime("%Y-%m-%d %H:%M:%S")
        text = f"{stamp} {line}\n"
        # Concatenate in SQL so the log survives concurrent writers (cancel requests, the reaper).
        TrainingJob.objects.filter(pk=self.pk).update(log=models.functions.Concat(models.F("log"), models.Value(text)))
        self.log = (self.log or "") + text

    append_log.alters_data = True

    def finish(self, version, candidate_scores: dict | None = None, selected: str = "") -> None:
        updated = TrainingJob.objects.filter(pk=self.pk, status=self.Status.RUNNING).update(
            status=self.Status.SUCCEEDED, model_version=version, progress=100.0, stage="done",
            candidate_scores=candidate_scores or {}, selected_estimator=selected, finished_at=timezone.now(), heartbeat_at=timezone.now(),
        )
        if not updated:
            raise InvalidTransition(f"Training job {self.pk} is no longer running; its result was discarded.")
        self.refresh_from_db()

    finish.alters_data = True

    def fail(self, error: str, code: int = ErrorCode.TRAINING_FAILED, from_states: tuple[str, ...] = ACTIVE_STATES) -> bool:
        """Mark the job failed if it is still in one of `from_states`; False when it had already moved on."""
        updated = TrainingJob.objects.filter(pk=self.pk, status__in=from_states).update(
            status=self.Status.FAILED, error=error[:10000], error_code=int(code), finished_at=timezone.now()
        )
        if updated:
            self.append_log(f"failed: {error}")
            self.refresh_from_db()
            from .signals import job_failed

            # Listeners (notifications) must never turn a recorded failure into a crash.
            job_failed.send_robust(sender=TrainingJob, job=self)
        return bool(updated)

    fail.alters_data = True

    def cancel(self, by=None) -> None:
        """A queued job is cancelled at once; a running one stops at its next stage boundary."""
        if self.status == self.Status.QUEUED:
            if TrainingJob.objects.filter(pk=self.pk, status=self.Status.QUEUED).update(
                status=self.Status.CANCELLED, cancel_requested=True, finished_at=timezone.now()
            ):
                self.append_log(f"cancelled by {by or 'system'} before it started")
                self.refresh_from_db()
                return
            self.refresh_from_db()
        if self.status == self.Status.RUNNING:
            TrainingJob.objects.filter(pk=self.pk).update(cancel_requested=True)
            self.append_log(f"cancellation requested by {by or 'system'}")
            self.refresh_from_db()
            return
        raise InvalidTransition(f"Training job {self.pk} is {self.status} and cannot be cancelled.")

    cancel.alters_data = True

    def mark_cancelled(self) -> None:
        TrainingJob.objects.filter(pk=self.pk, status=self.Status.RUNNING).update(status=self.Status.CANCELLED, finished_at=timezone.now())
        self.append_log("cancelled")
        self.refresh_from_db()

    mark_cancelled.alters_data = True

    def retry(self, by=None) -> TrainingJob:
        """A new job with the same parameters (the old one keeps its history)."""
        if not self.is_terminal or self.status == self.Status.SUCCEEDED:
            raise InvalidTransition(f"Training job {self.pk} is {self.status}; only failed or cancelled jobs can be retried.")
        return TrainingJob.enqueue(parameters=self.parameters, trigger=self.trigger, by=by)

    retry.alters_data = True

    def cancel_was_requested(self) -> bool:
        return TrainingJob.objects.filter(pk=self.pk, cancel_requested=True).exists()

    @classmethod
    def reap_stale(cls, older_than: timedelta | None = None, queued_older_than: timedelta | None = None) -> list[int]:
        """Fail running jobs whose heartbeat stopped (and remove what they left on disk), and queued jobs nobody started.

        A queued job waits at most about one training run for a worker; the broker itself hands a
        task out again after its `retry` window (TRAINING_TIMEOUT + a margin), so a job still
        queued after that window was lost, and would otherwise hold a queue place for good.
        """
        from .pipeline import discard_job_artifacts

        if older_than is None:
            older_than = timedelta(seconds=settings.TRAINING_HEARTBEAT_TIMEOUT)
        if queued_older_than is None:
            queued_older_than = timedelta(seconds=settings.Q_CLUSTER.get("retry") or settings.TRAINING_TIMEOUT + 600)
        reaped = []
        for job in cls.objects.stale(older_than):
            if job.fail(f"worker stopped: no heartbeat since {job.heartbeat_at:%Y-%m-%d %H:%M:%S} (reaped)"):
                discard_job_artifacts(job)
                reaped.append(job.pk)
        for job in cls.objects.never_started(queued_older_than):
            reason = (
                f"never started: queued since {job.created_at:%Y-%m-%d %H:%M:%S} UTC, longer than the task queue's retry window "
                f"({queued_older_than.total_seconds():.0f} s), so its task was lost (reaped). Start the job again."
            )
            # Only while still queued: a worker claiming it at this very moment keeps it.
            if job.fail(reason, from_states=(cls.Status.QUEUED,)):
                reaped.append(job.pk)
        return reaped

    reap_stale.alters_data = True
