"""The engine learns each factory: operations keyed by their place, the settings search, the routing
classifier candidate, the monitoring set, and the maths behind drift and the improvement rules.

Every test here is built so that a wrong formula turns it red (see each docstring).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from erp.frames import latest_per_operation
from training.engine import EngineConfig, drift, metrics, train
from training.engine.pipeline import learned_candidates, monitoring_size, select_routing, stratified_rows
from training.engine.search import TIME_TERM, gain_weights, information_gain, objective
from training.engine.tables import assign_occurrences, build_tables, occurrence_rank, sequence_occurrences

# --- a factory where one item grinds twice, with very different times -------------------------------


def twice_ground_factory(n: int = 120, seed: int = 3):
    """Every item: TURN, GRIND (2 min/unit), INSPECT, GRIND (10 min/unit), with work results per operation."""
    rng = np.random.default_rng(seed)
    codes = [f"TG{i:04d}" for i in range(n)]
    items = pd.DataFrame({"ITEM_CD": codes, "PART_TYPE": "SHAFT", "ITEM_MATERIAL": "STEEL", "OUTDIAMETER": rng.uniform(40, 60, n)})
    seq = [(10, "TURN", 3.0, 5.0), (20, "GRIND", 2.0, 4.0), (30, "INSPECT", 0.5, 1.0), (40, "GRIND", 10.0, 20.0)]
    routings = pd.DataFrame(
        [
            {"ITEM_CD": c, "PROC_SEQ": s, "JOB_CD": j, "JOB_NM": j.title(), "RES_CD": f"R-{j}", "INSIDE_FLAG": "IN", "SETUP_MINUTES": setup, "RUN_MINUTES_PER_UNIT": run}
            for c in codes
            for s, j, run, setup in seq
        ]
    )
    rows = []
    for c in codes:
        for s, j, run, setup in seq:
            for k in range(4):
                rows.append(
                    {
                        "ITEM_CD": c, "PROC_SEQ": s, "JOB_CD": j, "RES_CD": f"R-{j}",
                        "REPORT_DT": pd.Timestamp("2026-01-01") + pd.Timedelta(days=k),
                        "ORDER_QTY": 10.0, "SETUP_MINUTES": setup, "RUN_MINUTES_PER_UNIT": run * rng.uniform(0.98, 1.02),
                    }
                )  # fmt: skip
    return items, routings, pd.DataFrame(rows)


def test_occurrence_rank_counts_earlier_equal_keys():
    assert occurrence_rank(np.array([5, 7, 5, 5, 7, 1])).tolist() == [0, 0, 1, 2, 1, 0]
    assert sequence_occurrences(np.array([0, 4, 6]), np.array([1, 2, 1, 1, 1, 1])).tolist() == [0, 0, 1, 2, 0, 1]


def test_work_results_are_placed_on_their_operation_by_sequence():
    routings = pd.DataFrame({"ITEM_CD": ["A"] * 4 + ["B"], "PROC_SEQ": [10, 20, 30, 40, 10], "JOB_CD": ["TURN", "GRIND", "INSPECT", "GRIND", "GRIND"]})
    actuals = pd.DataFrame(
        {
            "ITEM_CD": ["A", "A", "A", "A", "B", "B"],
            "PROC_SEQ": [20, 40, 99, 10, 77, np.nan],
            "JOB_CD": ["GRIND", "GRIND", "GRIND", "TURN", "GRIND", "GRIND"],
        }
    )
    placed = assign_occurrences(actuals, routings)["OP_OCC"].tolist()
    # A's second GRIND is occurrence 1; an unknown sequence of a job A does twice cannot be placed (-1);
    # B grinds once, so any of its GRIND rows is that operation.
    assert placed == [0, 1, -1, 0, 0, 0]


def test_an_item_that_grinds_twice_keeps_two_different_times():
    """Keyed by (item, JOB_CD), both GRIND operations would get the mean of 2 and 10 minutes (~6)."""
    items, routings, actuals = twice_ground_factory()
    vocab, index = build_tables(np.asarray(sorted(items["ITEM_CD"])), routings, actuals)
    assert vocab.n_occ == 2
    result = train(items, routings, actuals, EngineConfig(candidates=("baseline",), search=False, routing_candidates=("vote",)))
    new_item = {"ITEM_CD": "NEW-1", "PART_TYPE": "SHAFT", "ITEM_MATERIAL": "STEEL", "OUTDIAMETER": 50.0}
    ops = result.model.predict([new_item])[0]["operations"]
    assert [op["job_cd"] for op in ops] == ["TURN", "GRIND", "INSPECT", "GRIND"]
    assert ops[1]["run_minutes_per_unit"] == pytest.approx(2.0, rel=0.05)
    assert ops[3]["run_minutes_per_unit"] == pytest.approx(10.0, rel=0.05)
    assert ops[1]["setup_minutes"] == pytest.approx(4.0, rel=0.05) and ops[3]["setup_minutes"] == pytest.approx(20.0, rel=0.05)
    # The held-out metric compares each GRIND with its own work orders: near-perfect times.
    assert result.metrics["mae"] < 0.2


def test_metrics_compare_each_occurrence_with_its_own_work_orders():
    predictions = [{"item_cd": "A", "operations": [{"job_cd": "GRIND", "run_minutes_per_unit": 2.0}, {"job_cd": "GRIND", "run_minutes_per_unit": 10.0}]}]
    actuals = pd.DataFrame(
        {"ITEM_CD": ["A", "A"], "JOB_CD": ["GRIND", "GRIND"], "OP_OCC": [0, 1], "RUN_MINUTES_PER_UNIT": [2.0, 10.0], "SETUP_MINUTES": [1.0, 1.0]}
    )
    assert metrics.evaluate(predictions, {"A": ["GRIND", "GRIND"]}, actuals)["mae"] == pytest.approx(0.0)


def test_the_last_orders_are_kept_per_operation_not_per_job_code():
    _, routings, actuals = twice_ground_factory(n=2)
    placed = assign_occurrences(actuals, routings)
    kept = latest_per_operation(placed, 3)
    per_operation = kept.groupby(["ITEM_CD", "JOB_CD", "OP_OCC"]).size()
    assert (per_operation == 3).all() and len(per_operation) == 2 * 4  # both GRINDs keep three orders each


def test_padded_codes_and_missing_sequences_are_placed_like_clean_ones():
    routings = pd.DataFrame({"ITEM_CD": ["A", "A", "A"], "PROC_SEQ": [20, 10, 30], "JOB_CD": [" GRIND", "TURN ", "GRIND"]})
    actuals = pd.DataFrame(
        {"ITEM_CD": ["A", "A", "A", "A", "Z"], "PROC_SEQ": [10, 20, 30, np.nan, 10], "JOB_CD": ["TURN", "GRIND ", "GRIND", "TURN", "TURN"]}
    )
    # Routing order is by sequence (10 TURN, 20 GRIND, 30 GRIND) whatever the row order; an unknown item is -1.
    assert assign_occurrences(actuals, routings)["OP_OCC"].tolist() == [0, 0, 1, 0, -1]


def test_the_newest_orders_win_undated_ones_come_last_and_ties_keep_their_order():
    day = pd.Timestamp("2026-03-01")
    actuals = pd.DataFrame(
        {
            "ITEM_CD": ["A"] * 5 + ["B"],
            "JOB_CD": ["GRIND"] * 6,
            "OP_OCC": [0] * 6,
            "REPORT_DT": [pd.NaT, day, day + pd.Timedelta(days=2), day, day - pd.Timedelta(days=9), pd.NaT],
            "RUN_MINUTES_PER_UNIT": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        },
        index=[50, 40, 30, 20, 10, 0],  # not in order: the result keeps the frame's index order
    )
    kept = latest_per_operation(actuals, 2)
    # A: the newest (3.0), then the first of the two tied on `day` (2.0); B's only row is kept though undated.
    assert kept["RUN_MINUTES_PER_UNIT"].tolist() == [6.0, 3.0, 2.0]
    assert latest_per_operation(actuals, 5)["RUN_MINUTES_PER_UNIT"].tolist() == [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]



def _latest_by_hand(actuals: pd.DataFrame, keep: int) -> set:
    """The rule, one operation at a time: undated rows last, newest first, ties in frame order."""
    kept = set()
    for _, rows in actuals.reset_index(names="label").assign(pos=range(len(actuals))).groupby(["ITEM_CD", "JOB_CD", "OP_OCC"]):
        dated = rows["REPORT_DT"].notna()
        ranked = rows.assign(undated=~dated, newest=-rows["REPORT_DT"].where(dated, pd.Timestamp(0)).astype("int64"))
        kept.update(ranked.sort_values(["undated", "newest", "pos"])["label"].head(keep))
    return kept


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_newest_orders_are_kept_alike_from_the_canonical_order_and_from_any_other(seed):
    rng = np.random.default_rng(seed)
    n = 3000
    actuals = pd.DataFrame(
        {
            "ITEM_CD": rng.integers(0, 60, n).astype(str),
            "JOB_CD": rng.choice(["GRIND", "TURN", "MILL"], n),
            "OP_OCC": rng.integers(0, 2, n),
            "REPORT_DT": pd.to_datetime(rng.integers(0, 12, n), unit="D", origin="2026-01-01"),  # many ties
        }
    )
    actuals.loc[rng.random(n) < 0.05, "REPORT_DT"] = pd.NaT
    # The ERP snapshot's order (by item, then time; undated first) takes the one-sort path; a shuffle the other.
    canonical = actuals.sort_values(["ITEM_CD", "REPORT_DT"], kind="stable", na_position="first")
    for frame in (canonical, actuals):
        for keep in (1, 3):
            kept = latest_per_operation(frame, keep)
            assert set(kept.index) == _latest_by_hand(frame, keep)
            assert kept.index.is_monotonic_increasing

# --- drift, the cut-off rule ------------------------------------------------------------------------


def test_psi_matches_a_hand_computed_case():
    # (0.25 - 0.5) ln(0.25/0.5) + (0.75 - 0.5) ln(0.75/0.5) = 0.17329 + 0.10137
    assert drift.psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.274653, abs=1e-6)
    reference = drift.profile(pd.DataFrame({"PART_TYPE": ["A"] * 50 + ["B"] * 50}), numeric=[], categorical=["PART_TYPE"])
    now = pd.DataFrame({"PART_TYPE": ["A"] * 25 + ["B"] * 75})
    assert drift.compare(reference, now)["PART_TYPE"] == pytest.approx(0.2747, abs=1e-4)
    assert drift.compare(reference, pd.DataFrame({"PART_TYPE": ["A"] * 50 + ["B"] * 50}))["PART_TYPE"] == pytest.approx(0.0)


# --- the search and the data-driven weights ---------------------------------------------------------


def test_information_gain_ignores_values_seen_once():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 4000)
    assert information_gain(y, y) > 1.2  # the label itself: ~ln 4 = 1.386
    assert information_gain(np.arange(4000), y) == pytest.approx(0.0, abs=1e-9)  # a code per item: nothing
    assert information_gain(rng.integers(0, 3, 4000), y) < 0.01


def group_decides_factory(n: int = 1500, seed: int = 2):
    """GROUP2 decides the routing; PART_TYPE (weighted 2.0 by the seal defaults), material and GROUP1 are
    noise with enough values that an item's best matches on them rarely share its GROUP2."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["G1", "G2", "G3", "G4"], n)
    routes = {"G1": ["SAW", "TURN", "QC"], "G2": ["SAW", "MILL", "QC"], "G3": ["LASER", "BEND", "WELD", "QC"], "G4": ["LASER", "BEND", "PAINT", "QC"]}
    codes = [f"GD{i:05d}" for i in range(n)]
    items = pd.DataFrame(
        {
            "ITEM_CD": codes, "PART_TYPE": rng.choice([f"P{i}" for i in range(30)], n), "ITEM_MATERIAL": rng.choice([f"M{i}" for i in range(12)], n),
            "GROUP1": rng.choice([f"X{i}" for i in range(12)], n), "GROUP2": group, "OUTDIAMETER": rng.uniform(10, 300, n),
        }
    )  # fmt: skip
    rows, actual_rows = [], []
    for code, g, od in zip(codes, group, items["OUTDIAMETER"], strict=True):
        for i, job in enumerate(routes[g]):
            run = 0.05 * od * (i + 1)
            rows.append({"ITEM_CD": code, "PROC_SEQ": 10 * (i + 1), "JOB_CD": job, "JOB_NM": job, "RES_CD": "R" + job, "INSIDE_FLAG": "IN", "SETUP_MINUTES": 10.0, "RUN_MINUTES_PER_UNIT": run})
            actual_rows.append({"ITEM_CD": code, "PROC_SEQ": 10 * (i + 1), "JOB_CD": job, "RES_CD": "R" + job, "REPORT_DT": pd.Timestamp("2026-03-01"), "ORDER_QTY": 5.0, "SETUP_MINUTES": 10.0, "RUN_MINUTES_PER_UNIT": run})
    return items, pd.DataFrame(rows), pd.DataFrame(actual_rows)


