"""The plain kNN yardstick (training.engine.yardstick) on hand-made factories whose answer is known.

Only categorical attributes over four columns are used, so the cosine similarity of two items
is (matching attributes) / 4: 1, 0.75, 0.5, 0.25 or 0, exact in binary floating point.
"""

from __future__ import annotations

import pandas as pd
import pytest

from training.engine.yardstick import plain_knn, plain_knn_predictions

COLUMNS = ["ITEM_CD", "PART_TYPE", "ITEM_MATERIAL", "GROUP1", "GROUP2"]


def _items(rows):
    return pd.DataFrame(rows, columns=COLUMNS)


def _routings(spec):
    """spec: {item: [(JOB_CD, RES_CD, run standard, setup standard), ...]} in sequence order."""
    rows = []
    for item, ops in spec.items():
        for i, (job, res, run, setup) in enumerate(ops):
            rows.append((item, 10 * (i + 1), job, job.title(), res, "IN", setup, run))
    return pd.DataFrame(
        rows, columns=["ITEM_CD", "PROC_SEQ", "JOB_CD", "JOB_NM", "RES_CD", "INSIDE_FLAG", "SETUP_MINUTES", "RUN_MINUTES_PER_UNIT"]
    )


def _actuals(rows):
    """rows: (item, PROC_SEQ, JOB_CD, run minutes per unit, setup minutes)."""
    frame = pd.DataFrame(rows, columns=["ITEM_CD", "PROC_SEQ", "JOB_CD", "RUN_MINUTES_PER_UNIT", "SETUP_MINUTES"])
    frame["RES_CD"] = "R"
    frame["REPORT_DT"] = pd.Timestamp("2026-10-01")
    frame["ORDER_QTY"] = 10.0
    return frame


@pytest.fixture
def factory():
    """Cluster A grinds twice; cluster B turns and laps. H_A and H_B are held out."""
    items = _items(
        [
            ("X", "A", "STEEL", "G1", "H1"),  # similarity to H_A: 1.0
            ("Y", "A", "STEEL", "G2", "H2"),  # 0.5
            ("Z", "A", "BRZ", "G2", "H2"),  # 0.25
            *[(f"B{i}", "B", "BRONZE", "G9", "H9") for i in range(6)],  # 0 to H_A, 1.0 to H_B
            ("H_A", "A", "STEEL", "G1", "H1"),
            ("H_B", "B", "BRONZE", "G9", "H9"),
        ]
    )
    grind_twice = {
        "X": [("CUT", "SAW-1", 9.0, 9.0), ("GRIND", "G-1", 9.0, 9.0), ("GRIND", "G-9", 9.0, 9.0)],
        "Y": [("CUT", "SAW-2", 9.0, 9.0), ("GRIND", "G-2", 9.0, 9.0), ("GRIND", "G-2", 9.0, 9.0)],
        "Z": [("CUT", "SAW-2", 9.0, 9.0), ("GRIND", "G-2", 9.0, 9.0)],
    }
    turn_lap = {f"B{i}": [("TURN", "T-1", 1.0, 5.0), ("LAP", "L-1", float(i), 6.0)] for i in range(6)}
    routings = _routings(
        {**grind_twice, **turn_lap, "H_A": grind_twice["X"], "H_B": [("TURN", "T-1", 1.0, 5.0), ("LAP", "L-1", 1.0, 6.0)]}
    )
    actuals = _actuals(
        [
            ("X", 10, "CUT", 1.0, 10.0),
            ("X", 20, "GRIND", 1.0, 20.0),  # X's first grind: mean 2.0 over two work orders
            ("X", 20, "GRIND", 3.0, 20.0),
            ("X", 30, "GRIND", 10.0, 40.0),  # X's second grind
            ("Y", 10, "CUT", 4.0, 10.0),
            ("Y", 20, "GRIND", 4.0, 20.0),
            ("Y", 30, "GRIND", 20.0, 40.0),
            ("Z", 10, "CUT", 7.0, 10.0),
            ("Z", 20, "GRIND", 3.0, 20.0),
            *[(f"B{i}", 10, "TURN", 2.0 + i, 5.0) for i in range(6)],  # LAP has no actuals at all
            ("H_A", 10, "CUT", 2.0, 10.0),
            ("H_B", 10, "TURN", 4.0, 5.0),
        ]
    )
    return items, routings, actuals


