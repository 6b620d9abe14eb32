"""Prometheus figures read from the database at scrape time, so every process serving /metrics agrees.

`/metrics` is served by `exposition()`. With PROMETHEUS_MULTIPROC_DIR set (several gunicorn
workers and the qcluster, see scripts/serve.sh) each process writes its counters and histograms
to files there; a scrape then sums them with prometheus_client's MultiProcessCollector, since
the process that happens to answer knows only its own. Our database gauges are added to that
registry (django-prometheus' own view would drop them in this mode).
"""

from __future__ import annotations

import logging
import os

from django.db.models import Count
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)


PLANNER_GAUGES = {
    "routing_ml_planner_agreement_process_match": "Mean process match (0-1) of served predictions with the routing planners decided or entered in the ERP.",
    "routing_ml_planner_agreement_exact_match": "Share (0-1) of served predictions identical to the routing finally decided.",
    "routing_ml_planner_agreement_items": "Items whose served prediction has a final routing to compare with.",
}


class QualityCollector:
    """The latest cycle's quality, the training jobs by status, the queue."""

    def describe(self):
        # Registration asks for names; answering here keeps it from querying the database at import.
        return [
            GaugeMetricFamily(name, "")
            for name in (
                "routing_ml_quality_mae_minutes", "routing_ml_quality_process_match_percent", "routing_ml_quality_items_evaluated",
                "routing_ml_training_jobs_total", "routing_ml_training_duration_seconds", "routing_ml_queue_size", "routing_ml_quality_open_alerts",
                *OPERATIONS_GAUGES,
                *PLANNER_GAUGES,
            )
        ]

    def collect(self):
        from training.models import TrainingJob

        from .models import QualityAlert, QualityCycle

        try:
            latest = QualityCycle.objects.latest_finished()
            jobs = dict(TrainingJob.objects.values_list("status").annotate(n=Count("pk")))
            in_flight = TrainingJob.objects.in_flight().count()
            last_done = TrainingJob.objects.filter(status=TrainingJob.Status.SUCCEEDED).exclude(started_at=None).order_by("-finished_at").first()
            open_alerts = dict(QualityAlert.objects.open().values_list("level").annotate(n=Count("pk")))
        except Exception:  # a scrape must never fail because the database is briefly unavailable
            logger.warning("quality metrics unavailable", exc_info=True)
            return
        mae = GaugeMetricFamily("routing_ml_quality_mae_minutes", "MAE of run minutes per unit in the latest quality cycle.")
        match = GaugeMetricFamily("routing_ml_quality_process_match_percent", "Process match (%) in the latest quality cycle.")
        evaluated = GaugeMetricFamily("routing_ml_quality_items_evaluated", "Items evaluated by the latest quality cycle.")
        if latest is not None:
            if latest.metrics.get("mae") is not None:
                mae.add_metric([], float(latest.metrics["mae"]))
            if latest.metrics.get("process_match") is not None:
                match.add_metric([], 100.0 * float(latest.metrics["process_match"]))
            evaluated.add_metric([], float(latest.items_evaluated))
        yield mae
        yield match
        yield evaluated
        total = GaugeMetricFamily("routing_ml_training_jobs_total", "Training jobs by status.", labels=["status"])
        for status in TrainingJob.Status.values:
            total.add_metric([status], float(jobs.get(status, 0)))
        yield total
        duration = GaugeMetricFamily("routing_ml_training_duration_seconds", "Duration of the latest successful training job.")
        if last_done is not None and last_done.duration_seconds is not None:
            duration.add_metric([], float(last_done.duration_seconds))
        yield duration
        queue = GaugeMetricFamily("routing_ml_queue_size", "Training jobs queued or running.")
        queue.add_metric([], float(in_flight))
        yield queue
        alerts = GaugeMetricFamily("routing_ml_quality_open_alerts", "Open or acknowledged quality alerts by level.", labels=["level"])
        for level in ("warning", "critical"):
            alerts.add_metric([level], float(open_alerts.get(level, 0)))
        yield alerts
        yield from operations_gauges()
        yield from self._planner_agreement()

    def _planner_agreement(self):
        """Planner agreement per model version (cached a minute: the scrape must stay cheap)."""
        from predictions.agreement import cached_planner_agreement

        try:
            report = cached_planner_agreement()
        except Exception:
            logger.warning("planner agreement unavailable", exc_info=True)
            return
        families = {name: GaugeMetricFamily(name, help_text, labels=["version"]) for name, help_text in PLANNER_GAUGES.items()}
        for label, figures in report.items():
            families["routing_ml_planner_agreement_items"].add_metric([label], float(figures["items_compared"]))
            if figures["process_match"] is not None:
                families["routing_ml_planner_agreement_process_match"].add_metric([label], float(figures["process_match"]))
                families["routing_ml_planner_agreement_exact_match"].add_metric([label], float(figures["exact_match"]))
        yield from families.values()


