"""Hostile and careless input: every endpoint answers a 4xx with the error body (413 when too large), never a 500."""

from __future__ import annotations

import codecs
import io
import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.fixtures_model import *  # noqa: F403
from tests.test_api_errors import assert_error_body

# Database-facing: run again on PostgreSQL by `make test` (see the Makefile).
pytestmark = pytest.mark.postgres

# (method, path, who): every endpoint that reads a request body.
BODY_ENDPOINTS = [
    ("post", "/api/v1/auth/token/", None),
    ("post", "/api/v1/auth/token/refresh/", None),
    ("post", "/api/v1/predictions/", "planner"),
    ("patch", "/api/v1/quality/settings/", "ml_admin"),
    ("post", "/api/v1/quality/cycles/", "ml_admin"),
    ("post", "/api/v1/training/jobs/", "ml_admin"),
    ("post", "/api/v1/models/no-such-version/activate/", "ml_admin"),
    ("post", "/api/v1/models/rollback/", "ml_admin"),
]

HOSTILE_BODIES = {
    "nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
    "nested 40 deep": b'{"items": ' + b"[" * 40 + b"]" * 40 + b"}",
    "lone surrogate in a value": b'{"username": "\\ud800", "password": "x", "items": [{"PART_TYPE": "\\udfff"}], "reason": "\\ud800", "refresh": "\\ud800"}',
    "lone surrogate in a key": b'{"items": [{"\\ud800": "x"}], "\\udc00": 1}',
    "NUL in a value": b'{"username": "a\\u0000b", "password": "x", "items": [{"PART_TYPE": "a\\u0000"}], "reason": "\\u0000", "refresh": "\\u0000"}',
    "400-digit integer": b'{"items": [{"OUTDIAMETER": ' + b"9" * 400 + b'}], "sample_size": ' + b"9" * 400 + b', "cooldown_hours": 1' + b"0" * 400 + b"}",
    "NaN": b'{"items": [{"OUTDIAMETER": NaN}], "cooldown_hours": Infinity}',
    "not UTF-8": b'{"username": "\xff\xfe"}',
}


def _client(request, who):
    client = APIClient(raise_request_exception=False)
    if who:
        client.force_authenticate(request.getfixturevalue(who))
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("method, path, who", BODY_ENDPOINTS)
@pytest.mark.parametrize("name", list(HOSTILE_BODIES))
def test_hostile_json_body_is_a_400_with_the_error_body(request, method, path, who, name):
    client = _client(request, who)
    response = getattr(client, method)(path, data=HOSTILE_BODIES[name], content_type="application/json")
    error = assert_error_body(response, 400, 400)
    assert "JSON parse error" in error["message"]


