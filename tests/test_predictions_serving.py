"""The lean serving path of `POST /api/v1/predictions/`: same validation, same security, fewer queries, preloaded model."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from erp.models import Item
from predictions.api import _plain_request
from predictions.models import PredictionLog
from predictions.serializers import PredictionRequestSerializer
from routing_ml.roles import PLANNERS
from tests.fixtures_model import *  # noqa: F403
from tests.fixtures_model import _trained_bundle, register_bundle

# Database-facing: run again on PostgreSQL by `make test` (see the Makefile).
pytestmark = pytest.mark.postgres

URL = "/api/v1/predictions/"


@pytest.mark.parametrize(
    "body",
    [
        {"item_codes": ["A-1"]},
        {"item_codes": ["  A-1 ", "", None, "B-2", "A-1"], "top_k": 7, "include_context": False},
        {"items": [{"PART_TYPE": "SLEEVE", "OUTDIAMETER": 80}], "model_version": "  v1 "},
        {"item_codes": ["A-1"], "items": [{"ITEM_CD": "N-1", "nested": {"x": [1]}}], "top_k": None, "model_version": "", "extra": 1},
        {"item_codes": ["A-1"], "top_k": 50, "model_version": None, "include_context": True},
    ],
)
def test_plain_requests_validate_exactly_as_the_serializer_does(body):
    serializer = PredictionRequestSerializer(data=body)
    assert serializer.is_valid(), serializer.errors
    assert _plain_request(body) == dict(serializer.validated_data)


@pytest.mark.parametrize(
    "body",
    [
        {"item_codes": "A-1"},
        {"item_codes": [1, 2]},
        {"item_codes": [], "items": []},
        {"item_codes": ["", None]},
        {"items": ["not an object"]},
        {"item_codes": ["A-1"], "top_k": 0},
        {"item_codes": ["A-1"], "top_k": "5"},
        {"item_codes": ["A-1"], "top_k": True},
        {"item_codes": ["A-1"], "include_context": "false"},
        {"item_codes": ["A-1"], "include_context": None},
        {"item_codes": ["A-1"], "model_version": 3},
        {"item_codes": None},
        ["A-1"],
    ],
)
def test_unusual_requests_are_left_to_the_serializer(body):
    assert _plain_request(body) is None


def _jwt_client(user) -> APIClient:
    client = APIClient()
    token = client.post("/api/v1/auth/token/", {"username": user.username, "password": "pw-" + user.username}, format="json")
    assert token.status_code == 200, token.content
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.json()['access']}")
    return client


def test_one_item_over_jwt_costs_two_auth_reads_three_data_reads_and_one_log_insert(trained_model, planner, settings):
    settings.MODEL_RELOAD_INTERVAL = 60  # as in production: the active version is checked every few seconds, not per request
    client = _jwt_client(planner)
    code = Item.objects.order_by("item_cd").values_list("item_cd", flat=True).first()
    client.post(URL, {"item_codes": [code]}, format="json")  # the loader's check of the active version

    with CaptureQueriesContext(connection) as queries:
        response = client.post(URL, {"item_codes": [code]}, format="json")

    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    sql = [q["sql"] for q in queries.captured_queries]
    reads = [s for s in sql if s.startswith("SELECT")]
    assert len(reads) == 5, "\n".join(s[:120] for s in sql)  # user, permissions, item, current routing, neighbours' attributes
    assert 'FROM "auth_user"' in reads[0] and "auth_permission" in reads[1]
    assert not any("django_session" in s or "registry_modelversion" in s for s in sql)
    # the prediction log, written as the response closes (on SQLite one prepared INSERT run per row: "1 times: INSERT …")
    assert sum(re.sub(r"^\d+ times: ", "", s).startswith("INSERT") for s in sql) == 1
    assert PredictionLog.objects.filter(item_cd=code, channel="api").count() == 2


def test_a_revoked_permission_refuses_the_next_jwt_request(trained_model, planner):
    client = _jwt_client(planner)
    code = Item.objects.order_by("item_cd").values_list("item_cd", flat=True).first()
    assert client.post(URL, {"item_codes": [code]}, format="json").status_code == 200

    planner.groups.remove(Group.objects.get(name=PLANNERS))

    refused = client.post(URL, {"item_codes": [code]}, format="json")
    assert refused.status_code == 403
    assert refused.json() == {
        "error": {"code": 403, "message": "This action needs the permission registry.predict.", "details": None}
    }


def test_a_superuser_without_groups_may_predict_over_jwt(trained_model, django_user_model):
    boss = django_user_model.objects.create_superuser(username="sam_super", password="pw-sam_super")
    code = Item.objects.order_by("item_cd").values_list("item_cd", flat=True).first()
    assert _jwt_client(boss).post(URL, {"item_codes": [code]}, format="json").status_code == 200


def test_the_preloaded_model_is_served_and_a_later_activation_still_replaces_it(demo_erp, tmp_path_factory, monkeypatch):
    from django.db import connections

    from registry.loader import loader
    from routing_ml.serving import preload_model

    closed = []
    monkeypatch.setattr(connections, "close_all", lambda: closed.append(True))  # the test's own transaction stays open
    first = register_bundle(_trained_bundle(tmp_path_factory), "preloaded", activate=True)
    assert preload_model() == first.label
    assert loader.served_label() == first.label
    assert closed == [True]  # a forked worker never shares the master's database connection
    # Every signature's job list is cached before the fork (filled inside a worker's batch, the entries kept its memory).
    model = loader.active()[1]
    n_signatures = len(model.vocab.sig_offsets) - 1
    assert n_signatures > 0 and sorted(model._sig_cache) == list(range(n_signatures))
    assert all(model._sig_cache[sig] == model.vocab.signature_jobs(sig) for sig in range(n_signatures))

    second = register_bundle(_trained_bundle(tmp_path_factory), "activated-later", activate=True)
    assert loader.active()[0] == second.label  # each worker follows the database (MODEL_RELOAD_INTERVAL)


def test_preloading_without_an_active_version_leaves_it_to_the_workers(db):
    from routing_ml.serving import preload_model

    assert preload_model() is None


def test_the_web_config_preloads_the_app_and_the_model():
    import runpy
    from pathlib import Path

    config = runpy.run_path(str(Path(__file__).resolve().parent.parent / "deploy" / "gunicorn.conf.py"))
    assert config["preload_app"] is True and callable(config["when_ready"])


def test_the_garbage_collector_is_back_on_after_every_answer(trained_model, planner_api):
    import gc

    code = Item.objects.order_by("item_cd").values_list("item_cd", flat=True).first()
    assert planner_api.post(URL, {"item_codes": [code]}, format="json").status_code == 200
    assert gc.isenabled()
    assert planner_api.post(URL, {"item_codes": "not a list"}, format="json").status_code == 400
    assert gc.isenabled()


def test_a_large_sent_answer_is_freed_by_reference_counting_before_the_collector_runs(db, monkeypatch):
    # `db`: closing a response sends request_finished, which tidies the database connections.
    # The collector then walks what else is alive, not the answer's tens of thousands of dicts and lists.
    import gc
    import weakref

    from django.http import HttpResponse

    from routing_ml import serving

    class Part:
        pass

    part = Part()
    alive = weakref.ref(part)
    response = HttpResponse(b"x" * serving.LARGE_ANSWER_BYTES)
    response.data = {"results": [part]}
    response.renderer_context = {"response": response}  # a DRF response sits in a cycle with its view like this
    del part
    closers = []
    response._resource_closers.append(lambda: closers.append("closed"))
    made = [response]
    wrapped = serving.ReleaseMemoryAfterLargeAnswers(lambda environ, start_response: made.pop())({}, None)
    assert isinstance(wrapped, serving._FreedWhenClosed) and b"".join(wrapped) == b"x" * serving.LARGE_ANSWER_BYTES
    del response
    seen_at_collection = []
    real_collect = gc.collect
    monkeypatch.setattr(serving.gc, "collect", lambda *args: seen_at_collection.append(alive()) or real_collect(*args))
    wrapped.close()
    assert seen_at_collection == [None] and closers == ["closed"]  # freed before the collection; closers still run
