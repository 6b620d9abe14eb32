"""The prediction service: routing, confidence, alternatives, times, neighbours, errors, limits, export."""

from __future__ import annotations

import csv
from collections import defaultdict

import pytest
from prometheus_client import REGISTRY

from erp.models import Item, RoutingOperation, WorkResult
from predictions.service import (
    ERP_ROUTING_COLUMNS,
    BatchTooLarge,
    PredictionInputError,
    clean_item_attributes,
    erp_routing_rows,
    predict_items,
)
from registry.models import ModelVersion
from routing_ml.errors import ModelNotFound, NoActiveModel
from tests.fixtures_model import *  # noqa: F403
from tests.fixtures_model import register_bundle

# Database-facing: run again on PostgreSQL by `make test` (see the Makefile).
pytestmark = pytest.mark.postgres


def _codes(n: int, part_type: str | None = None) -> list[str]:
    """Items that have a current routing (the ones a planner would compare), in a stable order."""
    with_routing = RoutingOperation.objects.values("item_cd")
    qs = Item.objects.filter(item_cd__in=with_routing)
    if part_type:
        qs = qs.filter(part_type=part_type)
    return list(qs.order_by("item_cd").values_list("item_cd", flat=True)[:n])


def _current_signature(item_cd: str) -> list[str]:
    return list(RoutingOperation.objects.filter(item_cd=item_cd).current().values_list("job_cd", flat=True))


def test_known_item_gets_the_routing_with_the_largest_similarity_weighted_support(trained_model):
    batch = predict_items(item_codes=_codes(20))

    assert batch.model_version == trained_model.label
    assert batch.ok_count == 20
    for result in batch.results:
        routing = result.routing
        support: dict[tuple, float] = defaultdict(float)
        for neighbour in result.similar_items:
            support[tuple(neighbour["signature"])] += max(neighbour["similarity"], 0.0)
        total = sum(support.values())
        best = max(support.values())
        # The chosen signature is (one of) the best supported among the neighbours shown...
        assert support[tuple(routing["signature"])] == pytest.approx(best, abs=1e-3)
        # ...and its confidence is exactly that share of the similarity-weighted votes.
        assert routing["confidence"] == pytest.approx(best / total, abs=0.01)
        assert 0 < routing["confidence"] <= 1
        # Operations follow the signature one to one, numbered 10, 20, 30…
        assert [op["job_cd"] for op in routing["operations"]] == routing["signature"]
        assert [op["proc_seq"] for op in routing["operations"]] == [10 * (i + 1) for i in range(len(routing["signature"]))]
        assert all(op["inside_flag"] in ("IN", "OUT") and op["res_cd"] for op in routing["operations"])


def test_alternatives_are_the_next_signatures_by_support(trained_model):
    batch = predict_items(item_codes=_codes(40))
    with_alternatives = [r for r in batch.results if r.alternatives]
    assert with_alternatives, "40 demo items should include some with more than one routing among their neighbours"
    for result in with_alternatives:
        supports = [result.routing["confidence"]] + [a["support"] for a in result.alternatives]
        assert supports == sorted(supports, reverse=True)
        assert sum(supports) <= 1.0 + 1e-3  # shares rounded to 4 decimals
        signatures = [tuple(result.routing["signature"])] + [tuple(a["signature"]) for a in result.alternatives]
        assert len(set(signatures)) == len(signatures)
        neighbour_signatures = {tuple(n["signature"]) for n in result.similar_items}
        assert all(tuple(a["signature"]) in neighbour_signatures for a in result.alternatives)


def test_item_is_never_its_own_neighbour(trained_model):
    codes = _codes(50)
    batch = predict_items(item_codes=codes)
    for code, result in zip(codes, batch.results, strict=True):
        assert result.item_cd == code
        assert code not in {n["item_cd"] for n in result.similar_items}
        assert len(result.similar_items) > 0

    # Without the guard the item would be its own best match: the flag really does something.
    debug = predict_items(item_codes=codes[:5], exclude_self=False)
    for code, result in zip(codes[:5], debug.results, strict=True):
        assert result.similar_items[0]["item_cd"] == code
        assert result.similar_items[0]["similarity"] == pytest.approx(1.0, abs=1e-3)