def _by_item(records):
    return {r["item_cd"]: r for r in records}


def test_held_out_item_gets_its_clusters_signature_and_position_by_position_work_centres(factory):
    records, actual_routings, holdout_actuals = plain_knn_predictions(*factory, ["H_A", "H_B"])
    pred = _by_item(records)

    assert pred["H_A"]["signature"] == ["CUT", "GRIND", "GRIND"]  # X + Y (1.5) outvote Z (0.25)
    assert pred["H_B"]["signature"] == ["TURN", "LAP"]
    # X (weight 1.0) outvotes Y (0.5) at every position; Z has another signature and does not vote
    assert [op["res_cd"] for op in pred["H_A"]["operations"]] == ["SAW-1", "G-1", "G-9"]
    assert {op["inside_flag"] for op in pred["H_A"]["operations"]} == {"IN"}
    assert actual_routings == {"H_A": ["CUT", "GRIND", "GRIND"], "H_B": ["TURN", "LAP"]}
    assert sorted(holdout_actuals["ITEM_CD"]) == ["H_A", "H_B"]


def test_times_are_similarity_weighted_means_per_job_and_occurrence(factory):
    """Breaks if the mean is unweighted or if a JOB_CD's occurrences share one time."""
    pred = _by_item(plain_knn_predictions(*factory, ["H_A", "H_B"])[0])
    cut, grind1, grind2 = pred["H_A"]["operations"]

    # all k neighbours with actuals of (JOB_CD, occurrence) count, weighted by similarity 1, 0.5, 0.25
    assert cut["run_minutes_per_unit"] == pytest.approx((1.0 * 1 + 0.5 * 4 + 0.25 * 7) / 1.75)  # unweighted: 4.0
    assert grind1["run_minutes_per_unit"] == pytest.approx((1.0 * 2 + 0.5 * 4 + 0.25 * 3) / 1.75)
    assert grind2["run_minutes_per_unit"] == pytest.approx((1.0 * 10 + 0.5 * 20) / 1.5)  # Z grinds once only
    assert grind1["setup_minutes"] == pytest.approx(20.0)
    assert grind2["setup_minutes"] == pytest.approx(40.0)

    turn, lap = pred["H_B"]["operations"]
    assert turn["run_minutes_per_unit"] == pytest.approx(sum(2.0 + i for i in range(6)) / 6)  # six identical twins
    # no neighbour has LAP actuals: their standard routing times (k = 7 takes all six B items)
    assert lap["run_minutes_per_unit"] == pytest.approx(sum(range(6)) / 6)
    assert lap["setup_minutes"] == pytest.approx(6.0)


def test_given_occurrence_column_is_used_as_is(factory):
    items, routings, actuals = factory
    # Relabel every actual row as the first occurrence: X's and Y's two grinds then pool into one time.
    pooled = actuals.assign(OP_OCC=0)
    grind1, grind2 = _by_item(plain_knn_predictions(items, routings, pooled, ["H_A"])[0])["H_A"]["operations"][1:]
    assert grind1["run_minutes_per_unit"] == pytest.approx((1.0 * (1 + 3 + 10) / 3 + 0.5 * 12 + 0.25 * 3) / 1.75)
    assert grind2["run_minutes_per_unit"] == pytest.approx((1.0 * 9 + 0.5 * 9) / 1.5)  # standard times: no actuals at occurrence 1


def test_signature_tie_goes_to_the_most_similar_neighbour():
    items = _items(
        [
            ("P", "A", "STEEL", "G1", "XX"),  # 0.75
            ("Q", "A", "STEEL", "YY", "YY"),  # 0.5
            ("R", "A", "ZZ", "ZZ", "ZZ"),  # 0.25: Q + R = 0.75 ties P
            ("H", "A", "STEEL", "G1", "H1"),
        ]
    )
    routings = _routings(
        {"P": [("MILL", "M", 1.0, 1.0)], "Q": [("TURN", "T", 1.0, 1.0)], "R": [("TURN", "T", 1.0, 1.0)], "H": [("TURN", "T", 1.0, 1.0)]}
    )
    records = plain_knn_predictions(items, routings, _actuals([("P", 10, "MILL", 1.0, 1.0)]), ["H"])[0]
    assert records[0]["signature"] == ["MILL"]

    # one more TURN vote breaks the tie the other way
    items2 = pd.concat([items, _items([("S", "A", "ZZ", "ZZ", "ZZ")])], ignore_index=True)
    routings2 = pd.concat([routings, _routings({"S": [("TURN", "T", 1.0, 1.0)]})], ignore_index=True)
    records2 = plain_knn_predictions(items2, routings2, _actuals([("P", 10, "MILL", 1.0, 1.0)]), ["H"])[0]
    assert records2[0]["signature"] == ["TURN"]