@pytest.mark.django_db
@pytest.mark.parametrize("method, path, who", BODY_ENDPOINTS)
def test_body_over_the_upload_limit_is_a_413(request, method, path, who, settings):
    client = _client(request, who)
    body = b'{"items": [' + b'{"PART_TYPE": "SLEEVE"},' * 150_000 + b"{}]}"
    assert len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    error = assert_error_body(getattr(client, method)(path, data=body, content_type="application/json"), 413, 413)
    assert error["details"]["limit_bytes"] == settings.DATA_UPLOAD_MAX_MEMORY_SIZE


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/predict/", "/api/v1/quality/cycles/"])
def test_form_body_with_too_many_fields_is_a_400(client, ml_admin, path):
    """Django refuses it while the CSRF check reads the form, before any view: handler400 answers."""
    client.force_login(ml_admin)
    response = client.post(path, data="&".join(f"f{i}=1" for i in range(1500)), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    if path.startswith("/api/"):
        assert_error_body(response, 400, 400)


@pytest.mark.django_db
def test_form_post_over_the_limit_is_a_413_page(client, planner, settings):
    client.force_login(planner)
    response = client.post("/predict/", data="codes=" + "A," * 2_000_000, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 413
    assert "larger than" in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["?limit=9223372036854775808", "?limit=99999999999999999999999999&offset=9223372036854775808", "?offset=-1&limit=-5"])
@pytest.mark.parametrize("path", ["/api/v1/quality/cycles/", "/api/v1/quality/alerts/", "/api/v1/training/jobs/", "/api/v1/models/"])
def test_huge_or_negative_pagination_is_capped_not_a_500(admin_api, path, query):
    response = admin_api.get(path + query)
    assert response.status_code == 200, response.content
    assert response.json()["results"] == []


def test_limit_is_capped_at_max_limit(admin_api):
    from quality.models import QualityAlert, QualityCycle

    cycle = QualityCycle.objects.create(sample_strategy="random", sample_size=10)
    QualityAlert.objects.bulk_create(QualityAlert(cycle=cycle, level="warning", metric="mae", message="m") for _ in range(510))
    body = admin_api.get("/api/v1/quality/alerts/?limit=100000").json()
    assert body["count"] == 510 and len(body["results"]) == 500
    assert "limit=500" in body["next"]


@pytest.mark.parametrize("days, status", [("1000000", 400), ("3651", 400), ("0", 400), ("-3", 400), ("1e999", 400), ("3650", 200), ("0.5", 200)])
def test_days_window_is_bounded(admin_api, days, status):
    response = admin_api.get(f"/api/v1/quality/cycles/?days={days}")
    if status == 200:
        assert response.status_code == 200
    else:
        error = assert_error_body(response, 400, 400)
        assert "days" in json.dumps(error["details"])


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/quality/cycles/?status=%00", "/api/v1/models/?status=a%00b", "/api/v1/training/jobs/?trigger=%00"])
def test_nul_in_the_query_string_is_a_400(admin_api, path):
    error = assert_error_body(admin_api.get(path), 400, 400)
    assert "NUL" in error["message"]


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_unsafe_method_on_an_unknown_api_path_is_the_json_404_not_the_csrf_page(method, planner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(planner)  # a browser session: CSRF applies
    response = getattr(client, method)("/api/v1/no/such/thing/", data="{}", content_type="application/json")
    assert_error_body(response, 404, 404)


@pytest.mark.django_db
def test_csrf_failure_on_an_api_endpoint_is_the_json_error_body(planner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(planner)
    response = client.post("/api/v1/quality/cycles/", data="{}", content_type="application/json")
    error = assert_error_body(response, 403, 403)
    assert "CSRF" in error["message"]


# --------------------------------------------------------------------------------------------
# Attributes of new items: physical bounds, on the API, the form and the CSV upload
# --------------------------------------------------------------------------------------------

OUT_OF_BOUNDS = [
    ({"PART_TYPE": "SLEEVE", "OUTDIAMETER": 0}, "OUTDIAMETER", "must be more than 0."),
    ({"PART_TYPE": "SLEEVE", "OUTDIAMETER": -5}, "OUTDIAMETER", "must not be negative."),
    ({"PART_TYPE": "SLEEVE", "OUTTHICKNESS": 1e300}, "OUTTHICKNESS", "must be at most 10000 mm."),
    ({"PART_TYPE": "SLEEVE", "INDIAMETER": 10**25}, "INDIAMETER", "must be at most 10000 mm."),
    ({"PART_TYPE": "SLEEVE", "OUTDIAMETER": "1" + "0" * 400}, "OUTDIAMETER", "must be a number of at most 10000."),
    ({"PART_TYPE": "SLEEVE", "ROTATE_CLOCKWISE": 2}, "ROTATE_CLOCKWISE", "must be at most 1."),
]


@pytest.mark.parametrize("attributes, column, message", OUT_OF_BOUNDS)
def test_api_refuses_attributes_outside_their_physical_bounds(trained_model, planner_api, attributes, column, message):
    response = planner_api.post("/api/v1/predictions/", {"items": [attributes]}, format="json")
    assert response.status_code == 200
    result = response.json()["results"][0]
    assert result["status"] == "error" and result["error"]["code"] == 400
    assert result["error"]["details"][column] == message


def test_new_item_form_refuses_text_with_nul(client, planner, demo_erp):
    client.force_login(planner)
    response = client.post("/predict/", {"form": "new", "new-PART_TYPE": "SLE\x00EVE"})
    assert response.status_code == 400
    assert response.context["new_form"].errors["PART_TYPE"] == ["Null characters are not allowed."]


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("OUTDIAMETER", "20000", "Ensure this value is less than or equal to 10000.0."),
        ("OUTDIAMETER", "0", "Must be more than 0."),
        ("OUTDIAMETER", "1" + "0" * 400, "Enter a number."),
    ],
)
def test_new_item_form_refuses_sizes_outside_their_bounds(client, planner, demo_erp, field, value, message):
    client.force_login(planner)
    response = client.post("/predict/", {"form": "new", "new-PART_TYPE": "SLEEVE", f"new-{field}": value})
    assert response.status_code == 400
    assert response.context["new_form"].errors[field] == [message]


def _upload(client, data: bytes):
    upload = io.BytesIO(data)
    upload.name = "items.csv"
    return client.post("/predict/", {"form": "codes", "csv_file": upload})


def test_csv_with_a_field_over_the_csv_field_limit_is_a_form_error_with_its_line(client, planner, demo_erp):
    client.force_login(planner)
    response = _upload(client, b'PART_TYPE,ITEM_MATERIAL\nSLEEVE,SUS316\nGLAND,"' + b"x" * 140_000 + b'"\n')
    assert response.status_code == 400
    [error] = response.context["codes_form"].errors["csv_file"]
    assert error.startswith("line 3: a cell is longer than 131,072 characters")


def test_csv_rows_outside_the_bounds_are_reported_with_their_line(client, planner, demo_erp):
    client.force_login(planner)
    response = _upload(client, b"PART_TYPE,OUTDIAMETER\nSLEEVE,80\nGLAND,99999\nGLAND," + b"9" * 400 + b"\n")
    assert response.status_code == 400
    assert response.context["codes_form"].errors["csv_file"] == [
        "line 3: OUTDIAMETER must be at most 10000 mm.",
        "line 4: OUTDIAMETER must be a number of at most 10000.",
    ]


KOREAN = "PART_TYPE,ITEM_MATERIAL,ITEM_NM\nSLEEVE,SUS316,슬리브 부품\n"


@pytest.mark.parametrize(
    "encoded",
    [
        pytest.param(KOREAN.encode("utf-8"), id="utf-8"),
        pytest.param(codecs.BOM_UTF8 + KOREAN.encode("utf-8"), id="utf-8 with BOM"),
        pytest.param(KOREAN.encode("utf-16"), id="utf-16 with BOM"),
        pytest.param(KOREAN.encode("utf-16-le"), id="utf-16-le without BOM"),
        pytest.param(KOREAN.encode("cp949"), id="cp949"),
        pytest.param(KOREAN.encode("euc-kr"), id="euc-kr"),
    ],
)
def test_csv_in_each_excel_encoding_is_read(client, planner, trained_model, encoded):
    client.force_login(planner)
    response = _upload(client, encoded)
    assert response.status_code == 302, response.context["codes_form"].errors
    batch = client.get(response["Location"]).context["batch"]
    assert batch.results[0].attributes["ITEM_NM"] == "슬리브 부품"
    assert batch.results[0].attributes["PART_TYPE"] == "SLEEVE"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00", id="binary"),
        pytest.param("PART_TYPE\nSLEEVE\n".encode("utf-32"), id="utf-32"),
        pytest.param(b"PART_TYPE\nSLE\x00EVE\n", id="NUL"),
    ],
)
def test_csv_in_an_unreadable_encoding_is_refused_naming_the_encodings(client, planner, demo_erp, data):
    client.force_login(planner)
    response = _upload(client, data)
    assert response.status_code == 400
    [error] = response.context["codes_form"].errors["csv_file"]
    assert "UTF-8, UTF-16 or CP949/EUC-KR" in error