def test_existing_routing_is_the_current_erp_routing_in_minutes(trained_model):
    codes = _codes(150)
    batch = predict_items(item_codes=codes)

    for code, result in zip(codes, batch.results, strict=True):
        current = list(RoutingOperation.objects.filter(item_cd=code).current())
        assert result.existing_routing["signature"] == [op.job_cd for op in current]
        for shown, op in zip(result.existing_routing["operations"], current, strict=True):
            assert shown["proc_seq"] == op.proc_seq
            assert shown["res_cd"] == op.res_cd
            assert shown["setup_minutes"] == pytest.approx(op.setup_time, abs=1e-3)
            assert shown["run_minutes_per_unit"] == pytest.approx(op.run_minutes_per_unit, abs=1e-3)
        assert result.matches_existing == (result.routing["signature"] == result.existing_routing["signature"])
    # The demo ERP keeps older and expired routings: the current one is really chosen among several.
    assert RoutingOperation.objects.filter(item_cd__in=codes).values("item_cd", "rout_no").distinct().count() > len(codes)


def test_item_added_to_the_erp_after_training_is_predicted_from_its_attributes(trained_model):
    template = Item.objects.filter(part_type="GLAND").exclude(outdiameter=None).first()
    Item.objects.create(
        item_cd="GLD-NEW-0001", part_type="GLAND", item_material=template.item_material, outdiameter=template.outdiameter,
        indiameter=template.indiameter, outthickness=template.outthickness, seal_type_grup=template.seal_type_grup,
    )  # fmt: skip
    result = predict_items(item_codes=["GLD-NEW-0001"]).results[0]

    assert result.status == "ok" and result.existing_routing is None
    assert result.attributes["PART_TYPE"] == "GLAND"
    assert template.item_cd in {n["item_cd"] for n in result.similar_items[:5]}
    assert all(n["attributes"]["PART_TYPE"] == "GLAND" for n in result.similar_items[:5])


def test_neighbours_carry_their_key_attributes_from_the_item_master(trained_model):
    result = predict_items(item_codes=_codes(1, part_type="SLEEVE")).results[0]
    neighbours = {n["item_cd"]: n["attributes"] for n in result.similar_items}
    for item in Item.objects.filter(item_cd__in=list(neighbours)):
        assert neighbours[item.item_cd]["PART_TYPE"] == item.part_type
        assert neighbours[item.item_cd]["ITEM_MATERIAL"] == item.item_material
        assert neighbours[item.item_cd]["OUTDIAMETER"] == item.outdiameter
    assert result.attributes["PART_TYPE"] == "SLEEVE"


def test_run_times_from_actuals_are_minutes_per_unit_of_the_neighbours_work_orders(trained_model):
    """Predicted run minutes lie inside the neighbours' actual MACH_WORKED_HOURS × 60 / ORDER_QTY for that job."""
    batch = predict_items(item_codes=_codes(10))
    checked = 0
    for result in batch.results:
        neighbours = [n["item_cd"] for n in result.similar_items]
        per_job: dict[str, list[float]] = defaultdict(list)
        for wr in WorkResult.objects.filter(item_cd__in=neighbours):
            if wr.run_minutes_per_unit is not None:
                per_job[wr.job_cd].append(wr.run_minutes_per_unit)
        for op in result.routing["operations"]:
            assert op["time_source"] in ("actuals", "model", "standard")
            if op["time_source"] != "actuals":
                continue
            observed = per_job[op["job_cd"]]
            assert op["sample_count"] > 0 and observed
            # The answer is rounded to 4 decimals.
            assert min(observed) - 1e-4 <= op["run_minutes_per_unit"] <= max(observed) + 1e-4
            assert op["run_p10"] <= op["run_minutes_per_unit"] <= op["run_p90"]
            checked += 1
    assert checked >= 10


def test_without_work_orders_times_come_from_standard_routings_and_say_so(demo_erp, tmp_path):
    """A model trained with no actuals answers with the neighbours' standard times, marked `standard`."""
    from erp.data import load_training_frames
    from training.engine import EngineConfig, train

    items, routings, actuals = load_training_frames()
    result = train(items, routings, actuals.iloc[0:0], EngineConfig(seed=0, candidates=("baseline",)))
    bundle = tmp_path / "no-actuals"
    result.model.save(bundle)
    register_bundle(bundle, "no-actuals", activate=True)

    prediction = predict_items(item_codes=_codes(5)).results
    operations = [op for r in prediction for op in r.routing["operations"]]
    assert {op["time_source"] for op in operations} == {"standard"} and {op["setup_source"] for op in operations} == {"standard"}
    standard_runs: dict[str, list[float]] = defaultdict(list)
    for op in RoutingOperation.objects.all():
        standard_runs[op.job_cd].append(op.run_minutes_per_unit)
    for op in operations:
        assert min(standard_runs[op["job_cd"]]) <= op["run_minutes_per_unit"] <= max(standard_runs[op["job_cd"]])