def test_the_search_finds_the_attribute_that_decides_the_routing_and_records_every_trial():
    items, routings, actuals = group_decides_factory()
    result = train(items, routings, actuals, EngineConfig(candidates=("baseline",), routing_candidates=("vote",)))
    search = result.metrics["search"]
    chosen = search["chosen"]
    weights = chosen["feature_weights"]
    assert weights["GROUP2"] == max(weights.values())
    assert weights["PART_TYPE"] < 0.5 * weights["GROUP2"] and weights["GROUP1"] < 0.5 * weights["GROUP2"]
    assert search["information_gain"]["GROUP2"] > 10 * search["information_gain"]["PART_TYPE"]
    assert result.metrics["exact_match"] > 0.97
    tried = {(t["k"], t["weighting"], t["size_transform"], t["embedding"]) for t in search["trials"]}
    assert {t[0] for t in tried} >= {5, 10, 20, 40} and {"configured", "uniform", "gain"} <= {t[1] for t in tried}
    assert {"log", "linear"} <= {t[2] for t in tried}
    assert all(t["process_match"] is not None and t["objective"] is not None for t in search["trials"])
    # The served model uses the chosen settings.
    assert result.model.config.top_k == chosen["k"] and result.model.config.size_transform == chosen["size_transform"]
    # The configured (seal) weights would have done worse on this factory.
    configured = [t for t in search["trials"] if t["weighting"] == "configured"]
    assert max(t["exact_match"] for t in configured) < result.metrics["exact_match"]


