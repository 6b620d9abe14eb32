"""Disk space (2001), memory (2002) and an unloadable model (1005): checked by the housekeeping, raised as alerts, shown in /health."""

from __future__ import annotations

from pathlib import Path

import pytest

from quality.models import QualityAlert
from quality.tasks import housekeeping
from tests.fixtures_model import *  # noqa: F401,F403

# Database-facing: run again on PostgreSQL by `make test`.
pytestmark = pytest.mark.postgres


def system_alerts(metric_prefix: str):
    return QualityAlert.objects.filter(cycle=None, metric__startswith=metric_prefix)


def test_low_disk_space_raises_one_2001_alert_shows_in_health_and_resolves(db, settings, client):
    settings.DISK_FREE_MIN_PERCENT = 100.0  # no disk is that empty
    assert housekeeping()["conditions"]["disk_space:MODEL_ROOT"] is False
    housekeeping()  # still low: the open alert is updated, not repeated
    alerts = system_alerts("disk_space:")
    assert sorted(alerts.values_list("metric", flat=True)) == ["disk_space:BACKUP_ROOT", "disk_space:MODEL_ROOT"]
    alert = alerts.get(metric="disk_space:MODEL_ROOT")
    assert (alert.error_code, alert.status, alert.threshold) == (2001, "open", 100.0)
    assert 0 < alert.value < 100 and str(settings.MODEL_ROOT) in alert.message

    resources = client.get("/health").json()["checks"]["resources"]
    assert resources["status"] == "degraded" and resources["code"] == 2001
    assert resources["disk"]["MODEL_ROOT"]["status"] == "degraded" and resources["disk"]["MODEL_ROOT"]["free_mb"] > 0

    settings.DISK_FREE_MIN_PERCENT, settings.DISK_FREE_MIN_MB = 0.0, 0.0
    housekeeping()
    assert set(alerts.values_list("status", flat=True)) == {"resolved"}
    assert client.get("/health").json()["checks"]["resources"]["status"] == "healthy"


def test_memory_pressure_raises_a_2002_alert(db, settings, client):
    settings.MEMORY_HIGH_PERCENT = 0.0
    housekeeping()
    alert = system_alerts("memory").get()
    assert alert.error_code == 2002 and alert.status == "open" and alert.value > 0
    resources = client.get("/health").json()["checks"]["resources"]
    assert resources["memory"]["status"] == "degraded" and "[2002]" in resources["message"]


def test_an_active_model_that_no_longer_loads_raises_a_1005_alert_and_degrades_health(trained_model, client):
    assert housekeeping()["conditions"]["model_load"] is True
    victim = next(p for p in sorted(trained_model.artifact_dir.iterdir()) if p.suffix == ".npy")
    original = victim.read_bytes()
    victim.write_bytes(original[:-8])  # truncated on disk: the bundle no longer matches its manifest

    assert housekeeping()["conditions"]["model_load"] is False
    alert = system_alerts("model_load").get()
    assert (alert.level, alert.error_code, alert.status) == ("critical", 1005, "open")
    assert victim.name in alert.message
    # This process notices too: with no other version to fall back to it can serve nothing (issue 13: 503, 1002, the reason).
    response = client.get("/health")
    model = response.json()["checks"]["model"]
    assert response.status_code == 503 and model["status"] == "unhealthy" and model["code"] == 1002 and victim.name in model["message"]

    Path(victim).write_bytes(original)
    housekeeping()
    assert system_alerts("model_load").get().status == "resolved"
    assert client.get("/health").json()["checks"]["model"]["status"] == "healthy"