def test_new_item_with_missing_fields_is_predicted_from_what_is_given(trained_model):
    batch = predict_items(items=[{"PART_TYPE": "SLEEVE", "ITEM_MATERIAL": "SUS316", "OUTDIAMETER": "80"}])
    result = batch.results[0]

    assert result.status == "ok" and result.source == "attributes"
    assert result.item_cd is None and result.existing_routing is None
    assert result.attributes == {"PART_TYPE": "SLEEVE", "ITEM_MATERIAL": "SUS316", "OUTDIAMETER": 80.0}
    assert result.routing["signature"]
    part_types = [n["attributes"]["PART_TYPE"] for n in result.similar_items]
    assert part_types.count("SLEEVE") > len(part_types) / 2


def test_attribute_names_are_matched_without_case_and_unknown_ones_are_refused():
    clean, errors = clean_item_attributes({"part_type": "GLAND", "sealtypegrup": "SINGLE", "outdiameter": 60, "COLOUR": "red"})
    assert clean == {"PART_TYPE": "GLAND", "SealTypeGrup": "SINGLE", "OUTDIAMETER": 60.0}
    assert set(errors) == {"COLOUR"}


@pytest.mark.parametrize(
    ("attributes", "column", "message"),
    [
        ({"PART_TYPE": "SLEEVE", "OUTDIAMETER": "eighty"}, "OUTDIAMETER", "must be a number"),
        ({"PART_TYPE": "SLEEVE", "OUTDIAMETER": -5}, "OUTDIAMETER", "must not be negative"),
        ({"OUTDIAMETER": 50, "INDIAMETER": 60}, "INDIAMETER", "must be smaller than the outer diameter (50 mm)"),
        ({"ITEM_CD": "X-1", "PART_TYPE": ""}, "__all__", "at least one attribute"),
    ],
)
def test_invalid_new_item_attributes_are_explained(attributes, column, message):
    _, errors = clean_item_attributes(attributes)
    assert message in errors[column]


def test_one_bad_item_never_fails_the_batch(trained_model):
    good = _codes(2)
    batch = predict_items(
        item_codes=[good[0], "NO-SUCH-ITEM", good[1]], items=[{"OUTDIAMETER": 10, "INDIAMETER": 20}, {"PART_TYPE": "GLAND"}]
    )

    assert [r.status for r in batch.results] == ["ok", "error", "ok", "error", "ok"]
    assert [r.item_cd for r in batch.results[:3]] == [good[0], "NO-SUCH-ITEM", good[1]]
    missing = batch.results[1].error
    assert missing["code"] == 1002
    assert missing["message"] == "item NO-SUCH-ITEM not found in the item master"
    invalid = batch.results[3].error
    assert invalid["code"] == 400 and "INDIAMETER" in invalid["details"]
    assert (batch.ok_count, batch.error_count) == (3, 2)


def test_duplicate_codes_are_answered_in_input_order(trained_model):
    a, b = _codes(2)
    batch = predict_items(item_codes=[a, b, a])
    assert [r.item_cd for r in batch.results] == [a, b, a]
    assert batch.results[0].routing == batch.results[2].routing


def test_no_active_model_is_a_503_with_code_1002(demo_erp):
    with pytest.raises(NoActiveModel) as caught:
        predict_items(item_codes=_codes(1))
    assert caught.value.http_status == 503 and caught.value.code == 1002


def test_model_version_selects_a_ready_version_other_than_the_active_one(trained_model, tmp_path_factory):
    from tests.fixtures_model import _trained_bundle

    register_bundle(_trained_bundle(tmp_path_factory), "demo-v2")
    codes = _codes(3)

    compared = predict_items(item_codes=codes, model_version="demo-v2")
    assert compared.model_version == "demo-v2"
    assert {r.model_version for r in compared.results} == {"demo-v2"}
    assert ModelVersion.objects.get_active().label == trained_model.label
    assert predict_items(item_codes=codes).model_version == trained_model.label

    with pytest.raises(ModelNotFound) as caught:
        predict_items(item_codes=codes, model_version="no-such-version")
    assert caught.value.http_status == 404 and caught.value.code == 1002


