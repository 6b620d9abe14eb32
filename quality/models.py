"""Quality monitoring records: the settings, each evaluation cycle and the alerts it raised."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from croniter import croniter
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connection, models, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone
from simple_history.models import HistoricalRecords

from routing_ml.errors import InvalidTransition

logger = logging.getLogger(__name__)


class CycleInProgress(InvalidTransition):
    """A quality cycle is already queued or running: at most one at a time (HTTP 409)."""


class CycleReaped(InvalidTransition):
    """The cycle was failed by the reaper (its heartbeat stopped) before it could finish: its end is not recorded."""


# A year: a longer cooldown is "never retrain" (switch auto_retrain off instead), and 4.99e307 hours overflowed the date arithmetic.
MAX_COOLDOWN_HOURS = 24 * 366


class QualitySettings(models.Model):
    """The one current set of thresholds, sampling, retraining and schedule options (row pk=1), with history."""

    class Strategy(models.TextChoices):
        STRATIFIED = "stratified", "stratified by PART_TYPE"
        RANDOM = "random", "random"
        RECENT = "recent", "most recently produced"

    mae_warning = models.FloatField("MAE warning (minutes)", default=5.0, validators=[MinValueValidator(0), MaxValueValidator(10000)])
    mae_critical = models.FloatField("MAE critical (minutes)", default=10.0, validators=[MinValueValidator(0), MaxValueValidator(10000)])
    process_match_warning = models.FloatField(default=0.85, validators=[MinValueValidator(0), MaxValueValidator(1)])
    process_match_critical = models.FloatField(default=0.80, validators=[MinValueValidator(0), MaxValueValidator(1)])
    cv_max = models.FloatField("CV max", default=0.5, validators=[MinValueValidator(0), MaxValueValidator(100)])
    sample_count_min = models.FloatField(default=3, validators=[MinValueValidator(0), MaxValueValidator(10000)])
    drift_psi_threshold = models.FloatField("drift PSI warning", default=0.25, validators=[MinValueValidator(0), MaxValueValidator(100)])
    planner_agreement_warning = models.FloatField(
        "planner agreement warning", default=0.85, validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="Process match between served predictions and the routings planners decided or entered in the ERP.",
    )
    planner_agreement_critical = models.FloatField("planner agreement critical", default=0.75, validators=[MinValueValidator(0), MaxValueValidator(1)])
    planner_agreement_min_items = models.PositiveIntegerField(
        "min. items for planner agreement", default=20, validators=[MaxValueValidator(100_000)], help_text="Fewer decided items than this: too few to judge, no alert."
    )

    sample_size = models.PositiveIntegerField(default=500, validators=[MinValueValidator(10), MaxValueValidator(10000)])
    sample_strategy = models.CharField(max_length=20, choices=Strategy.choices, default=Strategy.STRATIFIED)
    recent_window_days = models.PositiveIntegerField(default=30, validators=[MinValueValidator(1), MaxValueValidator(3650)])
    min_work_orders = models.PositiveIntegerField("min. work orders per item", default=1, validators=[MinValueValidator(1), MaxValueValidator(1000)])
    sample_seed = models.IntegerField(default=42, validators=[MinValueValidator(0), MaxValueValidator(2**31 - 1)])

    auto_retrain = models.BooleanField(default=True)
    cooldown_hours = models.FloatField(default=24, validators=[MinValueValidator(0), MaxValueValidator(MAX_COOLDOWN_HOURS)])
    queue_capacity = models.PositiveIntegerField(default=3, validators=[MinValueValidator(1), MaxValueValidator(20)])
    auto_deploy = models.BooleanField(default=True)
    min_improvement_pct = models.FloatField(default=5.0, validators=[MinValueValidator(0), MaxValueValidator(100)])

    schedule_cron = models.CharField("schedule (cron)", max_length=100, default="0 2 * * *")
    schedule_enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        verbose_name = verbose_name_plural = "quality settings"
        permissions = [("view_dashboard", "Can view quality dashboards")]

    def __str__(self) -> str:
        return "Quality settings"

    @classmethod
    def current(cls) -> QualitySettings:
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj

    def clean(self) -> None:
        errors = {}
        if self.mae_warning is not None and self.mae_critical is not None and self.mae_warning > self.mae_critical:
            errors["mae_warning"] = "The MAE warning threshold must not be higher than the critical one."
        if (
            self.process_match_warning is not None
            and self.process_match_critical is not None
            and self.process_match_warning < self.process_match_critical
        ):
            errors["process_match_warning"] = "The process-match warning threshold must not be lower than the critical one."
        if (
            self.planner_agreement_warning is not None
            and self.planner_agreement_critical is not None
            and self.planner_agreement_warning < self.planner_agreement_critical
        ):
            errors["planner_agreement_warning"] = "The planner-agreement warning threshold must not be lower than the critical one."
        if self.schedule_cron and not croniter.is_valid(self.schedule_cron):
            errors["schedule_cron"] = f"{self.schedule_cron!r} is not a valid cron expression (e.g. '0 2 * * *')."
        elif self.schedule_enabled and not (self.schedule_cron or "").strip():
            errors["schedule_cron"] = "The schedule is enabled: give a cron expression (e.g. '0 2 * * *') or disable it."

        if errors:
            raise ValidationError(errors)

    def save(self, *args, **kwargs):
        self.pk = 1
        super().save(*args, **kwargs)
        from .schedule import sync_quality_schedule

        sync_quality_schedule()


class QualityCycleQuerySet(models.QuerySet):
    def finished(self) -> QualityCycleQuerySet:
        return self.filter(status=QualityCycle.Status.SUCCEEDED)

    def latest_finished(self) -> QualityCycle | None:
        return self.finished().order_by("-finished_at", "-pk").first()

    def in_progress(self) -> QualityCycleQuerySet:
        return self.filter(status__in=(QualityCycle.Status.QUEUED, QualityCycle.Status.RUNNING))

    def stale(self, older_than: timedelta | None = None) -> QualityCycleQuerySet:
        """Cycles `running` whose heartbeat stopped `older_than` ago (default QUALITY_CYCLE_HEARTBEAT_TIMEOUT): their process was killed."""
        cutoff = timezone.now() - (older_than if older_than is not None else QualityCycle.stale_after())
        return self.filter(status=QualityCycle.Status.RUNNING).alias(beat=Coalesce("heartbeat_at", "started_at")).filter(beat__lt=cutoff)

    def stale_queued(self) -> QualityCycleQuerySet:
        """Cycles `queued` longer than QUALITY_CYCLE_QUEUE_TIMEOUT: no worker took their task (lost, or no cluster running)."""
        cutoff = timezone.now() - timedelta(seconds=settings.QUALITY_CYCLE_QUEUE_TIMEOUT)
        return self.filter(status=QualityCycle.Status.QUEUED, started_at__lt=cutoff)


class QualityCycle(models.Model):
    """One evaluation of the active model against actual work-order results."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"

    class Trigger(models.TextChoices):
        MANUAL = "manual", "manual"
        API = "api", "API"
        SCHEDULE = "schedule", "schedule"
        GATE = "gate", "deployment gate"

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING, db_index=True)
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.MANUAL)
    model_version = models.ForeignKey("registry.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="quality_cycles")
    sample_strategy = models.CharField(max_length=20, choices=QualitySettings.Strategy.choices)
    sample_size = models.PositiveIntegerField()
    items_sampled = models.PositiveIntegerField(default=0)
    items_evaluated = models.PositiveIntegerField(default=0)
    items_without_actuals = models.PositiveIntegerField(default=0)
    items_failed = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    metrics_by_part_type = models.JSONField(default=dict, blank=True)
    drift = models.JSONField(default=dict, blank=True, help_text="Population stability index per feature.")
    report = models.JSONField(default=dict, blank=True)
    report_path = models.CharField(max_length=500, blank=True)
    retraining_job = models.ForeignKey("training.TrainingJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="quality_cycles")
    retraining_decision = models.TextField(blank=True, help_text="Why a retraining job was or was not enqueued.")
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    started_at = models.DateTimeField(default=timezone.now, db_index=True, help_text="When it started running (while queued: when it was requested).")
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Last sign of life of the process running it.")
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)

    objects = QualityCycleQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-pk"]
        permissions = [("run_qualitycycle", "Can run quality cycles")]

    def __str__(self) -> str:
        return f"cycle {self.pk} ({self.status})"

    # ---------------------------------------------------------------- lifecycle
    # queued (request/enqueue) → running (start) → succeeded | failed (succeed/fail, or the reaper).
    # Every entry point (command, admin, API, schedule) goes through request(): one cycle at a time.

    @classmethod
    def request(cls, *, trigger: str = Trigger.MANUAL, by=None, sample_size: int | None = None, strategy: str | None = None) -> QualityCycle:
        """A new `queued` cycle, or CycleInProgress (409) naming the one already queued or running.

        The check and the insert run under a lock on the settings row (SQLite: the IMMEDIATE
        transaction's write lock), so two requests at the same moment cannot both pass.
        """
        cfg = QualitySettings.current()
        with transaction.atomic():
            QualitySettings.objects.select_for_update().filter(pk=cfg.pk).first()
            busy = cls.objects.in_progress().order_by("started_at", "pk").first()
            if busy is not None:
                since = "since" if busy.status == cls.Status.RUNNING else "requested"
                raise CycleInProgress(
                    f"Quality cycle {busy.pk} is already {busy.status} ({since} {busy.started_at:%Y-%m-%d %H:%M:%S} UTC); "
                    "only one runs at a time. Wait for it to finish.",
                    details={"cycle": busy.pk, "status": busy.status, "started_at": busy.started_at.isoformat()},
                )
            return cls.objects.create(
                status=cls.Status.QUEUED,
                trigger=trigger,
                sample_strategy=strategy or cfg.sample_strategy,
                sample_size=sample_size or cfg.sample_size,
                requested_by=by if getattr(by, "pk", None) else None,
            )

    @classmethod
    def enqueue(cls, *, trigger: str = Trigger.MANUAL, by=None, sample_size: int | None = None, strategy: str | None = None) -> tuple[QualityCycle, str]:
        """Request a cycle and hand it to the task cluster: (the queued cycle, the task id)."""
        from django_q.tasks import async_task

        cycle = cls.request(trigger=trigger, by=by, sample_size=sample_size, strategy=strategy)
        try:
            task_id = async_task("quality.tasks.run_cycle_task", trigger, cycle.requested_by_id, sample_size, strategy, cycle_id=cycle.pk, group="quality")
        except Exception as exc:  # the broker is down: the cycle must not block every later one
            cls.objects.filter(pk=cycle.pk, status=cls.Status.QUEUED).update(
                status=cls.Status.FAILED, error=f"Could not be queued: {type(exc).__name__}: {exc}", finished_at=timezone.now()
            )
            raise
        return cycle, task_id

    def start(self, model_version=None) -> None:
        """queued → running (refused if the reaper failed it meanwhile); starts the heartbeat."""
        now = timezone.now()
        updated = type(self).objects.filter(pk=self.pk, status=self.Status.QUEUED).update(
            status=self.Status.RUNNING, started_at=now, heartbeat_at=now, model_version=model_version
        )
        if updated != 1:
            self.refresh_from_db(fields=["status", "error"])
            raise InvalidTransition(f"Quality cycle {self.pk} is {self.status}, not queued: it cannot start. {self.error}".strip())
        self.status, self.started_at, self.heartbeat_at, self.model_version = self.Status.RUNNING, now, now, model_version
        self._heartbeat = _Heartbeat(self.pk)
        self._heartbeat.start()

    start.alters_data = True

    def _close(self, status: str, **fields) -> bool:
        """running → status, as one conditional UPDATE: a cycle the reaper already failed is never overwritten (False)."""
        heartbeat = getattr(self, "_heartbeat", None)
        if heartbeat is not None:
            heartbeat.stop()
        now = timezone.now()
        counts = {name: getattr(self, name) for name in ("items_sampled", "items_evaluated", "items_without_actuals", "items_failed")}
        values = {"status": status, "finished_at": now, "duration_seconds": round((now - self.started_at).total_seconds(), 3), **counts, **fields}
        closed = type(self).objects.filter(pk=self.pk, status=self.Status.RUNNING).update(**values)
        if not closed:
            self.refresh_from_db()
            return False
        for name, value in values.items():
            setattr(self, name, value)
        return True

    def succeed(self, **fields) -> None:
        """Record the result; CycleReaped if the reaper failed the cycle meanwhile (its alerts are then not raised either)."""
        if not self._close(self.Status.SUCCEEDED, **fields):
            raise CycleReaped(f"Quality cycle {self.pk} was failed by the reaper before it finished: {self.error}")

    succeed.alters_data = True

    def fail(self, error: str, **fields) -> bool:
        """Record the failure (False when the reaper already did)."""
        return self._close(self.Status.FAILED, error=error, **fields)

    fail.alters_data = True

    @staticmethod
    def stale_after() -> timedelta:
        """How long a running cycle may go without a heartbeat before the reaper fails it (QUALITY_CYCLE_HEARTBEAT_TIMEOUT).

        Its process beats every QUALITY_CYCLE_HEARTBEAT_INTERVAL seconds from a thread, whatever
        step it is in; the reaper runs every minute, so a killed cycle is failed within
        timeout + 1 minute.
        """
        return timedelta(seconds=settings.QUALITY_CYCLE_HEARTBEAT_TIMEOUT)

    @classmethod
    def reap_stale(cls, older_than: timedelta | None = None) -> list[int]:
        """Fail cycles whose process died (no heartbeat) and queued cycles no worker took, each with a critical alert saying why."""
        limit = older_than if older_than is not None else cls.stale_after()
        reaped = []
        stale = [(cycle, cls.Status.RUNNING) for cycle in cls.objects.stale(limit)] + [(cycle, cls.Status.QUEUED) for cycle in cls.objects.stale_queued()]
        for cycle, was in stale:
            if was == cls.Status.RUNNING:
                beat = cycle.heartbeat_at or cycle.started_at
                reason = (
                    f"Reaped: no heartbeat for {limit.total_seconds():.0f} s (last at {beat:%Y-%m-%d %H:%M:%S} UTC, started "
                    f"{cycle.started_at:%Y-%m-%d %H:%M:%S} UTC); the process running it was killed or hangs."
                )
            else:
                reason = (
                    f"Reaped: queued since {cycle.started_at:%Y-%m-%d %H:%M:%S} UTC and not taken by a worker within "
                    f"{settings.QUALITY_CYCLE_QUEUE_TIMEOUT} s; is `manage.py qcluster` running?"
                )
            now = timezone.now()
            # Conditional UPDATE: a worker that finishes the cycle at this very moment, or a second reaper, wins or loses cleanly.
            claimed = cls.objects.filter(pk=cycle.pk, status=was).update(
                status=cls.Status.FAILED, error=reason, finished_at=now, duration_seconds=round((now - cycle.started_at).total_seconds(), 3)
            )
            if not claimed:
                continue
            QualityAlert.record(cycle=cycle, level=QualityAlert.Level.CRITICAL, metric="cycle", message=f"Quality cycle {cycle.pk} failed: {reason}")
            reaped.append(cycle.pk)
        return reaped

    def seen_alerts(self) -> list[QualityAlert]:
        """The alerts this cycle raised or found still breached (an open alert is updated, not repeated, by later cycles)."""
        seen = {a.pk: a for a in [*self.alerts.all(), *self.alerts_seen.all()]}
        return sorted(seen.values(), key=lambda a: (a.created_at, a.pk), reverse=True)

    @property
    def report_file(self):
        """The cycle's JSON report on disk (under QUALITY_REPORT_ROOT), or None; never shown, served by report_url."""
        from pathlib import Path

        path = Path(settings.QUALITY_REPORT_ROOT) / f"cycle_{self.pk}.json"
        return path if path.is_file() else None

    def report_url(self) -> str | None:
        from django.urls import reverse

        return reverse("quality:cycle_report", args=[self.pk]) if self.report_file else None


    def summary(self) -> dict:
        """The figures a caller wants on one line: the metrics plus what was evaluated and how long it took."""
        return {
            "cycle": self.pk,
            "status": self.status,
            "model_version": self.model_version.label if self.model_version_id else None,
            **(self.metrics or {}),
            "items_sampled": self.items_sampled,
            "items_evaluated": self.items_evaluated,
            "items_without_actuals": self.items_without_actuals,
            "items_failed": self.items_failed,
            "duration_seconds": self.duration_seconds,
            "alerts": [f"{a.level}:{a.metric}" for a in self.seen_alerts()],
            "retraining_job": self.retraining_job_id,
            "retraining_decision": self.retraining_decision,
            "error": self.error or None,
        }


class _Heartbeat(threading.Thread):
    """Marks a running cycle alive every QUALITY_CYCLE_HEARTBEAT_INTERVAL seconds, on its own connection, until stopped.

    It stops by itself when the row is no longer `running` (finished, or reaped).
    """

    def __init__(self, cycle_pk: int):
        super().__init__(name=f"quality-cycle-{cycle_pk}-heartbeat", daemon=True)
        self.cycle_pk = cycle_pk
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        interval = float(settings.QUALITY_CYCLE_HEARTBEAT_INTERVAL)
        try:
            while interval > 0 and not self._stop_event.wait(interval):
                try:
                    beating = QualityCycle.objects.filter(pk=self.cycle_pk, status=QualityCycle.Status.RUNNING).update(heartbeat_at=timezone.now())
                except Exception:  # a busy database: try again at the next beat
                    logger.warning("Quality cycle %s: heartbeat failed", self.cycle_pk, exc_info=True)
                    continue
                if not beating:
                    return
        finally:
            connection.close()

class QualityAlertQuerySet(models.QuerySet):
    def open(self) -> QualityAlertQuerySet:
        return self.filter(status__in=QualityAlert.UNRESOLVED_STATES)

    def critical(self) -> QualityAlertQuerySet:
        return self.filter(level=QualityAlert.Level.CRITICAL)

    def bulk_create(self, objs, *args, **kwargs):
        """As Django's, and each new alert is announced (bulk_create sends no post_save)."""
        created = super().bulk_create(objs, *args, **kwargs)
        from .notifications import alert_opened

        for alert in created:
            alert_opened(alert)
        return created


class QualityAlert(models.Model):
    """A threshold a cycle breached. Resolves itself when a later cycle is back inside it."""

    class Level(models.TextChoices):
        WARNING = "warning", "warning"
        CRITICAL = "critical", "critical"

    class Status(models.TextChoices):
        OPEN = "open", "open"
        ACKNOWLEDGED = "acknowledged", "acknowledged"
        RESOLVED = "resolved", "resolved"

    UNRESOLVED_STATES = (Status.OPEN, Status.ACKNOWLEDGED)

    cycle = models.ForeignKey(
        QualityCycle, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts", help_text="The cycle that raised it (none: a serving process did)."
    )
    last_cycle = models.ForeignKey(
        QualityCycle, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts_seen", help_text="The latest cycle that found it breached."
    )
    level = models.CharField(max_length=10, choices=Level.choices, db_index=True)
    metric = models.CharField(max_length=50)
    part_type = models.CharField(max_length=50, blank=True, default="", help_text="Empty: all part types.")
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    error_code = models.IntegerField(null=True, blank=True)
    message = models.TextField()
    status = models.CharField(max_length=15, choices=Status.choices, default=Status.OPEN, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    last_seen_at = models.DateTimeField(null=True, blank=True, help_text="When a cycle last found it breached.")
    count = models.PositiveIntegerField(default=1, help_text="Cycles that found it breached while it was open.")
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.TextField(blank=True)

    objects = QualityAlertQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        permissions = [("acknowledge_qualityalert", "Can acknowledge and resolve quality alerts")]

    def __str__(self) -> str:
        return f"{self.level} {self.metric}={self.value} ({self.status})"

    def save(self, *args, **kwargs):
        creating = self._state.adding
        super().save(*args, **kwargs)
        if creating:
            from .notifications import alert_opened

            alert_opened(self)

    @classmethod
    def raise_condition(cls, *, metric: str, level: str, error_code: int, value=None, threshold=None, message: str) -> QualityAlert:
        """A system condition (no cycle) is bad: open an alert, or update the open one on the same metric and level (no new message).

        A change of level closes the old alert and opens one at the new level.
        """
        current = cls.objects.open().filter(cycle=None, metric=metric).order_by("-created_at").first()
        if current is not None and current.level == level:
            current.value, current.threshold, current.message = value, threshold, message
            current.save(update_fields=["value", "threshold", "message"])
            return current
        if current is not None:
            current.resolve(resolution=f"now {level}")
        return cls.objects.create(cycle=None, level=level, metric=metric, value=value, threshold=threshold, error_code=error_code, message=message)

    raise_condition.alters_data = True

    @classmethod
    def clear_condition(cls, metric: str, resolution: str) -> int:
        """A system condition is back to normal: resolve its open alerts."""
        alerts = list(cls.objects.open().filter(cycle=None, metric=metric))
        for alert in alerts:
            alert.resolve(resolution=resolution)
        return len(alerts)

    clear_condition.alters_data = True

    @classmethod
    def record(cls, *, cycle, level: str, metric: str, message: str, value=None, threshold=None, error_code=None, part_type: str = "") -> QualityAlert:
        """Raise an alert, or update the open one for the same metric, level and part type (value, message, last seen, count).

        Each cycle finding the same breach would otherwise open an identical alert.
        """
        now = timezone.now()
        with transaction.atomic():
            existing = cls.objects.open().select_for_update().filter(metric=metric, level=level, part_type=part_type).order_by("created_at", "pk").first()
            if existing is None:
                return cls.objects.create(
                    cycle=cycle, last_cycle=cycle, level=level, metric=metric, part_type=part_type, value=value, threshold=threshold,
                    error_code=error_code, message=message, last_seen_at=now, count=1,
                )
            cls.objects.filter(pk=existing.pk).update(
                value=value, threshold=threshold, error_code=error_code, message=message, last_cycle=cycle, last_seen_at=now, count=F("count") + 1
            )
            existing.refresh_from_db()
            return existing

    def acknowledge(self, by=None) -> None:
        if self.status != self.Status.OPEN:
            raise InvalidTransition(f"Alert {self.pk} is {self.status}; only open alerts can be acknowledged.")
        self.status, self.acknowledged_by, self.acknowledged_at = self.Status.ACKNOWLEDGED, by, timezone.now()
        self.save(update_fields=["status", "acknowledged_by", "acknowledged_at"])

    acknowledge.alters_data = True

    def resolve(self, by=None, resolution: str = "") -> None:
        if self.status == self.Status.RESOLVED:
            raise InvalidTransition(f"Alert {self.pk} is already resolved.")
        self.status, self.resolved_by, self.resolved_at = self.Status.RESOLVED, by, timezone.now()
        self.resolution = resolution or (f"resolved by {by}" if by else "")
        self.save(update_fields=["status", "resolved_by", "resolved_at", "resolution"])
        from .notifications import alert_resolved

        alert_resolved(self)

    resolve.alters_data = True


class NotificationChannel(models.Model):
    """Where alerts and events are sent: a mail list or a webhook (Slack-compatible), with a minimum level and the events wanted.

    Channels configured by settings (ALERT_EMAILS, ALERT_WEBHOOK_URL) work beside these rows
    without being stored, so their addresses and tokens stay in the environment.
    """

    class Kind(models.TextChoices):
        MAIL = "mail", "mail"
        WEBHOOK = "webhook", "webhook"

    class Level(models.TextChoices):
        INFO = "info", "info"
        WARNING = "warning", "warning"
        CRITICAL = "critical", "critical"

    class Event(models.TextChoices):
        ALERT_OPENED = "alert_opened", "alert opened"
        ALERT_RESOLVED = "alert_resolved", "alert resolved"
        TRAINING_FAILED = "training_failed", "training failed"
        VERSION_DEPLOYED = "version_deployed", "version activated or rolled back"

    LEVEL_RANK = {Level.INFO: 0, Level.WARNING: 1, Level.CRITICAL: 2}

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    target = models.CharField(
        max_length=2000, help_text="Mail: comma-separated addresses. Webhook: the URL (it may hold a token: it is never shown in lists or logs)."
    )
    min_level = models.CharField("minimum level", max_length=10, choices=Level.choices, default=Level.WARNING)
    on_alert_opened = models.BooleanField("alert opened", default=True)
    on_alert_resolved = models.BooleanField("alert resolved", default=True)
    on_training_failed = models.BooleanField("training failed", default=True)
    on_version_deployed = models.BooleanField("version activated or rolled back", default=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from .notifications import parse_targets

        try:
            parse_targets(self.kind, self.target)
        except ValueError as exc:
            raise ValidationError({"target": str(exc)})

    def wants(self, event: str, level: str) -> bool:
        return self.enabled and getattr(self, f"on_{event}") and self.LEVEL_RANK[level] >= self.LEVEL_RANK[self.min_level]


class NotificationDelivery(models.Model):
    """One message to one channel, with its attempts (written by the cluster; read-only in the admin)."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        SENDING = "sending", "sending"
        SENT = "sent", "sent"
        FAILED = "failed", "failed"

    channel = models.ForeignKey(NotificationChannel, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries")
    settings_channel = models.CharField(max_length=40, blank=True, help_text="e.g. ALERT_WEBHOOK_URL[0]: a channel from the settings.")
    channel_name = models.CharField(max_length=140)
    kind = models.CharField(max_length=10, choices=NotificationChannel.Kind.choices)
    destination = models.CharField(max_length=300, help_text="Where it went, without credentials or tokens.")
    event = models.CharField(max_length=20, choices=NotificationChannel.Event.choices, db_index=True)
    level = models.CharField(max_length=10, choices=NotificationChannel.Level.choices)
    subject = models.CharField(max_length=300)
    payload = models.JSONField(default=dict)
    alert = models.ForeignKey(QualityAlert, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "notification deliveries"

    def __str__(self) -> str:
        return f"{self.event} → {self.channel_name} ({self.status})"

    def claim(self) -> bool:
        """pending → sending, atomically: exactly one worker (or the --sync command) sends it."""
        claimed = NotificationDelivery.objects.filter(pk=self.pk, status=self.Status.PENDING).update(status=self.Status.SENDING)
        if claimed:
            self.status = self.Status.SENDING
        return bool(claimed)

    claim.alters_data = True

    def mark_sent(self) -> None:
        self.status, self.sent_at, self.attempts = self.Status.SENT, timezone.now(), self.attempts + 1
        self.next_attempt_at = None
        self.save(update_fields=["status", "sent_at", "attempts", "next_attempt_at"])

    mark_sent.alters_data = True

    def mark_attempt_failed(self, error: str, retry_at=None) -> None:
        """Record a failed attempt: back to pending until retry_at, or failed for good when retry_at is None."""
        self.attempts += 1
        self.last_error = error[:2000]
        self.status = self.Status.PENDING if retry_at is not None else self.Status.FAILED
        self.next_attempt_at = retry_at
        self.save(update_fields=["attempts", "last_error", "status", "next_attempt_at"])

    mark_attempt_failed.alters_data = True


def on_bundle_verification_failed(sender, version, reason: str, served: str | None, **kwargs) -> None:
    """A serving process found its model's files changed on disk: one critical alert (updated by every process that finds it)."""
    QualityAlert.record(
        cycle=None,
        level=QualityAlert.Level.CRITICAL,
        metric="model_files",
        error_code=1002,
        message=f"The files of model version {version.label} changed on disk and it is no longer served: {reason} "
        f"Now serving: {served or 'nothing'}. Re-train or roll back, and find out who changed MODEL_ROOT.",
    )
