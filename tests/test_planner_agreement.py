"""Planner agreement: every served prediction is logged; later decisions and ERP routings grade it per version."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from erp.codes import forget_known_codes, known_jobs, known_work_centres
from erp.models import Item, RoutingOperation
from predictions.agreement import CACHE_KEY, planner_agreement
from predictions.models import PredictionLog
from predictions.service import predict_items
from quality.models import QualityAlert, QualitySettings
from tests.fixtures_model import *  # noqa: F403
from tests.test_quality_metrics import scrape
from training.engine.metrics import process_match

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def _fresh_caches():
    forget_known_codes()
    cache.delete(CACHE_KEY)
    yield
    cache.delete(CACHE_KEY)


def _codes(n: int) -> list[str]:
    qs = Item.objects.filter(item_cd__in=RoutingOperation.objects.values("item_cd"))
    return list(qs.order_by("item_cd").values_list("item_cd", flat=True)[:n])


def test_every_served_prediction_is_logged_in_one_insert(planner_api, trained_model):
    codes = _codes(3)
    before = timezone.now()
    with CaptureQueriesContext(connection) as queries:
        response = planner_api.post("/api/v1/predictions/", {"item_codes": [*codes, "NO-SUCH-ITEM"]}, format="json")
    assert response.status_code == 200
    after = timezone.now()
    # One statement: a multi-row INSERT, or on SQLite one prepared INSERT run for every row ("3 times: INSERT …").
    statements = [re.sub(r"^\d+ times: ", "", q["sql"]) for q in queries.captured_queries]
    inserts = [sql for sql in statements if sql.startswith("INSERT") and "predictionlog" in sql]
    assert len(inserts) == 1

    logged = {row.item_cd: row for row in PredictionLog.objects.all()}
    assert set(logged) == set(codes)  # the unknown code has no prediction to log
    first = response.json()["results"][0]
    row = logged[codes[0]]
    assert (row.model_version, row.channel) == (trained_model.label, "api")
    assert {r.served_at for r in logged.values()} == {row.served_at} and before <= row.served_at <= after
    assert row.jobs == first["routing"]["signature"]
    assert row.times == [[op["setup_minutes"], op["run_minutes_per_unit"]] for op in first["routing"]["operations"]]
    assert row.confidence == pytest.approx(first["routing"]["confidence"])


def test_quality_and_export_reruns_are_not_logged(trained_model):
    predict_items(item_codes=_codes(2), channel="quality")
    predict_items(item_codes=_codes(2), channel="export")
    assert PredictionLog.objects.count() == 0
    predict_items(item_codes=_codes(2), channel="page")
    assert PredictionLog.objects.filter(channel="page").count() == 2


def test_agreement_compares_the_latest_served_prediction_with_the_final_routing(planner_api, trained_model):
    accepted, edited, entered, rejected, undecided = _codes(5)
    response = planner_api.post("/api/v1/predictions/", {"item_codes": [accepted, edited, entered, rejected, undecided]}, format="json")
    predicted = {r["item_cd"]: r["routing"] for r in response.json()["results"]}

    planner_api.post("/api/v1/reviews/", {"item_cd": accepted, "decision": "accepted"}, format="json")
    # The planner keeps the first operation and replaces the rest by one other known job.
    first = predicted[edited]["operations"][0]
    other = next(j for j in sorted(known_jobs()) if j not in predicted[edited]["signature"])
    ops = [
        {
            "job_cd": first["job_cd"],
            "res_cd": first["res_cd"],
            "inside_flag": first["inside_flag"],
            "setup_minutes": 10,
            "run_minutes_per_unit": 1,
        },
        {"job_cd": other, "res_cd": sorted(known_work_centres())[0], "inside_flag": "IN", "setup_minutes": 5, "run_minutes_per_unit": 2},
    ]
    assert (
        planner_api.post("/api/v1/reviews/", {"item_cd": edited, "decision": "edited", "operations": ops}, format="json").status_code == 201
    )
    planner_api.post("/api/v1/reviews/", {"item_cd": rejected, "decision": "rejected", "comment": "no"}, format="json")
    # Someone enters `entered`'s real routing in the ERP after the prediction: the predicted one with its last operation dropped.
    later = timezone.now() + timedelta(minutes=5)
    entered_jobs = predicted[entered]["signature"][:-1]
    RoutingOperation.objects.bulk_create(
        RoutingOperation(
            item_cd=entered, rout_no="999", proc_seq=10 * (i + 1), job_cd=job, time_unit="MIN", setup_time=1, run_time=1, insrt_dt=later
        )
        for i, job in enumerate(entered_jobs)
    )

    figures = planner_agreement()[trained_model.label]
    matches = [
        1.0,
        process_match(predicted[edited]["signature"], [first["job_cd"], other]),
        process_match(predicted[entered]["signature"], entered_jobs),
    ]
    assert figures == {
        "items_compared": 3,
        "process_match": round(sum(matches) / 3, 4),
        "exact_match": round(1 / 3, 4),
        "from_erp": 1,
        "from_planner": 2,
        "rejected": 1,
        "items_logged": 5,
    }


def test_agreement_is_on_the_dashboard_in_prometheus_and_alerts_from_a_cycle(client, planner, planner_api, trained_model):
    from quality.cycle import run_cycle

    code = _codes(1)[0]
    planner_api.post("/api/v1/predictions/", {"item_codes": [code]}, format="json")
    routing = predict_items(item_codes=[code], channel="internal").results[0].routing
    other = next(j for j in sorted(known_jobs()) if j not in routing["signature"])
    ops = [{"job_cd": other, "res_cd": sorted(known_work_centres())[0], "inside_flag": "IN", "setup_minutes": 1, "run_minutes_per_unit": 1}]
    planner_api.post("/api/v1/reviews/", {"item_cd": code, "decision": "edited", "operations": ops}, format="json")

    client.force_login(planner)
    html = client.get("/quality/").content.decode()
    assert '<table class="agreement">' in html and f"<td>{trained_model.label}</td>" in html

    samples = scrape(client)
    assert samples[("routing_ml_planner_agreement_items", (("version", trained_model.label),))] == 1.0
    assert samples[("routing_ml_planner_agreement_process_match", (("version", trained_model.label),))] == 0.0
    assert samples[("routing_ml_planner_agreement_exact_match", (("version", trained_model.label),))] == 0.0

    cfg = QualitySettings.current()
    cfg.planner_agreement_min_items, cfg.auto_retrain = 1, False
    cfg.save()
    cycle = run_cycle(sample_size=20, strategy="random")
    assert cycle.metrics["planner_process_match"] == 0.0 and cycle.metrics["planner_items"] == 1
    alert = QualityAlert.objects.get(cycle=cycle, metric="planner_process_match")
    assert (alert.level, alert.value, alert.threshold) == ("critical", 0.0, cfg.planner_agreement_critical)


def test_quality_housekeeping_purges_log_entries_past_the_retention(settings, trained_model):
    from quality.tasks import housekeeping

    settings.PREDICTION_LOG_RETENTION_DAYS = 30
    predict_items(item_codes=_codes(3), channel="api")
    PredictionLog.objects.filter(pk__in=list(PredictionLog.objects.values_list("pk", flat=True)[:2])).update(
        served_at=timezone.now() - timedelta(days=31)
    )
    assert housekeeping()["prediction_log_purged"] == 2
    assert PredictionLog.objects.count() == 1


def test_a_result_page_shown_again_is_neither_logged_nor_counted_as_a_new_query(client, planner, trained_model):
    from prometheus_client import REGISTRY

    def ok(channel: str) -> float:
        return REGISTRY.get_sample_value("routing_ml_predictions_total", {"status": "ok", "channel": channel}) or 0.0

    client.force_login(planner)
    codes = _codes(12)
    result_url = client.post("/predict/", {"form": "codes", "codes": "\n".join(codes)})["Location"]
    before = {channel: ok(channel) for channel in ("page", "reshow")}
    assert client.get(result_url).status_code == 200
    assert client.get(result_url + "?page=2").status_code == 200
    assert client.get(result_url).status_code == 200

    assert PredictionLog.objects.filter(channel="page").count() == 12 and PredictionLog.objects.count() == 12
    assert ok("page") - before["page"] == 12 and ok("reshow") - before["reshow"] == 24


def _agreement_as_before(*, since=None, model_version=None) -> dict:
    """Planner agreement as it was computed before issue 12 (point 5): every retained log row read in
    serving order, every logged item's current routing read. The reference the bounded queries must equal."""
    from collections import defaultdict

    from predictions.agreement import _aware
    from predictions.models import RoutingReview
    from predictions.service import current_routings

    logs = PredictionLog.objects.order_by("served_at", "pk")
    if since is not None:
        logs = logs.filter(served_at__gte=since)
    if model_version:
        logs = logs.filter(model_version=model_version)
    latest = {}
    for item_cd, label, signature, served_at in logs.values_list("item_cd", "model_version", "signature", "served_at"):
        latest[(item_cd, label)] = (signature, served_at)
    codes = sorted({item for item, _ in latest})
    decisions = {r.item_cd: r for r in RoutingReview.objects.latest_per_item().filter(item_cd__in=codes)}
    erp = current_routings(codes, with_inserted=True) if codes else {}
    per_version = defaultdict(lambda: {"matches": [], "exact": 0, "from_erp": 0, "from_planner": 0, "rejected": 0, "items_logged": 0})
    for (item_cd, label), (signature, served_at) in latest.items():
        stats = per_version[label]
        stats["items_logged"] += 1
        predicted = signature.split(PredictionLog.SEPARATOR) if signature else []
        final, routing = None, erp.get(item_cd)
        inserted = _aware(routing.get("inserted")) if routing else None
        if routing and inserted is not None and inserted > served_at:
            final = list(routing["signature"])
            stats["from_erp"] += 1
        else:
            review = decisions.get(item_cd)
            if review is not None and review.decided:
                final = list(review.decided.get("signature") or [])
                stats["from_planner"] += 1
            elif review is not None:
                stats["rejected"] += 1
        if final is None:
            continue
        stats["matches"].append(process_match(predicted, final))
        stats["exact"] += int(predicted == final)
    return {
        label: {
            "items_compared": len(s["matches"]),
            "process_match": round(sum(s["matches"]) / len(s["matches"]), 4) if s["matches"] else None,
            "exact_match": round(s["exact"] / len(s["matches"]), 4) if s["matches"] else None,
            "from_erp": s["from_erp"],
            "from_planner": s["from_planner"],
            "rejected": s["rejected"],
            "items_logged": s["items_logged"],
        }
        for label, s in sorted(per_version.items())
    }