def test_batch_over_the_limit_is_refused(trained_model, settings):
    settings.PREDICTION_BATCH_LIMIT = 5
    codes = _codes(4)
    with pytest.raises(BatchTooLarge) as caught:
        predict_items(item_codes=codes, items=[{"PART_TYPE": "SLEEVE"}, {"PART_TYPE": "GLAND"}])
    assert caught.value.http_status == 400
    assert caught.value.details == {"limit": 5, "requested": 6}
    assert predict_items(item_codes=codes, items=[{"PART_TYPE": "SLEEVE"}]).ok_count == 5


def test_empty_request_is_refused(trained_model):
    with pytest.raises(PredictionInputError):
        predict_items(item_codes=["  ", ""])


def test_queries_do_not_grow_with_the_batch(trained_model, settings, django_assert_num_queries):
    settings.MODEL_RELOAD_INTERVAL = 3600
    one, many = _codes(1), _codes(200)
    predict_items(item_codes=one)  # loads the model
    # One query each: items, their current routings, the neighbours' attributes.
    with django_assert_num_queries(3):
        predict_items(item_codes=one)
    with django_assert_num_queries(3):
        predict_items(item_codes=many)
    with django_assert_num_queries(1):
        predict_items(item_codes=many, include_context=False)


def _sample(status: str, channel: str) -> float:
    return REGISTRY.get_sample_value("routing_ml_predictions_total", {"status": status, "channel": channel}) or 0.0


def test_prometheus_counts_items_by_outcome_and_times_each_call(trained_model):
    before = {s: _sample(s, "internal") for s in ("ok", "error", "rejected")}
    calls_before = REGISTRY.get_sample_value("routing_ml_prediction_duration_seconds_count", {"channel": "internal"}) or 0.0

    predict_items(item_codes=[*_codes(3), "NOPE"])
    with pytest.raises(PredictionInputError):
        predict_items(item_codes=[])

    assert _sample("ok", "internal") - before["ok"] == 3
    assert _sample("error", "internal") - before["error"] == 1
    assert _sample("rejected", "internal") - before["rejected"] == 1
    calls = REGISTRY.get_sample_value("routing_ml_prediction_duration_seconds_count", {"channel": "internal"})
    assert calls - calls_before == 1


def test_export_rows_use_the_erp_routing_layout(trained_model):
    codes = _codes(2)
    batch = predict_items(item_codes=[*codes, "NOPE"], items=[{"PART_TYPE": "GLAND", "OUTDIAMETER": 120}])
    rows = erp_routing_rows(batch)

    ok = [r for r in batch.results if r.ok]
    assert len(rows) == sum(len(r.routing["operations"]) for r in ok)
    assert all(tuple(row) == ERP_ROUTING_COLUMNS for row in rows)
    assert {row["ITEM_CD"] for row in rows} == {*codes, "NEW-1"}
    assert {(row["TIME_UNIT"], row["RUN_TIME_QTY"], row["ROUT_NO"]) for row in rows} == {("MIN", 1, "ML")}
    first = ok[0].routing["operations"]
    mine = [row for row in rows if row["ITEM_CD"] == codes[0]]
    assert [row["JOB_CD"] for row in mine] == ok[0].routing["signature"]
    assert [row["RUN_TIME"] for row in mine] == [op["run_minutes_per_unit"] for op in first]
    assert [row["SETUP_TIME"] for row in mine] == [op["setup_minutes"] for op in first]
    assert all(row["RES_DIS"] for row in rows), "work centre names come from the ERP's routings"


def test_exported_routing_loads_into_the_erp_as_the_current_routing(trained_model, tmp_path):
    """The CSV goes through the ERP importer unchanged and becomes the item's current routing."""
    from erp.importer import import_erp_files

    code = _codes(1)[0]
    batch = predict_items(item_codes=[code])
    path = tmp_path / "routing.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=ERP_ROUTING_COLUMNS)
        writer.writeheader()
        writer.writerows(erp_routing_rows(batch))

    report = import_erp_files(routings=path)
    assert report.ok, report.errors

    predicted = batch.results[0].routing
    assert _current_signature(code) == predicted["signature"]
    current = RoutingOperation.objects.filter(item_cd=code).current()
    assert [round(op.run_minutes_per_unit, 4) for op in current] == [op["run_minutes_per_unit"] for op in predicted["operations"]]
    assert set(current.values_list("rout_no", flat=True)) == {"ML"}
