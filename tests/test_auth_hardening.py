"""Password guessing and stolen tokens: throttled token endpoints, login lockout, rotating refresh tokens, tokens that die with the password."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from routing_ml.auth import TokenAddressThrottle, TokenUsernameThrottle
from tests.test_api_errors import assert_error_body

pytestmark = pytest.mark.postgres

TOKEN = "/api/v1/auth/token/"
REFRESH = "/api/v1/auth/token/refresh/"


def _tokens(client, user) -> dict:
    response = client.post(TOKEN, {"username": user.username, "password": "pw-" + user.username}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def tight_rates(monkeypatch):
    rates = {**TokenAddressThrottle.THROTTLE_RATES, "auth_address": "6/minute", "auth_username": "4/minute"}
    monkeypatch.setattr(TokenAddressThrottle, "THROTTLE_RATES", rates)
    monkeypatch.setattr(TokenUsernameThrottle, "THROTTLE_RATES", rates)


def test_default_rates_throttle_a_burst_of_guesses():
    assert TokenUsernameThrottle.THROTTLE_RATES["auth_username"] == "10/minute"
    assert TokenAddressThrottle.THROTTLE_RATES["auth_address"] == "30/minute"


def test_guessing_one_username_from_many_addresses_is_throttled_per_username(planner, tight_rates):
    client = APIClient()
    for attempt in range(4):
        response = client.post(TOKEN, {"username": planner.username, "password": f"guess{attempt}"}, format="json", REMOTE_ADDR=f"10.0.0.{attempt + 1}")
        assert response.status_code == 401
    response = client.post(TOKEN, {"username": planner.username.upper(), "password": "pw-" + planner.username}, format="json", REMOTE_ADDR="10.0.0.99")
    error = assert_error_body(response, 429, 429)
    assert int(response["Retry-After"]) > 0 and error["details"]["retry_after_seconds"] > 0
    # Another account from a fresh address is not affected.
    other = client.post(TOKEN, {"username": "someone-else", "password": "x"}, format="json", REMOTE_ADDR="10.0.1.1")
    assert other.status_code == 401


def test_one_address_trying_many_usernames_is_throttled_per_address(db, tight_rates):
    client = APIClient()
    for attempt in range(6):
        assert client.post(TOKEN, {"username": f"user{attempt}", "password": "x"}, format="json", REMOTE_ADDR="10.9.9.9").status_code == 401
    response = client.post(TOKEN, {"username": "user-new", "password": "x"}, format="json", REMOTE_ADDR="10.9.9.9")
    assert_error_body(response, 429, 429)
    assert int(response["Retry-After"]) > 0
    # A forged X-Forwarded-For does not give a fresh address (no trusted proxy configured).
    forged = client.post(TOKEN, {"username": "user-x", "password": "x"}, format="json", REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR="1.2.3.4")
    assert forged.status_code == 429


def test_refresh_is_throttled_per_address(db, tight_rates):
    client = APIClient()
    for _ in range(6):
        assert client.post(REFRESH, {"refresh": "not-a-token"}, format="json", REMOTE_ADDR="10.8.8.8").status_code == 401
    assert_error_body(client.post(REFRESH, {"refresh": "not-a-token"}, format="json", REMOTE_ADDR="10.8.8.8"), 429, 429)


def test_refresh_tokens_rotate_and_a_used_one_is_refused(planner):
    client = APIClient()
    tokens = _tokens(client, planner)
    rotated = client.post(REFRESH, {"refresh": tokens["refresh"]}, format="json")
    assert rotated.status_code == 200 and set(rotated.json()) == {"access", "refresh"}
    assert rotated.json()["refresh"] != tokens["refresh"]
    reused = client.post(REFRESH, {"refresh": tokens["refresh"]}, format="json")
    assert_error_body(reused, 401, 401)
    assert client.post(REFRESH, {"refresh": rotated.json()["refresh"]}, format="json").status_code == 200


def test_a_password_change_ends_every_token_of_the_user(planner):
    client = APIClient()
    tokens = _tokens(client, planner)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert client.get("/api/v1/models/").status_code == 200
    planner.set_password("a-new-long-password-42")
    planner.save()
    assert_error_body(client.get("/api/v1/models/"), 401, 401)
    client.credentials()
    assert_error_body(client.post(REFRESH, {"refresh": tokens["refresh"]}, format="json"), 401, 401)
    fresh = client.post(TOKEN, {"username": planner.username, "password": "a-new-long-password-42"}, format="json").json()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {fresh['access']}")
    assert client.get("/api/v1/models/").status_code == 200


@pytest.mark.parametrize("how", ["deactivated", "deleted"])
def test_a_deactivated_or_deleted_user_has_no_working_token(planner, how):
    client = APIClient()
    tokens = _tokens(client, planner)
    if how == "deactivated":
        planner.is_active = False
        planner.save()
    else:
        planner.delete()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert_error_body(client.get("/api/v1/models/"), 401, 401)
    client.credentials()
    assert_error_body(client.post(REFRESH, {"refresh": tokens["refresh"]}, format="json"), 401, 401)


@pytest.mark.parametrize("login_url", ["/accounts/login/", "/admin/login/"])
def test_login_forms_lock_out_after_repeated_failures_until_axes_reset(client, ml_admin, login_url, settings):
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        response = client.post(login_url, {"username": ml_admin.username, "password": f"wrong{attempt}"})
        assert response.status_code in (200, 429)
    locked = client.post(login_url, {"username": ml_admin.username, "password": "pw-" + ml_admin.username})
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session

    call_command("axes_reset", stdout=io.StringIO())
    unlocked = client.post(login_url, {"username": ml_admin.username, "password": "pw-" + ml_admin.username})
    assert unlocked.status_code == 302 and client.session["_auth_user_id"] == str(ml_admin.pk)


def test_the_token_endpoint_shares_the_lockout_with_a_429(planner, settings):
    client = APIClient()
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        client.post(TOKEN, {"username": planner.username, "password": f"wrong{attempt}"}, format="json")
    response = client.post(TOKEN, {"username": planner.username, "password": "pw-" + planner.username}, format="json")
    error = assert_error_body(response, 429, 429)
    assert "locked" in error["message"] and int(response["Retry-After"]) > 0


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/login/", "/api/v1/", "/health", "/api/docs/", "/admin/login/"])
def test_every_response_carries_the_security_policies(client, path):
    response = client.get(path)
    assert "default-src 'self'" in response["Content-Security-Policy"] and "object-src 'none'" in response["Content-Security-Policy"]
    assert "camera=()" in response["Permissions-Policy"] and "geolocation=()" in response["Permissions-Policy"]