def _busy_log(n_items: int, seed: int = 12) -> None:
    """A log of two versions over `n_items` items, several predictions an item (ties in time included),
    served out of id order; reviews (accepted, edited, rejected, re-decided); ERP routings entered before,
    after and between predictions, an expired one, and items with no routing at all."""
    import random

    from predictions.models import RoutingReview
    from registry.models import ModelVersion

    rng = random.Random(seed)
    jobs = [f"J{i:02d}" for i in range(8)]
    versions = [ModelVersion.objects.create(label=label, status="ready", artifact_path=label) for label in ("v-old", "v-new")]
    start = timezone.now() - timedelta(days=20)
    logs, reviews, operations = [], [], []
    for i in range(n_items):
        code = f"AGR-{i:04d}"
        served = []
        for _ in range(rng.randint(1, 4)):
            when = start + timedelta(days=rng.randint(0, 15), minutes=rng.choice([0, 0, 7]))  # repeated minutes: ties in served_at
            label = rng.choice(versions).label
            signature = ">".join(rng.sample(jobs, rng.randint(2, 5)))
            logs.append(PredictionLog(item_cd=code, model_version=label, signature=signature, channel="api", served_at=when))
            served.append(when)
        fate = rng.random()
        if fate < 0.35:  # routing entered: before, between or after the predictions, in one or two routings
            for rout_no in ("001", "002")[: rng.randint(1, 2)]:
                entered = rng.choice(served) + timedelta(days=rng.choice([-3, -1, 1, 2]), seconds=rng.choice([0, 0.5]))
                expired = rng.random() < 0.1
                for seq, job in enumerate(rng.sample(jobs, rng.randint(2, 5)), start=1):
                    operations.append(
                        RoutingOperation(
                            item_cd=code, rout_no=rout_no, proc_seq=10 * seq, job_cd=job, time_unit="MIN", setup_time=1, run_time=1,
                            insrt_dt=entered, valid_to_dt=start if expired else None,
                        )
                    )  # fmt: skip
        if 0.25 < fate < 0.75:  # reviews, the newest one counts
            for _ in range(rng.randint(1, 2)):
                decision = rng.choice(["accepted", "edited", "rejected"])
                decided = None if decision == "rejected" else {"signature": rng.sample(jobs, rng.randint(2, 5)), "operations": []}
                reviews.append(
                    RoutingReview(
                        item_cd=code, model_version=rng.choice(versions), predicted={"signature": []}, decided=decided,
                        decision=decision, decided_at=start + timedelta(days=rng.randint(0, 20)),
                    )
                )  # fmt: skip
    rng.shuffle(logs)  # ids out of serving order
    PredictionLog.objects.bulk_create(logs)
    RoutingReview.objects.bulk_create(reviews)
    RoutingOperation.objects.bulk_create(operations)


