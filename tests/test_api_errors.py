"""Every API error, whatever its status, has the body {"error": {"code", "message", "details"}}."""

import pytest
from rest_framework.test import APIClient
from rest_framework.throttling import UserRateThrottle


def assert_error_body(response, status, code=None):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


@pytest.mark.django_db
def test_validation_error_is_400_with_field_details(api):
    error = assert_error_body(api.post("/api/v1/auth/token/", {}, format="json"), 400, 400)
    assert "username" in error["details"] and "password" in error["details"]


@pytest.mark.django_db
def test_missing_credentials_is_401(api):
    assert_error_body(api.get("/api/v1/models/"), 401, 401)


def test_planner_may_not_roll_back_403(planner_api):
    error = assert_error_body(planner_api.post("/api/v1/models/rollback/", {}, format="json"), 403, 403)
    assert "registry.activate_modelversion" in error["message"]


def test_unknown_version_is_404(planner_api):
    assert_error_body(planner_api.get("/api/v1/models/no-such-version/"), 404, 404)


@pytest.mark.django_db
def test_unknown_api_path_is_json_404(api):
    assert_error_body(api.get("/api/v1/no/such/endpoint/"), 404, 404)


def test_wrong_method_is_405(planner_api):
    assert_error_body(planner_api.put("/api/v1/models/", {}, format="json"), 405, 405)


def test_too_many_requests_is_429(planner_api, monkeypatch):
    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "2/minute"})
    from django.core.cache import cache

    cache.clear()
    for _ in range(2):
        assert planner_api.get("/api/v1/models/").status_code == 200
    error = assert_error_body(planner_api.get("/api/v1/models/"), 429, 429)
    assert error["details"]["retry_after_seconds"] > 0
    cache.clear()


@pytest.mark.urls("tests.urls_failing")
@pytest.mark.django_db
def test_unhandled_exception_is_json_500():
    client = APIClient(raise_request_exception=False)
    assert_error_body(client.get("/api/v1/crash/"), 500, 500)


@pytest.mark.django_db
def test_jwt_token_pair_authenticates_an_integration(planner, api):
    tokens = api.post("/api/v1/auth/token/", {"username": planner.username, "password": "pw-" + planner.username}, format="json").json()
    assert set(tokens) == {"access", "refresh"}
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert api.get("/api/v1/models/").status_code == 200
    refreshed = api.post("/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json")
    assert refreshed.status_code == 200 and "access" in refreshed.json()


@pytest.mark.django_db
def test_bad_jwt_is_401_with_error_body(api):
    api.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert_error_body(api.get("/api/v1/models/"), 401, 401)


@pytest.mark.django_db
def test_openapi_schema_and_swagger_ui_are_served(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200 and b"/api/v1/models/" in schema.content
    assert client.get("/api/docs/").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [True, False])
def test_unknown_api_path_is_a_json_404_even_with_debug_on(client, settings, debug):
    settings.DEBUG = debug
    response = client.get("/api/v1/no-such-endpoint/")
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json()["error"] == {"code": 404, "message": "No API endpoint at /api/v1/no-such-endpoint/.", "details": {"path": "/api/v1/no-such-endpoint/"}}


@pytest.mark.django_db
def test_api_path_missing_its_slash_names_the_right_one(client):
    body = client.get("/api/v1/models").json()
    assert body["error"]["code"] == 404 and body["error"]["details"]["did_you_mean"] == "/api/v1/models/"


@pytest.mark.django_db
def test_schema_documents_the_error_responses_of_every_operation_and_nullable_users(client):
    schema = client.get("/api/schema/?format=json").json()
    operations = [(path, method, op) for path, ops in schema["paths"].items() for method, op in ops.items()]
    assert len(operations) >= 20
    for path, method, op in operations:
        for code in ("400", "401", "429"):
            assert code in op["responses"], (path, method, code)
        error = op["responses"]["401"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/RoutingMLError"} or "$ref" in error, (path, method)
        if "{" in path:
            assert "404" in op["responses"], (path, method)
    assert set(schema["components"]["schemas"]["RoutingMLError"]["properties"]["error"]["required"]) == {"code", "message", "details"}
    components = schema["components"]["schemas"]
    for component, field in (("QualityAlert", "acknowledged_by"), ("QualityAlert", "resolved_by"), ("TrainingJob", "requested_by"), ("DeploymentEvent", "performed_by")):
        assert components[component]["properties"][field].get("nullable") is True, (component, field)
