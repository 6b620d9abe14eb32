"""/health reports each dependency and sums them up; /health/db checks the database alone."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Task

from erp.models import Item
from registry.models import ModelVersion
from routing_ml import health

# Database-facing: run again on PostgreSQL by `make test` (see the Makefile).
pytestmark = pytest.mark.postgres


def beat_worker(minutes_ago: float = 0):
    when = timezone.now() - timedelta(minutes=minutes_ago)
    Task.objects.create(id=f"t{minutes_ago}", name="hk", func="training.tasks.housekeeping", started=when, stopped=when, success=True)


@pytest.mark.django_db
def test_fresh_install_is_degraded_not_an_error(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert {"version", "timestamp", "checks"} <= set(body)
    assert body["checks"]["database"]["status"] == "healthy"
    assert body["checks"]["model"]["status"] == "degraded" and body["checks"]["model"]["active_version"] is None
    assert body["checks"]["erp"]["status"] == "degraded"
    assert body["checks"]["queue"]["status"] == "degraded"


@pytest.mark.django_db
def test_all_checks_green_is_healthy(client):
    call_command("seed_demo_erp", items=200, seed=3, stdout=io.StringIO())
    call_command("train", sync=True, label="v1", candidates="baseline", activate=True, stdout=io.StringIO(), stderr=io.StringIO())
    beat_worker(minutes_ago=1)
    call_command("backup", stdout=io.StringIO())
    body = client.get("/health").json()
    assert body["status"] == "healthy", body
    assert body["checks"]["model"]["active_version"] == "v1"
    assert body["checks"]["model"]["neighbour_search"] == "compiled"  # make test builds it
    assert body["checks"]["queue"]["training_jobs_in_flight"] == 0


@pytest.mark.django_db
def test_silent_worker_degrades_health(client):
    Item.objects.create(item_cd="ITEM-1")
    ModelVersion.objects.create(label="v1", status="ready", is_active=True)
    beat_worker(minutes_ago=30)
    body = client.get("/health").json()
    # (v1 has no files, so the model check is unhealthy on its own: only the queue check is looked at here.)
    assert body["checks"]["queue"]["status"] == "degraded"
    assert "qcluster" in body["checks"]["queue"]["message"]


@pytest.mark.django_db
def test_database_down_is_unhealthy_503(client, monkeypatch):
    def broken():
        raise ConnectionError("database is locked out")

    monkeypatch.setattr(health, "check_database", broken)
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["checks"]["database"]["code"] == 1001
    assert client.get("/health/db").status_code == 503


@pytest.mark.django_db
def test_erp_unreadable_is_unhealthy(client, monkeypatch):
    def broken():
        raise ConnectionError("ERP server unreachable")

    monkeypatch.setattr(health, "check_erp", broken)
    assert client.get("/health").status_code == 503


@pytest.mark.django_db
def test_health_db_alone(client):
    response = client.get("/health/db")
    assert response.status_code == 200
    assert response.json()["status"] == "healthy"


@pytest.mark.django_db
def test_prometheus_metrics_are_exposed(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b"django_http_requests" in response.content


@pytest.mark.django_db
def test_an_active_version_this_process_cannot_load_and_nothing_to_serve_is_unhealthy_with_the_reason(client, planner_api):
    Item.objects.create(item_cd="ITEM-1", part_type="SLEEVE")
    ModelVersion.objects.create(label="lost", status="ready", is_active=True, artifact_path="/nonexistent/lost")
    beat_worker(minutes_ago=1)
    response = client.get("/health")
    body = response.json()
    model = body["checks"]["model"]
    assert response.status_code == 503 and body["status"] == "unhealthy" and model["status"] == "unhealthy"
    assert model["active_version"] == "lost" and model["served_by_this_process"] is None
    assert "lost" in model["message"] and "manifest.json is missing" in model["message"]
    # Predictions say why, not "no model version is active".
    error = planner_api.post("/api/v1/predictions/", {"item_codes": ["ITEM-1"]}, format="json").json()["error"]
    assert error["code"] == 1002 and error["message"].startswith("No model can be served: Model version lost cannot be served")
    assert error["details"]["active_version"] == "lost"


# ------------------------------------------------------------------ who sees what


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/health", "/health/db"])
def test_anonymous_caller_from_elsewhere_gets_the_status_only(client, path):
    response = client.get(path, REMOTE_ADDR="10.20.30.40")
    assert response.status_code == 200
    assert set(response.json()) == {"status"}


@pytest.mark.django_db
def test_a_local_proxy_does_not_make_every_caller_local(client):
    body = client.get("/health", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9").json()
    assert set(body) == {"status"}


@pytest.mark.django_db
def test_loopback_and_signed_in_callers_get_the_details(client, planner, api):
    assert "checks" in client.get("/health", REMOTE_ADDR="127.0.0.1").json()
    assert "checks" in client.get("/health", REMOTE_ADDR="::1").json()
    client.force_login(planner)
    assert "checks" in client.get("/health", REMOTE_ADDR="10.20.30.40").json()
    tokens = api.post("/api/v1/auth/token/", {"username": planner.username, "password": "pw-" + planner.username}, format="json").json()
    body = api.get("/health", REMOTE_ADDR="10.20.30.40", HTTP_AUTHORIZATION=f"Bearer {tokens['access']}").json()
    assert "checks" in body
    assert set(api.get("/health", REMOTE_ADDR="10.20.30.40", HTTP_AUTHORIZATION="Bearer forged").json()) == {"status"}


@pytest.mark.django_db
def test_metrics_is_open_unless_restricted(client, settings):
    assert client.get("/metrics", REMOTE_ADDR="10.20.30.40").status_code == 200


@pytest.mark.django_db
def test_metrics_with_a_token_needs_it_as_a_bearer(client, settings):
    settings.METRICS_TOKEN = "s3cret-scrape-token"
    refused = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert refused.status_code == 401 and refused["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")
    assert response.status_code == 200 and b"routing_ml_queue_size" in response.content


@pytest.mark.django_db
def test_metrics_with_allowed_addresses_lets_only_those_in(client, settings):
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8", "192.168.5.7"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.168.5.7").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.168.5.8").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