def test_the_search_objective_weighs_the_setup_times_it_ships_as_much_as_the_run_times():
    """A prediction ships a run and a setup time: settings whose neighbours give 10 % better times on both are
    worth TIME_TERM / 0.01 points of match, half of it for each. Scoring run times only (as before) chose, on an
    8,000-item factory, neighbours five points of exact match worse than a plain kNN's for their run times alone."""
    reference = {"trim_mae": 2.0, "setup_mae": 10.0}
    base = {"process_match": 0.9, "exact_match": 0.7, "trim_mae": 2.0, "setup_mae": 10.0}
    at_base = objective(base, reference)
    assert at_base == pytest.approx(0.8)
    better_setup = objective({**base, "setup_mae": 10.0 / 1.1}, reference)
    better_run = objective({**base, "trim_mae": 2.0 / 1.1}, reference)
    assert better_setup - at_base == pytest.approx(TIME_TERM / 2) and better_run - at_base == pytest.approx(TIME_TERM / 2)
    assert objective({**base, "trim_mae": 2.0 / 1.1, "setup_mae": 10.0 / 1.1}, reference) - at_base == pytest.approx(TIME_TERM)
    # A time the trial could not score (no actuals) neither rewards nor penalises it.
    assert objective({**base, "setup_mae": None}, reference) == pytest.approx(at_base)


