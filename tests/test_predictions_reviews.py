"""Planners' reviews of predicted routings: the API, the pages, the ERP export, the admin."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from erp.codes import forget_known_codes, known_jobs, known_work_centres
from erp.models import Item, RoutingOperation
from predictions.models import RoutingReview
from predictions.service import ERP_ROUTING_COLUMNS, predict_items
from tests.fixtures_model import *  # noqa: F403

pytestmark = pytest.mark.postgres

URL = "/api/v1/reviews/"


@pytest.fixture(autouse=True)
def _fresh_known_codes():
    forget_known_codes()
    yield
    forget_known_codes()


def _codes(n: int) -> list[str]:
    qs = Item.objects.filter(item_cd__in=RoutingOperation.objects.values("item_cd"))
    return list(qs.order_by("item_cd").values_list("item_cd", flat=True)[:n])


def _predicted(code: str) -> dict:
    return predict_items(item_codes=[code], include_context=False).results[0].routing


def _two_known_operations() -> list[dict]:
    jobs, centres = sorted(known_jobs()), sorted(known_work_centres())
    return [
        {"job_cd": jobs[0], "res_cd": centres[0], "inside_flag": "IN", "setup_minutes": 30, "run_minutes_per_unit": 2.5},
        {"job_cd": jobs[1], "res_cd": centres[1], "inside_flag": "OUT", "setup_minutes": 0, "run_minutes_per_unit": 0.75},
    ]


# ------------------------------------------------------------------------------------------------
# API
# ------------------------------------------------------------------------------------------------


def test_accepting_records_the_active_versions_prediction_as_decided(planner_api, planner, trained_model):
    code = _codes(1)[0]
    response = planner_api.post(URL, {"item_cd": code, "decision": "accepted", "comment": "looks right"}, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    predicted = _predicted(code)
    assert body["model_version"] == trained_model.label
    assert body["decision"] == "accepted" and body["decided_by"] == planner.username and body["comment"] == "looks right"
    assert body["predicted"]["signature"] == predicted["signature"]
    assert body["decided"]["signature"] == predicted["signature"]
    assert len(body["decided"]["operations"]) == len(predicted["operations"])
    review = RoutingReview.objects.get()
    assert review.model_version == trained_model and review.decided_by == planner


def test_edited_routing_is_stored_in_the_given_order_numbered_by_ten(planner_api, trained_model):
    code = _codes(1)[0]
    ops = _two_known_operations()
    response = planner_api.post(URL, {"item_cd": code, "decision": "edited", "operations": ops}, format="json")

    assert response.status_code == 201, response.json()
    decided = response.json()["decided"]
    assert decided["signature"] == [ops[0]["job_cd"], ops[1]["job_cd"]]
    assert [op["proc_seq"] for op in decided["operations"]] == [10, 20]
    assert [(op["res_cd"], op["inside_flag"], op["setup_minutes"], op["run_minutes_per_unit"]) for op in decided["operations"]] == [
        (ops[0]["res_cd"], "IN", 30.0, 2.5),
        (ops[1]["res_cd"], "OUT", 0.0, 0.75),
    ]


def test_edited_routing_with_unknown_codes_or_negative_times_is_refused_field_by_field(planner_api, trained_model):
    code = _codes(1)[0]
    ops = _two_known_operations()
    ops[0]["job_cd"] = "NO-SUCH-JOB"
    ops[1]["res_cd"] = "NO-SUCH-WC"
    ops[1]["setup_minutes"] = -5
    ops[1]["inside_flag"] = "MAYBE"
    response = planner_api.post(URL, {"item_cd": code, "decision": "edited", "operations": ops}, format="json")

    assert response.status_code == 400
    details = response.json()["error"]["details"]
    assert set(details) == {"operations.0.job_cd", "operations.1.res_cd", "operations.1.setup_minutes", "operations.1.inside_flag"}
    assert "'NO-SUCH-JOB' is not a job the ERP's routings know." in details["operations.0.job_cd"][0]
    assert RoutingReview.objects.count() == 0


def test_edited_without_operations_unknown_item_and_bad_decision_are_400(planner_api, trained_model):
    code = _codes(1)[0]
    no_ops = planner_api.post(URL, {"item_cd": code, "decision": "edited"}, format="json")
    assert no_ops.status_code == 400 and "operations" in no_ops.json()["error"]["details"]
    unknown = planner_api.post(URL, {"item_cd": "NO-SUCH-ITEM", "decision": "accepted"}, format="json")
    assert unknown.status_code == 400 and "item_cd" in unknown.json()["error"]["details"]
    bad = planner_api.post(URL, {"item_cd": code, "decision": "maybe"}, format="json")
    assert bad.status_code == 400 and "decision" in bad.json()["error"]["details"]
    version = planner_api.post(URL, {"item_cd": code, "decision": "accepted", "model_version": "nope"}, format="json")
    assert version.status_code == 404 and version.json()["error"]["code"] == 1002
    assert RoutingReview.objects.count() == 0


def test_reviewing_without_an_active_model_is_503(planner_api, demo_erp):
    response = planner_api.post(URL, {"item_cd": _codes(1)[0], "decision": "accepted"}, format="json")
    assert response.status_code == 503 and response.json()["error"]["code"] == 1002


def test_reviews_need_credentials_and_the_role(api, outsider, trained_model):
    assert api.post(URL, {"item_cd": "X", "decision": "accepted"}, format="json").status_code == 401
    api.force_authenticate(outsider)
    assert api.post(URL, {"item_cd": "X", "decision": "accepted"}, format="json").status_code == 403
    assert api.get(URL).status_code == 403


def test_history_is_kept_and_the_latest_decision_per_item_is_current(planner_api, trained_model):
    first, second = _codes(2)
    planner_api.post(URL, {"item_cd": first, "decision": "accepted"}, format="json")
    planner_api.post(URL, {"item_cd": first, "decision": "rejected", "comment": "wrong family"}, format="json")
    planner_api.post(URL, {"item_cd": second, "decision": "accepted"}, format="json")

    assert RoutingReview.objects.count() == 3
    current = {r.item_cd: r.decision for r in RoutingReview.objects.latest_per_item()}
    assert current == {first: "rejected", second: "accepted"}

    listed = planner_api.get(URL, {"item_cd": first}).json()
    assert listed["count"] == 2 and [r["decision"] for r in listed["results"]] == ["rejected", "accepted"]
    assert planner_api.get(URL, {"decision": "accepted"}).json()["count"] == 2
    assert planner_api.get(URL, {"current": "true", "decision": "accepted"}).json()["count"] == 1
    RoutingReview.objects.filter(item_cd=second).update(decided_at=timezone.now() - timedelta(days=10))
    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    assert {r["item_cd"] for r in planner_api.get(URL, {"since": since}).json()["results"]} == {first}
    assert planner_api.get(URL, {"since": "last week"}).status_code == 400


def test_export_holds_each_items_current_decided_routing_in_the_erp_layout(planner_api, trained_model):
    accepted, edited, rejected = _codes(3)
    ops = _two_known_operations()
    planner_api.post(URL, {"item_cd": accepted, "decision": "accepted"}, format="json")
    planner_api.post(URL, {"item_cd": edited, "decision": "accepted"}, format="json")
    planner_api.post(URL, {"item_cd": edited, "decision": "edited", "operations": ops}, format="json")  # supersedes the acceptance
    planner_api.post(URL, {"item_cd": rejected, "decision": "edited", "operations": ops}, format="json")
    planner_api.post(URL, {"item_cd": rejected, "decision": "rejected"}, format="json")  # nothing to load any more

    response = planner_api.get(URL + "export.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert tuple(rows[0]) == ERP_ROUTING_COLUMNS
    body = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    predicted = _predicted(accepted)
    assert [r["JOB_CD"] for r in body if r["ITEM_CD"] == accepted] == predicted["signature"]
    mine = [r for r in body if r["ITEM_CD"] == edited]
    assert [(r["PROC_SEQ"], r["JOB_CD"], r["RES_CD"], r["INSIDE_FLAG"], r["SETUP_TIME"], r["RUN_TIME"]) for r in mine] == [
        ("10", ops[0]["job_cd"], ops[0]["res_cd"], "IN", "30.0", "2.5"),
        ("20", ops[1]["job_cd"], ops[1]["res_cd"], "OUT", "0.0", "0.75"),
    ]
    assert all(r["TIME_UNIT"] == "MIN" and r["RUN_TIME_QTY"] == "1" and r["ROUT_NO"] == "ML" for r in body)
    assert rejected not in {r["ITEM_CD"] for r in body}


# ------------------------------------------------------------------------------------------------
# Pages
# ------------------------------------------------------------------------------------------------


def _result_url(client, codes):
    response = client.post("/predict/", {"form": "codes", "codes": "\n".join(codes)})
    assert response.status_code == 302
    return response["Location"]


def test_planner_accepts_from_the_result_page_and_sees_the_state(client, planner, trained_model):
    client.force_login(planner)
    codes = _codes(2)
    result_url = _result_url(client, codes)
    html = client.get(result_url).content.decode()
    assert html.count('class="form review-inline"') == 2

    response = client.post(
        reverse("predictions:review", args=[codes[0]]),
        {"decision": "accepted", "comment": "ok", "version": trained_model.label, "next": result_url + "#item-1"},
    )
    assert response.status_code == 302 and response["Location"] == result_url + "#item-1"
    review = RoutingReview.objects.get()
    assert (review.item_cd, review.decision, review.comment) == (codes[0], "accepted", "ok")

    page = client.get(result_url)
    assert page.context["items"][0]["review"] == review and page.context["items"][1]["review"] is None
    assert f"{codes[0]}: routing accepted." in page.content.decode()


def test_planner_edits_reorders_removes_and_adds_operations_on_the_review_page(client, planner, trained_model):
    client.force_login(planner)
    code = _codes(1)[0]
    page = client.get(reverse("predictions:review", args=[code]))
    assert page.status_code == 200
    rows = page.context["edit_rows"]
    predicted = page.context["predicted"]["operations"]
    assert len(rows) == len(predicted) + 2  # two spare rows to add operations without JavaScript
    jobs, centres = sorted(known_jobs()), sorted(known_work_centres())

    data = {"decision": "edited", "comment": "swap", "version": trained_model.label}
    for row in rows:
        for name in ("order", "job_cd", "res_cd", "inside_flag", "setup_minutes", "run_minutes_per_unit"):
            data[f"op-{row['n']}-{name}"] = row[name]
    # Move the second operation first, remove the first, fill the first spare row.
    data["op-2-order"] = "5"
    data["op-1-remove"] = "1"
    spare = rows[len(predicted)]["n"]
    data.update({f"op-{spare}-job_cd": jobs[0], f"op-{spare}-res_cd": centres[0], f"op-{spare}-inside_flag": "OUT"})
    data.update({f"op-{spare}-setup_minutes": "12", f"op-{spare}-run_minutes_per_unit": "0.5"})
    response = client.post(reverse("predictions:review", args=[code]), data)
    assert response.status_code == 302, response.content.decode()[:3000]

    decided = RoutingReview.objects.get().decided
    expected = [predicted[1]["job_cd"], *[op["job_cd"] for op in predicted[2:]], jobs[0]]
    assert decided["signature"] == expected
    assert decided["operations"][-1] | {} == {
        "proc_seq": 10 * len(expected), "job_cd": jobs[0], "job_nm": known_jobs()[jobs[0]], "res_cd": centres[0],
        "inside_flag": "OUT", "setup_minutes": 12.0, "run_minutes_per_unit": 0.5,
    }  # fmt: skip


def test_invalid_edit_shows_the_error_beside_the_field_and_keeps_the_input(client, planner, trained_model):
    client.force_login(planner)
    code = _codes(1)[0]
    jobs, centres = sorted(known_jobs()), sorted(known_work_centres())
    data = {"decision": "edited", "comment": "typo", "op-1-order": "10", "op-1-job_cd": jobs[0], "op-1-res_cd": centres[0]}
    data.update({"op-1-inside_flag": "IN", "op-1-setup_minutes": "-1", "op-1-run_minutes_per_unit": "1"})
    response = client.post(reverse("predictions:review", args=[code]), data)

    assert response.status_code == 400
    html = response.content.decode()
    assert re.search(
        r'name="op-1-setup_minutes" value="-1"[^>]*aria-invalid="true">\s*<span class="errorlist field-error">Setup time must be 0 or more minutes',
        html,
    )
    assert ">typo</textarea>" in html
    assert RoutingReview.objects.count() == 0


def test_item_page_links_to_the_review_and_shows_the_current_decision(client, planner, trained_model):
    client.force_login(planner)
    code = _codes(1)[0]
    client.post(reverse("predictions:review", args=[code]), {"decision": "rejected", "comment": "needs grinding"})
    html = client.get(reverse("predictions:item", args=[code])).content.decode()
    assert f'href="{reverse("predictions:review", args=[code])}?next=' in html
    assert "rejected" in html and "needs grinding" in html


def test_my_reviews_lists_my_decisions_and_the_items_awaiting_one(client, planner, trained_model):
    client.force_login(planner)
    codes = _codes(3)
    _result_url(client, codes)
    client.post(reverse("predictions:review", args=[codes[1]]), {"decision": "accepted"})

    response = client.get(reverse("predictions:reviews"))
    assert response.status_code == 200
    assert [a["item_cd"] for a in response.context["awaiting"]] == [codes[0], codes[2]]
    assert [r.item_cd for r in response.context["reviews"]] == [codes[1]]


def test_review_pages_need_the_review_permission(client, outsider, trained_model):
    client.force_login(outsider)
    assert client.get(reverse("predictions:reviews")).status_code == 403
    assert client.post(reverse("predictions:review", args=[_codes(1)[0]]), {"decision": "accepted"}).status_code == 403


def test_reviews_are_read_only_in_the_admin(ml_admin_client, planner_api, trained_model):
    planner_api.post(URL, {"item_cd": _codes(1)[0], "decision": "accepted"}, format="json")
    review = RoutingReview.objects.get()
    assert ml_admin_client.get(reverse("admin:predictions_routingreview_changelist")).status_code == 200
    assert ml_admin_client.get(reverse("admin:predictions_routingreview_change", args=[review.pk])).status_code == 200
    assert ml_admin_client.get(reverse("admin:predictions_routingreview_add")).status_code == 403


def test_served_predictions_are_listed_read_only_in_the_admin(ml_admin_client, planner_api, trained_model):
    from predictions.models import PredictionLog

    planner_api.post("/api/v1/predictions/", {"item_codes": _codes(2)}, format="json")
    log = PredictionLog.objects.first()
    page = ml_admin_client.get(reverse("admin:predictions_predictionlog_changelist")).content.decode()
    assert log.item_cd in page and " → ".join(log.jobs) in page
    assert ml_admin_client.get(reverse("admin:predictions_predictionlog_add")).status_code == 403
