"""Quality under abuse: bounded settings, one cycle at a time, alerts updated not repeated, reports by URL, reaped cycles stay reaped."""

from __future__ import annotations

import io
import json
import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from quality.cycle import run_cycle
from quality.models import CycleInProgress, CycleReaped, QualityAlert, QualityCycle, QualitySettings
from tests.fixtures_model import *  # noqa: F403
from tests.test_admin import _settings_form
from tests.test_api_errors import assert_error_body

pytestmark = pytest.mark.postgres


@pytest.fixture
def trained(db):
    call_command("seed_demo_erp", items=600, seed=41, stdout=io.StringIO())
    call_command("train", sync=True, label="h1", candidates="baseline", activate=True, stdout=io.StringIO(), stderr=io.StringIO())


# ------------------------------------------------------------------ settings bounds


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"cooldown_hours": 4.99e307}, "cooldown_hours"),
        ({"cooldown_hours": 24 * 367}, "cooldown_hours"),
        ({"mae_critical": 1e9}, "mae_critical"),
        ({"cv_max": 1000}, "cv_max"),
        ({"sample_count_min": 1e12}, "sample_count_min"),
        ({"drift_psi_threshold": 1e6}, "drift_psi_threshold"),
        ({"min_work_orders": 100000}, "min_work_orders"),
        ({"sample_seed": 2**40}, "sample_seed"),
        ({"sample_seed": -1}, "sample_seed"),
        ({"queue_capacity": 500}, "queue_capacity"),
        ({"mae_warning": 9, "mae_critical": 8}, "mae_warning"),
        ({"process_match_warning": 0.7, "process_match_critical": 0.8}, "process_match_warning"),
        ({"schedule_enabled": True, "schedule_cron": ""}, "schedule_cron"),
    ],
)
def test_settings_api_refuses_values_outside_their_bounds_and_saves_nothing(admin_api, changes, field):
    before = QualitySettings.current().cooldown_hours
    error = assert_error_body(admin_api.patch("/api/v1/quality/settings/", changes, format="json"), 400, 400)
    assert field in error["details"]
    assert QualitySettings.current().cooldown_hours == before


def test_settings_admin_form_refuses_a_huge_cooldown_with_a_message(ml_admin_client):
    url = reverse("admin:quality_qualitysettings_change", args=[QualitySettings.current().pk])
    response = ml_admin_client.post(url, _settings_form(cooldown_hours="4.99e307", sample_seed=-5))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["cooldown_hours"] == ["Ensure this value is less than or equal to 8784."]
    assert errors["sample_seed"] == ["Ensure this value is greater than or equal to 0."]
    assert QualitySettings.current().cooldown_hours == 24


# ------------------------------------------------------------------ one cycle at a time


def test_second_cycle_request_is_a_409_naming_the_queued_one_on_every_entry_point(admin_api, ml_admin, ml_admin_client, db):
    first = admin_api.post("/api/v1/quality/cycles/", {}, format="json")
    assert first.status_code == 202
    queued = QualityCycle.objects.get(pk=first.json()["cycle"])

    for body in ({}, {"sync": True}):
        error = assert_error_body(admin_api.post("/api/v1/quality/cycles/", body, format="json"), 409)
        assert error["message"].startswith(f"Quality cycle {queued.pk} is already queued")
        assert error["details"] == {"cycle": queued.pk, "status": "queued", "started_at": queued.started_at.isoformat()}

    with pytest.raises(CommandError, match=f"Quality cycle {queued.pk} is already queued"):
        call_command("run_quality_cycle", stdout=io.StringIO())
    with pytest.raises(CommandError, match=f"Quality cycle {queued.pk} is already queued"):
        call_command("run_quality_cycle", sync=True, stdout=io.StringIO())

    response = ml_admin_client.post(reverse("admin:quality_qualitycycle_run"), follow=True)
    assert f"Quality cycle {queued.pk} is already queued" in response.content.decode()

    from quality.tasks import scheduled_cycle

    assert scheduled_cycle()["cycle"] == queued.pk
    assert list(QualityCycle.objects.values_list("pk", flat=True)) == [queued.pk]


def test_a_running_cycle_blocks_the_next_and_a_finished_one_does_not(db):
    cycle = QualityCycle.request(sample_size=20)
    cycle.start()
    with pytest.raises(CycleInProgress, match=f"Quality cycle {cycle.pk} is already running"):
        QualityCycle.request()
    cycle.fail("done")
    assert QualityCycle.request().status == "queued"