def test_agreement_reads_only_the_compared_items_and_equals_the_full_log_walk(db):
    """Issue 12 (point 5): the latest prediction per item and version is chosen in SQL and only compared
    items are read (not the whole retained log, not every logged item's routing), with the same figures."""
    _busy_log(300)
    assert PredictionLog.objects.count() > 450
    window = timezone.now() - timedelta(days=12)
    for arguments in ({}, {"model_version": "v-new"}, {"since": window}, {"since": window, "model_version": "v-old"}):
        expected = _agreement_as_before(**arguments)
        assert planner_agreement(**arguments) == expected, arguments
    figures = planner_agreement()
    assert all(f["from_erp"] and f["from_planner"] and f["rejected"] for f in figures.values())  # every branch is exercised
    assert sum(f["items_logged"] for f in figures.values()) > 300  # items predicted by both versions count for each

    with CaptureQueriesContext(connection) as queries:
        planner_agreement()
    selects = [q["sql"] for q in queries.captured_queries if "predictionlog" in q["sql"] and "signature" in q["sql"]]
    assert selects and all('"ITEM_CD" IN' in sql or '"item_cd" IN' in sql for sql in selects)  # never the whole log's signatures


def test_agreement_queries_do_not_grow_with_the_log(db):
    _busy_log(40, seed=3)
    with CaptureQueriesContext(connection) as small:
        planner_agreement()
    PredictionLog.objects.all().delete()
    RoutingOperation.objects.all().delete()
    from predictions.models import RoutingReview
    from registry.models import ModelVersion

    RoutingReview.objects.all().delete()
    ModelVersion.objects.all().delete()
    _busy_log(400, seed=3)
    with CaptureQueriesContext(connection) as large:
        planner_agreement()
    assert len(large.captured_queries) == len(small.captured_queries)
    assert planner_agreement() == _agreement_as_before()