def test_a_small_factory_also_tries_stacking_where_boost_is_a_candidate():
    """Up to `stacking_up_to_items` items with actual times, "boost" brings "stacking" along; never where learned
    times were not asked for, nor past the size, nor when switched off (0)."""
    config = EngineConfig(candidates=("baseline", "boost"))
    assert learned_candidates(config, 5_000) == ["boost", "stacking"]
    assert learned_candidates(config, config.stacking_up_to_items) == ["boost", "stacking"]
    assert learned_candidates(config, config.stacking_up_to_items + 1) == ["boost"]
    assert learned_candidates(config.replace(stacking_up_to_items=0), 5_000) == ["boost"]
    assert learned_candidates(config.replace(candidates=("baseline",)), 5_000) == []
    assert learned_candidates(config.replace(candidates=("baseline", "mlp")), 5_000) == ["mlp"]
    assert learned_candidates(config.replace(candidates=("baseline", "stacking", "boost")), 5_000) == ["stacking", "boost"]
    with pytest.raises(ValueError, match="stacking_up_to_items"):
        EngineConfig(stacking_up_to_items=-1)
    # Through training: the small factory's version scores stacking beside boost, and ships whichever wins.
    items, routings, actuals = group_decides_factory(n=600)
    config = config.replace(routing_candidates=("vote",), search=False)
    tried = train(items, routings, actuals, config)
    assert {"baseline", "boost", "stacking"} <= set(tried.candidate_scores)
    assert tried.selected in tried.candidate_scores and tried.selected_setup in tried.candidate_scores
    off = train(items, routings, actuals, config.replace(stacking_up_to_items=0))
    assert "stacking" not in off.candidate_scores
    # The smallest factories that hold items out at all (a dozen items) still train with it.
    tiny = train(*twice_ground_factory(n=12), EngineConfig(candidates=("baseline", "boost")))
    assert {"baseline", "boost", "stacking"} <= set(tiny.candidate_scores)