def test_plain_knn_reports_the_engines_metrics_on_the_held_out_items(factory):
    scores = plain_knn(*factory, ["H_A", "H_B"])
    assert scores["items_evaluated"] == 2
    assert scores["exact_match"] == 1.0
    assert scores["process_match"] == 1.0
    assert scores["items_without_actuals"] == 0
    assert scores["mae"] is not None and scores["mae"] >= 0


# --- the benchmark command -----------------------------------------------------------------


def test_bench_profiles_prints_model_beside_plain_knn_with_a_verdict():
    import io
    import re

    from django.core.management import call_command

    out = io.StringIO()
    call_command("bench_profiles", items=1500, profiles="seal", seed=3, stdout=out)
    text = out.getvalue()

    assert "== profile seal: 1500 items, seed 3" in text
    assert re.search(r"^metric\s+\|\s+model\s+\|\s+plain kNN\s+\|\s+ratio$", text, re.M)
    rows = {}
    for name in ("process_match", "exact_match", "mae", "trim_mae", "setup_mae"):
        match = re.search(rf"^{name}\s+\|\s+([\d.]+)\s+\|\s+([\d.]+)\s+\|\s+([\d.]+)$", text, re.M)
        assert match, f"no numbers for {name}:\n{text}"
        ours, theirs, ratio = map(float, match.groups())
        assert ratio == pytest.approx(ours / theirs, abs=1e-3)
        rows[name] = (ours, theirs)
    assert 0 < rows["process_match"][1] <= 1 and 0 < rows["mae"][1]
    evaluated = re.search(r"^items_evaluated\s+\|\s+(\d+)\s+\|\s+(\d+)\s+\|", text, re.M)
    assert evaluated and int(evaluated.group(1)) == int(evaluated.group(2)) > 0  # the same held-out items
    assert re.search(r"^seconds\s+\|\s+[\d.]+\s+\|\s+[\d.]+", text, re.M)
    assert re.search(r"^(PASS|FAIL) seal: process_match [\d.]+x >= 1\.00x (ok|MISSED); .*mae [\d.]+x <= 0\.85x", text, re.M)


def test_bench_verdict_applies_the_issue_targets():
    from training.management.commands.bench_profiles import verdict

    knn = {"process_match": 0.90, "exact_match": 0.60, "mae": 2.0, "setup_mae": 4.0}
    assert verdict({"process_match": 0.90, "exact_match": 0.61, "mae": 1.70, "setup_mae": 3.60}, knn)[0] is True
    assert verdict({"process_match": 0.90, "exact_match": 0.61, "mae": 1.71, "setup_mae": 3.60}, knn)[0] is False  # mae > 0.85x
    assert verdict({"process_match": 0.89, "exact_match": 0.61, "mae": 1.0, "setup_mae": 1.0}, knn)[0] is False
    assert verdict({"process_match": 0.95, "exact_match": 0.61, "mae": 1.0, "setup_mae": 3.61}, knn)[0] is False  # setup > 0.90x
    passed, notes = verdict({"process_match": 0.95, "exact_match": 0.61, "mae": None, "setup_mae": 1.0}, knn)
    assert passed is False and "mae n/a" in notes


def test_predictions_do_not_depend_on_the_block_size(factory, monkeypatch):
    from training.engine import yardstick

    whole = plain_knn_predictions(*factory, ["H_A", "H_B"])[0]
    monkeypatch.setattr(yardstick, "CHUNK_CELLS", 1)  # one held-out item per block
    assert plain_knn_predictions(*factory, ["H_A", "H_B"])[0] == whole