OPERATIONS_GAUGES = (
    "routing_ml_quality_threshold", "routing_ml_quality_last_cycle_timestamp_seconds", "routing_ml_model_active", "routing_ml_model_loadable",
    "routing_ml_task_queue_size", "routing_ml_worker_last_beat_timestamp_seconds", "routing_ml_backup_last_timestamp_seconds",
    "routing_ml_disk_free_percent", "routing_ml_memory_used_percent",
)


def operations_gauges():
    """What the Prometheus alert rules (deploy/prometheus/alerts.yml) need beyond the quality figures; each part fails alone."""
    from django_q.brokers import get_broker
    from django_q.models import Success

    from registry.models import ModelVersion
    from routing_ml.backup import latest_backup
    from routing_ml.resources import check_disk, check_memory

    from .models import QualityAlert, QualityCycle, QualitySettings

    def gauge(name, documentation, labels=()):
        return GaugeMetricFamily(name, documentation, labels=list(labels))

    try:
        cfg = QualitySettings.current()
        thresholds = gauge("routing_ml_quality_threshold", "The quality thresholds of Quality settings, in the units of the gauges they judge.",
                           ["metric", "level"])
        thresholds.add_metric(["mae_minutes", "warning"], cfg.mae_warning)
        thresholds.add_metric(["mae_minutes", "critical"], cfg.mae_critical)
        thresholds.add_metric(["process_match_percent", "warning"], 100.0 * cfg.process_match_warning)
        thresholds.add_metric(["process_match_percent", "critical"], 100.0 * cfg.process_match_critical)
        yield thresholds
        last_cycle = gauge("routing_ml_quality_last_cycle_timestamp_seconds", "When the latest successful quality cycle finished (Unix time).")
        latest = QualityCycle.objects.latest_finished()
        if latest is not None and latest.finished_at is not None:
            last_cycle.add_metric([], latest.finished_at.timestamp())
        yield last_cycle
        active = gauge("routing_ml_model_active", "1 when a model version is active.")
        active.add_metric([], 1.0 if ModelVersion.objects.active().exists() else 0.0)
        yield active
        loadable = gauge("routing_ml_model_loadable", "0 while the housekeeping finds the active model's files altered or unloadable (alert 1005).")
        loadable.add_metric([], 0.0 if QualityAlert.objects.open().filter(cycle=None, metric="model_load").exists() else 1.0)
        yield loadable
        beat = gauge("routing_ml_worker_last_beat_timestamp_seconds", "When a cluster worker last ran the housekeeping (Unix time).")
        last = Success.objects.filter(func="training.tasks.housekeeping").order_by("-stopped").values_list("stopped", flat=True).first()
        if last is not None:
            beat.add_metric([], last.timestamp())
        yield beat
    except Exception:
        logger.warning("operations metrics unavailable", exc_info=True)
    try:
        from django.conf import settings

        queue = gauge("routing_ml_task_queue_size", "Tasks waiting in the django-q2 broker for a worker, per queue (cluster).", ["queue"])
        queue.add_metric(["default"], float(get_broker().queue_size() or 0))
        if settings.TRAINING_CLUSTER:
            queue.add_metric([settings.TRAINING_CLUSTER], float(get_broker(settings.TRAINING_CLUSTER).queue_size() or 0))
        yield queue
    except Exception:
        logger.warning("task queue size unavailable", exc_info=True)
    try:
        backup = gauge("routing_ml_backup_last_timestamp_seconds", "When the newest complete backup under BACKUP_ROOT was made (Unix time).")
        found = latest_backup()
        if found is not None:
            backup.add_metric([], found[1].timestamp())
        yield backup
        disk = gauge("routing_ml_disk_free_percent", "Free space of the file system holding MODEL_ROOT / BACKUP_ROOT.", ["root"])
        for condition in check_disk():
            disk.add_metric([condition.metric.split(":", 1)[1]], condition.details["free_percent"])
        yield disk
        memory = gauge("routing_ml_memory_used_percent", "Memory in use on the machine answering the scrape.")
        memory.add_metric([], check_memory().value)
        yield memory
    except Exception:
        logger.warning("resource metrics unavailable", exc_info=True)


_collector = QualityCollector()
try:
    REGISTRY.register(_collector)
except ValueError:  # already registered (autoreload)
    pass


def multiprocess_dir() -> str | None:
    """The directory of prometheus_client's multiprocess mode, when this process runs in it."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


def exposition() -> bytes:
    """The text a Prometheus scrape gets: every process's counters (multiprocess mode) or this process's registry, plus the DB gauges."""
    if multiprocess_dir() is None:
        return generate_latest(REGISTRY)  # holds the QualityCollector (registered above)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(_collector)
    return generate_latest(registry)
