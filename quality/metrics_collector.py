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