def test_explicit_weights_from_an_admin_stay_an_override():
    items, routings, actuals = group_decides_factory(n=600)
    config = EngineConfig(candidates=("baseline",), routing_candidates=("vote",)).with_weights({"PART_TYPE": 3.0}).replace(fixed_weights=True)
    result = train(items, routings, actuals, config)
    chosen = result.metrics["search"]["chosen"]
    assert chosen["weighting"] == "configured" and chosen["feature_weights"]["PART_TYPE"] == 3.0
    assert {t["weighting"] for t in result.metrics["search"]["trials"]} == {"configured"}


def test_gain_weights_keep_switched_off_features_off():
    config = EngineConfig()
    weighted = gain_weights(config, {"PART_TYPE": 1.0, "GROUP1": 0.5, "DRAW_NO": 9.0}, 1.0).feature_weights()
    assert weighted["DRAW_NO"] == 0.0 and weighted["PART_TYPE"] == 1.0 and weighted["GROUP1"] == pytest.approx(0.5)


# --- the routing classifier and the monitoring set ----------------------------------------------------


def test_the_routing_classifier_replaces_the_vote_only_by_the_improvement_rule():
    vote = {"exact_match": 0.80, "process_match": 0.95}
    assert select_routing({"vote": vote, "classifier": {"exact_match": 0.805, "process_match": 0.96}}, 5.0) == "vote"  # 2.5 % fewer errors
    assert select_routing({"vote": vote, "classifier": {"exact_match": 0.82, "process_match": 0.96}}, 5.0) == "classifier"  # 10 % fewer
    assert select_routing({"vote": vote, "classifier": {"exact_match": 0.82, "process_match": 0.94}}, 5.0) == "vote"  # process match worse
    assert select_routing({"vote": vote}, 5.0) == "vote"


def test_monitoring_items_are_stratified_and_never_in_a_learned_fit():
    groups = np.array(["A"] * 800 + ["B"] * 200)
    rows = stratified_rows(groups, 200, np.random.default_rng(0))
    assert rows.size == 200 and abs((groups[rows] == "A").sum() - 160) <= 2
    assert monitoring_size(1000, EngineConfig()) == 500 and monitoring_size(100_000, EngineConfig()) == 20_000

    items, routings, actuals = group_decides_factory(n=1200)
    result = train(items, routings, actuals, EngineConfig(candidates=("baseline", "mlp"), min_improvement_pct=-100, search=False))
    model = result.model
    assert model.selected == "mlp" and len(model.fit_codes) > 0 and len(model.monitoring_codes) == result.dataset_stats["monitoring_items"]
    assert not set(model.fit_codes.tolist()) & set(model.monitoring_codes.tolist())
    assert set(result.holdout_items) <= set(model.monitoring_codes.tolist())


# --- the "boost" time estimator learns per-operation size laws --------------------------------------


def test_boost_learns_each_operations_size_law_that_the_neighbours_miss():
    """Run time = a_op x length^b_op, with its own slope per operation; the neighbour baseline is blurred.

    The per-operation linear stage recovers each law in log space; a few boosting rounds on the residual
    of one shared slope do not: forcing the shared fit (shrink=1e9) turns this red (median error 0.12).
    """
    from training.engine.times import ResidualBoost, TimeFeatures, TimeModel, numeric_attributes

    rng = np.random.default_rng(7)
    n = 3000
    features = TimeFeatures(dim=2, job_counts=np.array([n // 2, n // 2]), res_counts=np.array([n]), n_numeric=1)
    job = rng.integers(0, 2, n)
    length = rng.uniform(10, 2000, n)
    slope, scale = np.array([1.0, 0.3]), np.array([0.002, 0.5])
    minutes = scale[job] * length ** slope[job]
    # The neighbours' answer: the right operation, a size two to five times off.
    blurred = scale[job] * (length * rng.uniform(0.2, 5.0, n)) ** slope[job]
    numeric = numeric_attributes(pd.DataFrame({"L": length}), ("L",))
    x = features.build(rng.standard_normal((n, 2)).astype(np.float32), job, np.zeros(n, np.int64), blurred, blurred, numeric)
    y = np.log1p(minutes)
    train_rows, test_rows = np.arange(2000), np.arange(2000, n)
    boost = ResidualBoost(features.code_columns[0], tuple(range(features.baseline_column, features.width)), max_iter=10).fit(x[train_rows], y[train_rows])
    model = TimeModel("boost", features, boost)
    predicted = np.expm1(model.predict_log(x[test_rows]))
    error = np.abs(predicted - minutes[test_rows]) / minutes[test_rows]
    baseline_error = np.abs(blurred[test_rows] - minutes[test_rows]) / minutes[test_rows]
    assert np.median(error) < 0.05 < 0.5 < np.median(baseline_error)
    assert boost.coef_.shape[0] == 2  # one linear model per JOB_CD code