# ------------------------------------------------------------------ alerts


def test_an_open_alert_is_updated_by_each_cycle_that_finds_it_not_repeated(trained):
    cfg = QualitySettings.current()
    cfg.sample_count_min, cfg.auto_retrain = 9999, False
    cfg.save()
    first = run_cycle(sample_size=30)
    alert = QualityAlert.objects.get(metric="sample_count")
    first_seen = alert.last_seen_at
    for _ in range(3):
        later = run_cycle(sample_size=40, strategy="random")

    assert QualityAlert.objects.filter(metric="sample_count").count() == 1
    alert.refresh_from_db()
    assert (alert.status, alert.count, alert.cycle, alert.last_cycle) == ("open", 4, first, later)
    assert alert.value == pytest.approx(later.metrics["sample_count"]) and alert.last_seen_at > first_seen
    assert "warning:sample_count" in later.summary()["alerts"] and "warning:sample_count" in first.summary()["alerts"]


def test_repeated_failures_update_one_critical_alert(db):
    for _ in range(3):
        cycle = run_cycle()  # no active model: each fails
        assert cycle.status == "failed"
    alert = QualityAlert.objects.get()
    assert (alert.metric, alert.level, alert.count, alert.last_cycle) == ("items_evaluated", "critical", 3, cycle)


# ------------------------------------------------------------------ reports


def test_cycle_report_is_served_by_an_authenticated_url_and_no_server_path_is_shown(trained, planner, planner_api, client, outsider):
    cycle = run_cycle(sample_size=20)
    body = planner_api.get(f"/api/v1/quality/cycles/{cycle.pk}/").content.decode()
    assert str(django_settings.QUALITY_REPORT_ROOT) not in body and "report_path" not in body
    url = json.loads(body)["report_url"]
    assert url == f"http://testserver/quality/cycles/{cycle.pk}/report.json"

    assert client.get(url).status_code == 302  # anonymous: to the login page
    client.force_login(outsider)
    assert client.get(url).status_code == 403
    client.force_login(planner)
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    report = json.loads(b"".join(response.streaming_content))
    assert report["cycle"] == cycle.pk and len(report["sample"]["items"]) == 20
    assert client.get(f"/quality/cycles/{cycle.pk + 100}/report.json").status_code == 404


# ------------------------------------------------------------------ reaping and heartbeat


def test_a_reaped_cycle_is_never_overwritten_by_its_late_finish(trained, monkeypatch):
    """The reaper fails the cycle while it evaluates (as if its heartbeat had stopped); the late finish changes nothing."""
    from quality import cycle as cycle_module

    real_evaluate = cycle_module.evaluate

    def evaluate_while_reaped(*args, **kwargs):
        assert QualityCycle.reap_stale(older_than=timedelta(0))
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(cycle_module, "evaluate", evaluate_while_reaped)
    cycle = run_cycle(sample_size=20)
    row = QualityCycle.objects.get(pk=cycle.pk)
    assert row.status == "failed" and row.error.startswith("Reaped: no heartbeat")
    assert row.metrics == {} and row.items_evaluated == 0
    assert list(QualityAlert.objects.values_list("metric", flat=True)) == ["cycle"]


def test_succeed_after_the_reaper_raises_and_keeps_the_failure(db):
    cycle = QualityCycle.request()
    cycle.start()
    QualityCycle.objects.filter(pk=cycle.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert QualityCycle.reap_stale() == [cycle.pk]
    with pytest.raises(CycleReaped):
        cycle.succeed(metrics={"mae": 1.0})
    assert cycle.fail("late") is False
    row = QualityCycle.objects.get(pk=cycle.pk)
    assert row.status == "failed" and row.error.startswith("Reaped") and row.metrics == {}


@pytest.mark.django_db(transaction=True)
def test_a_running_cycle_beats_from_its_own_thread_until_it_ends(settings):
    settings.QUALITY_CYCLE_HEARTBEAT_INTERVAL = 0.1
    cycle = QualityCycle.request()
    cycle.start()
    started = QualityCycle.objects.get(pk=cycle.pk).heartbeat_at
    time.sleep(0.6)
    beat = QualityCycle.objects.get(pk=cycle.pk).heartbeat_at
    assert beat > started
    cycle.fail("stopped")
    time.sleep(0.3)
    assert not [t for t in threading.enumerate() if t.name == f"quality-cycle-{cycle.pk}-heartbeat"]
    assert QualityCycle.reap_stale(older_than=timedelta(0)) == []  # failed, not running: nothing to reap
