"""`POST /api/v1/predictions/`: the HTTP contract integrations rely on."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from erp.models import Item, RoutingOperation
from tests.fixtures_model import *  # noqa: F403
from tests.fixtures_model import _trained_bundle, register_bundle

# Database-facing: run again on PostgreSQL by `make test` (see the Makefile).
pytestmark = pytest.mark.postgres

URL = "/api/v1/predictions/"


def _codes(n: int) -> list[str]:
    return list(
        Item.objects.filter(item_cd__in=RoutingOperation.objects.values("item_cd"))
        .order_by("item_cd")
        .values_list("item_cd", flat=True)[:n]
    )


def test_planner_gets_routings_for_item_codes(trained_model, planner_api):
    codes = _codes(3)
    response = planner_api.post(URL, {"item_codes": codes, "top_k": 10}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == trained_model.label
    assert (body["count"], body["ok"], body["errors"]) == (3, 3, 0)
    assert [r["item_cd"] for r in body["results"]] == codes
    first = body["results"][0]
    assert first["status"] == "ok" and first["model_version"] == trained_model.label
    assert len(first["similar_items"]) == 10
    assert set(first["routing"]) == {"signature", "confidence", "operations"}
    assert set(first["routing"]["operations"][0]) >= {
        "proc_seq", "job_cd", "job_nm", "res_cd", "inside_flag", "setup_minutes", "run_minutes_per_unit", "time_source",
        "setup_source", "run_p10", "run_p90", "setup_p10", "setup_p90",
    }  # fmt: skip
    assert first["existing_routing"]["signature"] == list(
        RoutingOperation.objects.filter(item_cd=codes[0]).current().values_list("job_cd", flat=True)
    )
    assert {"item_cd", "similarity", "signature", "attributes"} <= set(first["similar_items"][0])


def test_include_context_false_returns_only_the_routings(trained_model, planner_api):
    codes = _codes(2)
    full = planner_api.post(URL, {"item_codes": codes}, format="json").json()["results"]
    lean = planner_api.post(URL, {"item_codes": codes, "include_context": False}, format="json").json()["results"]

    assert [r["routing"] for r in lean] == [r["routing"] for r in full]
    assert all(r["existing_routing"] is None for r in lean)
    assert all(n["attributes"] == {} for r in lean for n in r["similar_items"])
    assert all(n["attributes"]["PART_TYPE"] for r in full for n in r["similar_items"])


def test_new_item_attributes_are_predicted(trained_model, planner_api):
    response = planner_api.post(
        URL, {"items": [{"PART_TYPE": "SEAT", "ITEM_MATERIAL": "SIC", "OUTDIAMETER": 70, "INDIAMETER": None}]}, format="json"
    )
    assert response.status_code == 200
    result = response.json()["results"][0]
    assert result["status"] == "ok" and result["item_cd"] is None and result["source"] == "attributes"
    assert result["existing_routing"] is None
    assert result["routing"]["signature"]


def test_unknown_code_is_an_error_for_that_item_only(trained_model, planner_api):
    good = _codes(1)[0]
    response = planner_api.post(URL, {"item_codes": [good, "NO-SUCH-ITEM"]}, format="json")

    assert response.status_code == 200
    ok, missing = response.json()["results"]
    assert ok["status"] == "ok"
    assert missing == {
        "item_cd": "NO-SUCH-ITEM",
        "status": "error",
        "model_version": trained_model.label,
        "source": "item_master",
        "attributes": {},
        "error": {"code": 1002, "message": "item NO-SUCH-ITEM not found in the item master", "details": {"item_cd": "NO-SUCH-ITEM"}},
    }


def test_blank_codes_are_dropped_and_an_overlong_code_is_an_error_for_that_item_only(trained_model, planner_api):
    good = _codes(1)[0]
    overlong = "X" * 60  # longer than any ITEM_CD of the item master (50 characters)
    response = planner_api.post(URL, {"item_codes": ["", good, None, "   ", overlong]}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert (body["count"], body["ok"], body["errors"]) == (2, 1, 1)
    assert [r["item_cd"] for r in body["results"]] == [good, overlong]
    assert body["results"][0]["status"] == "ok" and body["results"][0]["routing"]["signature"]
    assert body["results"][1]["status"] == "error"
    assert body["results"][1]["error"] == {
        "code": 1002,
        "message": f"item {overlong} not found in the item master",
        "details": {"item_cd": overlong},
    }


def test_model_failure_on_one_item_fails_that_item_only(trained_model, planner_api, monkeypatch):
    from training.engine.model import RoutingModel

    codes = _codes(3)
    culprit = codes[1]
    original = RoutingModel.predict
    frame_sizes = []

    def predict_failing_on_culprit(self, items, *args, **kwargs):
        frame_sizes.append(len(items["ITEM_CD"]))  # a frame or, for a few codes, {"ITEM_CD": [codes]}
        if culprit in set(items["ITEM_CD"]):
            raise FloatingPointError("simulated failure")
        return original(self, items, *args, **kwargs)

    monkeypatch.setattr(RoutingModel, "predict", predict_failing_on_culprit)
    response = planner_api.post(URL, {"item_codes": codes}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert [r["status"] for r in body["results"]] == ["ok", "error", "ok"]
    assert (body["ok"], body["errors"]) == (2, 1)
    failed = body["results"][1]
    assert failed["item_cd"] == culprit
    assert failed["error"] == {
        "code": 500,
        "message": "the model could not predict this item: FloatingPointError: simulated failure",
        "details": None,
    }
    for result in (body["results"][0], body["results"][2]):
        assert result["routing"]["operations"] and len(result["similar_items"]) > 0
    # The whole batch was tried once, then each item on its own.
    assert frame_sizes == [3, 1, 1, 1]


def test_a_few_codes_reach_the_engine_without_a_frame_and_get_the_same_answer(trained_model, monkeypatch):
    from predictions import service
    from training.engine.model import RoutingModel

    codes = _codes(3)
    inputs = []
    original = RoutingModel.predict

    def recording(self, items, *args, **kwargs):
        inputs.append(type(items).__name__)
        return original(self, items, *args, **kwargs)

    monkeypatch.setattr(RoutingModel, "predict", recording)
    small = service.predict_items(item_codes=codes, log=False).as_dict()
    monkeypatch.setattr(service, "SMALL_FRAME", 0)  # every request as a DataFrame, as before
    framed = service.predict_items(item_codes=codes, log=False).as_dict()

    assert inputs == ["dict", "DataFrame"]
    small.pop("duration_ms"), framed.pop("duration_ms")
    assert small == framed and small["ok"] == 3


def test_no_active_model_answers_503_with_code_1002(demo_erp, planner_api):
    response = planner_api.post(URL, {"item_codes": _codes(1)}, format="json")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == 1002


def test_model_version_compares_a_ready_version_with_the_active_one(trained_model, planner_api, tmp_path_factory):
    register_bundle(_trained_bundle(tmp_path_factory), "demo-candidate")
    codes = _codes(2)

    response = planner_api.post(URL, {"item_codes": codes, "model_version": "demo-candidate"}, format="json")
    assert response.status_code == 200
    assert response.json()["model_version"] == "demo-candidate"
    assert planner_api.post(URL, {"item_codes": codes}, format="json").json()["model_version"] == trained_model.label

    unknown = planner_api.post(URL, {"item_codes": codes, "model_version": "nope"}, format="json")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == 1002


def test_ml_admin_may_predict_too(trained_model, admin_api):
    assert admin_api.post(URL, {"item_codes": _codes(1)}, format="json").status_code == 200


def test_outsider_is_forbidden(trained_model, outsider):
    client = APIClient()
    client.force_authenticate(outsider)
    response = client.post(URL, {"item_codes": _codes(1)}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == 403


def test_anonymous_caller_must_authenticate(trained_model, api):
    response = api.post(URL, {"item_codes": ["X"]}, format="json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_integration_authenticates_with_a_jwt(trained_model, planner, api):
    token = api.post("/api/v1/auth/token/", {"username": planner.username, "password": "pw-" + planner.username}, format="json")
    assert token.status_code == 200
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token.json()['access']}")
    response = api.post(URL, {"item_codes": _codes(2)}, format="json")
    assert response.status_code == 200
    assert response.json()["ok"] == 2


def test_batch_over_the_limit_is_a_400(trained_model, planner_api, settings):
    settings.PREDICTION_BATCH_LIMIT = 1000
    response = planner_api.post(URL, {"item_codes": [f"C{i}" for i in range(1001)]}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 400
    assert error["details"] == {"limit": 1000, "requested": 1001}
    assert "1000" in error["message"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "item_codes"),
        ({"item_codes": []}, "item_codes"),
        ({"item_codes": ["", None, "  "]}, "item_codes"),
        ({"item_codes": "ABC"}, "item_codes"),
        ({"items": ["not an object"]}, "items"),
        ({"item_codes": ["A"], "top_k": 0}, "top_k"),
        ({"item_codes": ["A"], "top_k": 51}, "top_k"),
    ],
)
def test_invalid_requests_are_400_with_the_error_body(trained_model, planner_api, payload, field):
    response = planner_api.post(URL, payload, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 400 and error["message"] == "The request is invalid."
    assert field in error["details"]


def test_invalid_new_item_is_an_item_error_not_a_failed_batch(trained_model, planner_api):
    response = planner_api.post(URL, {"items": [{"PART_TYPE": "SLEEVE"}, {"OUTDIAMETER": "wide"}, {"COLOUR": "red"}]}, format="json")
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["ok", "error", "error"]
    assert results[1]["error"]["code"] == 400 and "OUTDIAMETER" in results[1]["error"]["details"]
    assert "COLOUR" in results[2]["error"]["details"]


def _metric(client, line_start: str) -> float:
    text = client.get("/metrics").content.decode()
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_every_call_is_counted_in_prometheus(trained_model, planner_api, client):
    ok = 'routing_ml_predictions_total{channel="api",status="ok"}'
    error = 'routing_ml_predictions_total{channel="api",status="error"}'
    rejected = 'routing_ml_predictions_total{channel="api",status="rejected"}'
    calls = 'routing_ml_prediction_duration_seconds_count{channel="api"}'
    before = {name: _metric(client, name) for name in (ok, error, rejected, calls)}

    planner_api.post(URL, {"item_codes": [*_codes(2), "NOPE"]}, format="json")
    planner_api.post(URL, {"item_codes": ["A"], "top_k": 99}, format="json")

    assert _metric(client, ok) - before[ok] == 2
    assert _metric(client, error) - before[error] == 1
    assert _metric(client, rejected) - before[rejected] == 1
    assert _metric(client, calls) - before[calls] == 1


def test_schema_documents_the_endpoint(admin_api):
    response = admin_api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    operation = schema["paths"]["/api/v1/predictions/"]["post"]
    assert operation["operationId"] == "predictions_create"
    assert {"200", "400", "401", "403", "404", "503"} <= set(operation["responses"])
    components = schema["components"]["schemas"]
    assert {"PredictionRequest", "PredictionBatch", "ItemPrediction", "Operation"} <= set(components)
    assert {"time_source", "setup_source"} <= set(components["Operation"]["properties"])
