"""/metrics: the quality gauges come from the database, and survive Prometheus' multiprocess mode (several gunicorn workers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from quality.models import QualityCycle

ROOT = Path(__file__).resolve().parent.parent


def scrape(client) -> dict[tuple[str, tuple], float]:
    """GET /metrics as Prometheus would and return {(sample name, sorted labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def finished_cycle(mae: float, process_match: float, items: int) -> QualityCycle:
    """A finished cycle written straight to the table, as another process (the cluster) would leave it."""
    now = timezone.now()
    return QualityCycle.objects.create(
        status=QualityCycle.Status.SUCCEEDED, sample_strategy="stratified", sample_size=500, items_sampled=items, items_evaluated=items,
        metrics={"mae": mae, "process_match": process_match}, started_at=now, finished_at=now, duration_seconds=1.0,
    )


def count_predictions_in_another_process(env: dict, ok: int, rejected: int) -> None:
    """A separate process (like a second gunicorn worker) counting predictions with the app's own counters."""
    code = (
        "from predictions import metrics\n"
        f"metrics.PREDICTIONS.labels(status='ok', channel='api').inc({ok})\n"
        f"for _ in range({rejected}): metrics.record_rejected('api')\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)


@pytest.mark.django_db
def test_metrics_report_the_latest_cycle_read_from_the_database(client, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    finished_cycle(mae=2.5, process_match=0.9, items=10)
    latest = finished_cycle(mae=3.125, process_match=0.875, items=123)
    samples = scrape(client)
    assert samples[("routing_ml_quality_mae_minutes", ())] == latest.metrics["mae"] == 3.125
    assert samples[("routing_ml_quality_process_match_percent", ())] == 87.5
    assert samples[("routing_ml_quality_items_evaluated", ())] == 123
    assert samples[("routing_ml_quality_open_alerts", (("level", "critical"),))] == 0


@pytest.mark.django_db
def test_multiprocess_metrics_sum_every_worker_and_keep_the_quality_gauges(client, monkeypatch, tmp_path):
    directory = tmp_path / "prometheus_multiproc"
    directory.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    count_predictions_in_another_process(env, ok=3, rejected=1)
    count_predictions_in_another_process(env, ok=4, rejected=1)
    assert len(list(directory.glob("counter_*.db"))) == 2  # one file per process, as with two gunicorn workers
    cycle = finished_cycle(mae=4.75, process_match=0.82, items=77)

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    samples = scrape(client)

    # Both processes' counts, not only those of the process that answered the scrape.
    assert samples[("routing_ml_predictions_total", (("channel", "api"), ("status", "ok")))] == 7
    assert samples[("routing_ml_predictions_total", (("channel", "api"), ("status", "rejected")))] == 2
    # And the database gauges that django-prometheus' own view drops in this mode.
    assert samples[("routing_ml_quality_mae_minutes", ())] == cycle.metrics["mae"] == 4.75
    assert samples[("routing_ml_quality_items_evaluated", ())] == 77
    assert samples[("routing_ml_queue_size", ())] == 0
