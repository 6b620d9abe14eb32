"""The demo ERP generator (`erp.generator`, every profile) and the `seed_demo_erp` command."""

from __future__ import annotations

import hashlib
from datetime import date
from io import StringIO

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from erp import data
from erp.factories import fabrication, jobshop
from erp.frames import actuals_from_work_results, current_routings
from erp.generator import DEFAULT_TODAY, DRIFT_RUN_FACTOR_BY_RES, PROFILES, generate
from erp.models import Item, RoutingOperation, WorkResult

# Database-facing: run again on PostgreSQL by `make test` (see the Makefile).
pytestmark = pytest.mark.postgres

N = 20_000


@pytest.fixture(scope="module")
def factory():
    return generate(N, seed=7)


@pytest.fixture(scope="module")
def current(factory):
    return current_routings(factory[1], when=DEFAULT_TODAY)


def test_same_seed_gives_identical_frames():
    first, second = generate(1500, seed=3), generate(1500, seed=3)
    for a, b in zip(first, second, strict=True):
        pd.testing.assert_frame_equal(a, b)


def test_different_seed_gives_different_frames():
    a_items, a_rout, a_wr = generate(1500, seed=3)
    b_items, b_rout, b_wr = generate(1500, seed=4)
    assert not a_items["PART_TYPE"].equals(b_items["PART_TYPE"])
    assert len(a_rout) != len(b_rout) or not a_rout["JOB_CD"].equals(b_rout["JOB_CD"])
    assert len(a_wr) != len(b_wr)


def test_columns_are_exactly_the_erp_view_columns(factory):
    items, routings, work_results = factory
    assert list(items.columns) == data.columns_of(Item)
    assert list(routings.columns) == data.columns_of(RoutingOperation)
    assert list(work_results.columns) == data.columns_of(WorkResult)


def test_item_master_is_a_seal_factory_with_some_empty_columns(factory):
    items = factory[0]
    assert items["ITEM_CD"].is_unique and len(items) == N
    assert {"SLEEVE", "GLAND", "SEAL_RING", "SEAT", "RETAINER", "SPRING"} <= set(items["PART_TYPE"])
    assert {"SUS316", "SIC", "CARBON", "TC", "HASTELLOY"} <= set(items["ITEM_MATERIAL"].dropna())
    assert 0.01 < items["ITEM_MATERIAL"].isna().mean() < 0.05
    assert 0.05 < items["INDIAMETER"].isna().mean() < 0.12
    assert items["OUTDIAMETER"].dropna().between(8, 600).all()


def test_about_five_and_a_half_routing_rows_per_item(factory, current):
    items, routings, _ = factory
    assert 5.1 < len(routings) / len(items) < 5.8
    assert 4.5 < current.groupby("ITEM_CD").size().mean() < 5.3
    assert current["ITEM_CD"].nunique() == N  # every item has a current routing


def test_about_ten_percent_of_items_have_older_routings(factory):
    routings = factory[1]
    several = routings.groupby("ITEM_CD")["ROUT_NO"].nunique() > 1
    assert 0.07 < several.mean() < 0.13
    assert routings["VALID_TO_DT"].notna().any()  # some older routings expired


def test_current_routing_is_not_always_the_highest_rout_no(factory, current):
    routings = factory[1]
    highest = routings.groupby("ITEM_CD")["ROUT_NO"].max()
    chosen = current_routings(routings, when=DEFAULT_TODAY)
    withdrawn = routings[routings["VALID_TO_DT"].notna() & (routings["ROUT_NO"] == routings["ITEM_CD"].map(highest))]
    assert len(withdrawn) > 0  # a newest revision was withdrawn: the current one is older
    item = withdrawn["ITEM_CD"].iloc[0]
    cur_rout = routings.merge(chosen[chosen["ITEM_CD"] == item][["ITEM_CD", "PROC_SEQ", "JOB_CD"]])
    assert item in set(chosen["ITEM_CD"])
    assert len(cur_rout) > 0


def test_outsourced_operations_are_heat_treatment_coating_or_vendor_machining(factory):
    routings = factory[1]
    out = routings[routings["INSIDE_FLAG"] == "OUT"]
    assert 0.02 < len(out) / len(routings) < 0.15
    assert set(out["JOB_CD"]) <= {"HEAT", "COAT", "TURN", "MILL"}
    assert out["RES_CD"].str.startswith("V-").all()
    assert set(routings["INSIDE_FLAG"]) == {"IN", "OUT"}
    assert (routings["TIME_UNIT"] == "MIN").all()


def test_run_time_quantity_is_mostly_one(factory):
    qty = factory[1]["RUN_TIME_QTY"]
    assert (qty == 1).mean() > 0.8
    assert set(qty.unique()) <= {1.0, 10.0, 100.0} and (qty == 10).any()


def test_routings_follow_learnable_rules(factory, current):
    items = factory[0].set_index("ITEM_CD")
    ops = current.assign(
        MAT=current["ITEM_CD"].map(items["ITEM_MATERIAL"]),
        OD=current["ITEM_CD"].map(items["OUTDIAMETER"]),
        FAM=current["ITEM_CD"].map(items["PART_TYPE"]),
        STD=current["ITEM_CD"].map(items["STANDARD_YN"]),
    )
    has = ops.groupby("ITEM_CD")["JOB_CD"].agg(set)
    sic = items.index[(items["ITEM_MATERIAL"] == "SIC")]
    assert np.mean(["LAP" in has[i] for i in sic]) > 0.9  # silicon carbide is lapped
    coated = items.index[(items["PART_TYPE"] == "SLEEVE") & (items["GROUP2"] == "COATED")]
    assert np.mean(["COAT" in has[i] for i in coated]) > 0.9
    packed = ops[ops["JOB_CD"] == "PACK"]["STD"]
    assert (packed == "Y").all()  # only standard items are packed
    turning = ops[(ops["JOB_CD"] == "TURN") & (ops["INSIDE_FLAG"] == "IN")]
    small = turning[turning["OD"] < 50]["RES_CD"]
    large = turning[turning["OD"] >= 150]["RES_CD"]
    assert small.str.startswith("LT-S").all() and large.eq("LT-L01").all()  # size picks the lathe


def test_a_few_items_deviate_from_what_their_attributes_predict(factory, current):
    """~7 % of items get one extra or one missing step: irreducible noise a model cannot learn."""
    items = factory[0].set_index("ITEM_CD")
    seqs = current.groupby("ITEM_CD")["JOB_CD"].agg(tuple)
    rule_inputs = ["PART_TYPE", "ITEM_MATERIAL", "GROUP1", "GROUP2", "STANDARD_YN", "RAW_MATL_KIND", "SealTypeGrup", "OUTDIAMETER"]
    attrs = items.loc[seqs.index, rule_inputs]
    complete = attrs.notna().all(axis=1)  # blanked attributes would hide the rule's inputs
    attrs, seqs = attrs[complete].assign(OUTDIAMETER=attrs["OUTDIAMETER"] >= 150).astype(str), seqs[complete]
    typical = seqs.groupby([attrs[c] for c in rule_inputs]).agg(lambda s: s.value_counts().index[0])
    deviating = seqs != typical.reindex(pd.MultiIndex.from_frame(attrs)).to_numpy()
    assert 0.04 < deviating.mean() < 0.10


def test_sixty_percent_of_items_were_produced_with_several_orders(factory):
    items, _, work_results = factory
    produced = work_results["ITEM_CD"].nunique() / len(items)
    assert 0.55 < produced < 0.67
    assert 8 < len(work_results) / len(items) < 10.5
    assert (work_results["ORDER_QTY"] >= 1).all() and (work_results["ORDER_QTY"] % 1 == 0).all()
    span = work_results["REPORT_DT"].max() - work_results["REPORT_DT"].min()
    assert pd.Timedelta(days=650) < span < pd.Timedelta(days=760)
    assert work_results["REPORT_DT"].max() < pd.Timestamp(DEFAULT_TODAY)


def test_actual_times_track_standard_times_with_noise(factory, current):
    actuals = actuals_from_work_results(factory[2])
    merged = actuals.merge(
        current[["ITEM_CD", "PROC_SEQ", "JOB_CD", "RUN_MINUTES_PER_UNIT"]], on=["ITEM_CD", "PROC_SEQ", "JOB_CD"], suffixes=("", "_STD")
    )
    ratio = merged["RUN_MINUTES_PER_UNIT"] / merged["RUN_MINUTES_PER_UNIT_STD"]
    assert 0.8 < ratio.median() < 1.25
    assert 0.1 < np.log(ratio).std() < 0.5  # noisy, but not wildly
    by_res = merged.assign(LR=np.log(ratio)).groupby("RES_CD")["LR"].median()
    assert by_res.max() - by_res.min() > 0.15  # work centres differ from the standard in their own way


def test_drift_makes_post_drift_actuals_slower_and_changes_nothing_else():
    drift = date(2026, 5, 1)
    _, rout_a, wr_a = generate(8000, seed=11)
    _, rout_b, wr_b = generate(8000, seed=11, drift_from=drift)
    pd.testing.assert_frame_equal(rout_a, rout_b)
    pd.testing.assert_frame_equal(
        wr_a.drop(columns=["SETUP_HOURS", "MACH_WORKED_HOURS"]), wr_b.drop(columns=["SETUP_HOURS", "MACH_WORKED_HOURS"])
    )
    after = (wr_a["REPORT_DT"] >= pd.Timestamp(drift)).to_numpy()
    drifted_res = wr_a["RES_CD"].isin(DRIFT_RUN_FACTOR_BY_RES).to_numpy()
    ratio = (wr_b["MACH_WORKED_HOURS"] / wr_a["MACH_WORKED_HOURS"]).to_numpy()
    assert np.nanmedian(ratio[after & drifted_res]) > 1.5
    assert np.allclose(ratio[~after & ~np.isnan(ratio)], 1.0)


def test_generate_rejects_no_items():
    with pytest.raises(ValueError):
        generate(0)


# --------------------------------------------------------------------------- every profile
def _fingerprint(frames) -> str:
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def test_seal_profile_is_the_default_and_its_output_is_unchanged():
    """Fingerprint of the seal factory before profiles existed (commit c936efe, 700 items, seed 3)."""
    frames = generate(700, seed=3, profile="seal")
    assert _fingerprint(frames) == "d20f677451836a7512316b7d02c5e0704d309ebda0bcac59895822b61410818e"
    assert _fingerprint(generate(700, seed=3)) == _fingerprint(frames)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_profile_has_exactly_the_erp_columns_and_is_deterministic(profile):
    first = generate(900, seed=5, profile=profile)
    again = generate(900, seed=5, profile=profile)
    other = generate(900, seed=6, profile=profile)
    items, routings, work_results = first
    assert list(items.columns) == data.columns_of(Item)
    assert list(routings.columns) == data.columns_of(RoutingOperation)
    assert list(work_results.columns) == data.columns_of(WorkResult)
    for frame, seal_frame in zip(first, generate(50, seed=5), strict=True):  # the same dtypes as the seal factory
        assert frame.dtypes.to_dict() == seal_frame.dtypes.to_dict()
    for a, b in zip(first, again, strict=True):
        pd.testing.assert_frame_equal(a, b)
    assert len(other[1]) != len(routings) or not other[1]["JOB_CD"].equals(routings["JOB_CD"])
    assert items["ITEM_CD"].is_unique and len(items) == 900
    assert routings["PROC_SEQ"].dtype == np.int64 and work_results["PROC_SEQ"].dtype == np.int64
    assert set(routings["TIME_UNIT"]) == {"MIN"}


def test_profiles_have_their_own_item_code_prefixes():
    prefixes = {p: set(generate(600, seed=1, profile=p)[0]["ITEM_CD"].str.split("-").str[0]) for p in PROFILES}
    assert prefixes["jobshop"] == {"JS"} and prefixes["fabrication"] == {"FB"}
    for a in PROFILES:
        for b in PROFILES:
            assert a == b or not prefixes[a] & prefixes[b], (a, b)


def test_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="unknown profile 'foundry'.*seal, jobshop, fabrication"):
        generate(10, profile="foundry")


# --------------------------------------------------------------------------- jobshop
JS_N = 16_000
RULE_INPUTS = ["PART_TYPE", "ITEM_MATERIAL", "GROUP1", "GROUP2", "ITEM_GRP1", "RAW_MATL_KIND"]


@pytest.fixture(scope="module")
def shop():
    return generate(JS_N, seed=7, profile="jobshop")


@pytest.fixture(scope="module")
def shop_current(shop):
    return current_routings(shop[1], when=DEFAULT_TODAY)


@pytest.fixture(scope="module")
def shop_signatures(shop, shop_current):
    """(attributes of items whose rule inputs are all filled, their current JOB_CD sequence)."""
    items = shop[0].set_index("ITEM_CD")
    sig = shop_current.groupby("ITEM_CD")["JOB_CD"].agg(" ".join)
    attrs = items.loc[sig.index]
    complete = attrs[RULE_INPUTS].notna().all(axis=1)
    return attrs[complete], sig[complete]


def _modal_share(sig: pd.Series, attrs: pd.DataFrame, columns: list[str]) -> float:
    key = attrs[columns].astype(str).agg("|".join, axis=1)
    modal = sig.groupby(key).agg(lambda s: s.value_counts().index[0])
    return float((sig == key.map(modal)).mean())


def test_jobshop_is_a_machining_shop_with_its_own_families_and_work_centres(shop, shop_current):
    items, routings, _ = shop
    assert {"SHAFT", "FLANGE", "HOUSING", "BRACKET", "BUSHING", "GEAR", "PIN"} <= set(items["PART_TYPE"])
    assert {"42CrMo4", "16MnCr5", "1.4404", "EN AW-6082", "POM-C"} <= set(items["ITEM_MATERIAL"].dropna())
    assert set(items["GROUP1"].dropna()) == {"ISO 2768-m", "ISO 2768-f", "IT7", "IT6"}
    assert {"HOB", "EDM", "HONE", "NITRIDE", "ANODISE", "GRIND", "TURN", "MILL"} <= set(routings["JOB_CD"])
    assert not {"LAP", "COIL", "PACK"} & set(routings["JOB_CD"])  # not the seal factory's operations
    assert shop_current["RES_CD"].nunique() >= 30
    assert 4.5 < shop_current.groupby("ITEM_CD").size().mean() < 8.5
    # the seal-only columns are (almost) empty; some attributes are missing
    assert items["SealTypeGrup"].isna().all() and items["IN_SEALSIZE"].isna().all()
    assert items["ROTATE_CLOCKWISE"].isna().mean() > 0.97
    assert 0.01 < items["ITEM_MATERIAL"].isna().mean() < 0.05 and 0.05 < items["GROUP2"].isna().mean() < 0.12


def test_jobshop_material_and_tolerance_together_decide_the_operations(shop_signatures):
    attrs, sig = shop_signatures
    assert _modal_share(sig, attrs, RULE_INPUTS) > 0.9  # the rule inputs fix the routing up to noise
    assert _modal_share(sig, attrs, ["PART_TYPE"]) < 0.3  # no one-column rule
    assert _modal_share(sig, attrs, ["PART_TYPE", "ITEM_MATERIAL"]) < 0.45
    assert _modal_share(sig, attrs, ["PART_TYPE", "GROUP1"]) < 0.45
    assert _modal_share(sig, attrs, ["PART_TYPE", "ITEM_MATERIAL", "GROUP1"]) > 0.55  # the interaction carries most of it


def test_jobshop_sizes_pick_machines_and_times_but_never_the_sequence(shop_signatures, shop_current):
    attrs, sig = shop_signatures
    key = attrs[RULE_INPUTS].astype(str).agg("|".join, axis=1)
    modal = key.map(sig.groupby(key).agg(lambda s: s.value_counts().index[0]))
    match = (sig == modal).groupby(pd.cut(attrs["OUTDIAMETER"], [0, 40, 150, 1e9])).mean()
    assert match.min() > 0.9 and match.max() - match.min() < 0.03  # small and large parts follow the same rule

    # same everything except the tolerance class: another sequence
    def modal_by_tolerance(columns: list[str]) -> pd.DataFrame:
        modal = sig.groupby([attrs[c] for c in columns] + [attrs["GROUP1"]]).agg(lambda s: s.value_counts().index[0])
        return modal.unstack("GROUP1")

    same_finish = modal_by_tolerance(["PART_TYPE", "ITEM_MATERIAL", "ITEM_GRP1", "RAW_MATL_KIND", "GROUP2"])
    for fine, coarse in (("IT7", "ISO 2768-f"), ("IT6", "IT7"), ("ISO 2768-f", "ISO 2768-m")):
        pair = same_finish[[fine, coarse]].dropna()
        assert len(pair) > 20 and (pair[fine] != pair[coarse]).mean() > 0.5, (fine, coarse)
    extremes = modal_by_tolerance(["PART_TYPE", "ITEM_MATERIAL", "ITEM_GRP1", "RAW_MATL_KIND"])[["IT6", "ISO 2768-m"]].dropna()
    assert len(extremes) > 30 and (extremes["IT6"] != extremes["ISO 2768-m"]).mean() > 0.9
    # the lathe follows the diameter
    turn = shop_current[(shop_current["JOB_CD"] == "TURN") & (shop_current["INSIDE_FLAG"] == "IN")]
    od = turn["ITEM_CD"].map(attrs["OUTDIAMETER"])
    assert turn[od < 40]["RES_CD"].isin(["LT-S01", "LT-S02", "SW-01"]).all()
    assert turn[od >= 150]["RES_CD"].isin(["LT-L01", "VTL-01"]).all()
    per_minute = turn.assign(OD=od).dropna(subset=["OD"])
    assert per_minute.groupby(pd.cut(per_minute["OD"], [0, 40, 150, 1e9]))["RUN_MINUTES_PER_UNIT"].median().is_monotonic_increasing


def test_jobshop_repeated_operations_keep_their_own_times(shop, shop_current):
    cur = shop_current.assign(OCC=shop_current.groupby(["ITEM_CD", "JOB_CD"]).cumcount())
    for job in ("TURN", "GRIND", "INSPECT"):
        twice = cur[cur["JOB_CD"] == job].pivot_table(index="ITEM_CD", columns="OCC", values="RUN_MINUTES_PER_UNIT")
        twice = twice.dropna(subset=[0, 1])
        assert len(twice) > 200, job
        assert (twice[0] / twice[1]).median() > 1.5, job  # rough before finish, in-process before final
    # the work orders keep the two TURN operations of one routing apart by PROC_SEQ
    work_results = shop[2]
    turns = cur[(cur["JOB_CD"] == "TURN")][["ITEM_CD", "PROC_SEQ", "OCC"]]
    wr = work_results[work_results["JOB_CD"] == "TURN"].merge(turns, on=["ITEM_CD", "PROC_SEQ"])
    per_unit = wr["MACH_WORKED_HOURS"] / wr["ORDER_QTY"]
    by_occ = per_unit.groupby(wr["OCC"]).median()
    assert by_occ[0] > 1.4 * by_occ[1]


def test_jobshop_has_many_alternative_routings_of_every_kind(shop, shop_current):
    items, routings, work_results = shop
    n_rout = routings.groupby("ITEM_CD")["ROUT_NO"].nunique()
    assert 0.25 <= (n_rout > 1).mean() <= 0.45
    assert (n_rout == 3).mean() > 0.05
    today = pd.Timestamp(DEFAULT_TODAY)
    assert (routings["VALID_TO_DT"] < today).any()  # expired revisions
    assert (routings["VALID_FROM_DT"] > today).any()  # a revision valid only from a future date
    # the newest routing is not always the current one (withdrawn or not yet valid)
    top = routings[routings["ROUT_NO"] == routings["ITEM_CD"].map(routings.groupby("ITEM_CD")["ROUT_NO"].max())]
    stale = top.loc[(top["VALID_TO_DT"] < today) | (top["VALID_FROM_DT"] > today), "ITEM_CD"].unique()
    assert 0.04 < len(stale) / len(items) < 0.2
    assert set(stale) <= set(shop_current["ITEM_CD"])  # an older routing is current for them
    # orders ran on older and alternative routings too
    per_item = work_results.groupby("ITEM_CD")["ROUT_NO"].nunique()
    assert (per_item > 1).mean() > 0.1
    assert (work_results["ROUT_NO"] != "001").mean() > 0.1


def test_jobshop_work_results_reference_the_routing_actually_used(shop):
    _, routings, work_results = shop
    keys = routings[["ITEM_CD", "ROUT_NO", "PROC_SEQ", "JOB_CD", "VALID_FROM_DT"]]
    joined = work_results.merge(keys, on=["ITEM_CD", "ROUT_NO", "PROC_SEQ"], how="left", suffixes=("", "_R"), validate="many_to_one")
    assert joined["JOB_CD_R"].notna().all()
    assert (joined["JOB_CD"] == joined["JOB_CD_R"]).all()
    assert (joined["REPORT_DT"] >= joined["VALID_FROM_DT"]).all()  # no order ran on a routing before it existed
    assert work_results["REPORT_DT"].max() < pd.Timestamp(DEFAULT_TODAY)
    orders = work_results.groupby(["ITEM_CD", "ROUT_NO", "PROC_SEQ"]).size()
    assert (orders >= 3).mean() > 0.4  # several work orders per operation


def test_jobshop_outsourced_operations_have_no_setup(shop):
    routings = shop[1]
    out = routings[routings["INSIDE_FLAG"] == "OUT"]
    assert 0.05 < len(out) / len(routings) < 0.2
    assert (out["SETUP_TIME"] == 0).all() and out["RES_CD"].str.startswith("V-").all()
    assert {"HEAT", "NITRIDE", "ANODISE", "PLATE", "PASSIVATE"} <= set(out["JOB_CD"])
    assert (routings.loc[routings["INSIDE_FLAG"] == "IN", "SETUP_TIME"] >= 5).all()


def test_jobshop_a_few_items_deviate_from_their_rule(shop, shop_signatures):
    """A few % of items carry an extra or a missing step: noise no attribute explains."""
    items = shop[0]
    attrs, sig = shop_signatures
    truth = jobshop.operation_mask(
        pd.Categorical(attrs["PART_TYPE"], categories=jobshop.FAM_TYPE).codes,
        pd.Categorical(attrs["ITEM_MATERIAL"], categories=jobshop.MAT_CODE).codes,
        pd.Categorical(attrs["ITEM_GRP1"], categories=jobshop.HEAT_SPECS).codes,
        pd.Categorical(attrs["GROUP1"], categories=jobshop.TOLERANCES).codes,
        pd.Categorical(attrs["GROUP2"], categories=jobshop.FINISHES).codes,
        pd.Categorical(attrs["RAW_MATL_KIND"], categories=jobshop.RAW_KINDS).codes,
    )
    rule = [" ".join(jobshop.PLANT.slot_job[row]) for row in truth]
    deviating = (sig.to_numpy() != np.array(rule, dtype=object)).mean()
    assert 0.02 < deviating < 0.08
    assert len(items) == JS_N


def test_jobshop_quantities_are_heavier_tailed_than_the_seal_factory(shop, factory):
    def tail(work_results: pd.DataFrame) -> float:
        qty = work_results.drop_duplicates(["ITEM_CD", "REPORT_DT"])["ORDER_QTY"]
        return float(qty.quantile(0.99) / qty.median())

    assert tail(shop[2]) > 2 * tail(factory[2])
    assert shop[2]["ORDER_QTY"].max() > 10_000


def test_jobshop_actual_times_carry_work_centre_bias_and_noise(shop, shop_current):
    actuals = actuals_from_work_results(shop[2])
    merged = actuals.merge(
        shop_current[["ITEM_CD", "PROC_SEQ", "JOB_CD", "RUN_MINUTES_PER_UNIT"]], on=["ITEM_CD", "PROC_SEQ", "JOB_CD"], suffixes=("", "_STD")
    )
    ratio = np.log(merged["RUN_MINUTES_PER_UNIT"] / merged["RUN_MINUTES_PER_UNIT_STD"])
    assert 0.8 < np.exp(ratio.median()) < 1.25
    assert 0.1 < ratio.std() < 0.6
    by_res = ratio.groupby(merged["RES_CD"]).median()
    assert by_res.max() - by_res.min() > 0.15


def test_jobshop_drift_slows_its_drifted_work_centres_only():
    drift = date(2026, 5, 1)
    _, rout_a, wr_a = generate(5000, seed=11, profile="jobshop")
    _, rout_b, wr_b = generate(5000, seed=11, profile="jobshop", drift_from=drift)
    pd.testing.assert_frame_equal(rout_a, rout_b)
    hours = ["SETUP_HOURS", "MACH_WORKED_HOURS"]
    pd.testing.assert_frame_equal(wr_a.drop(columns=hours), wr_b.drop(columns=hours))
    after = (wr_a["REPORT_DT"] >= pd.Timestamp(drift)).to_numpy()
    drifted = wr_a["RES_CD"].isin(jobshop.DRIFT_RUN_FACTOR_BY_RES).to_numpy()
    ratio = (wr_b["MACH_WORKED_HOURS"] / wr_a["MACH_WORKED_HOURS"]).to_numpy()
    assert np.nanmedian(ratio[after & drifted]) > 1.5
    assert np.allclose(ratio[~after & ~np.isnan(ratio)], 1.0)


# --------------------------------------------------------------------------- fabrication
FB_N = 12_000


@pytest.fixture(scope="module")
def fab():
    items, routings, work_results = generate(FB_N, seed=9, profile="fabrication")
    current = current_routings(routings, when=DEFAULT_TODAY)
    jobs = current.groupby("ITEM_CD")["JOB_CD"].agg(list)
    return items.set_index("ITEM_CD").loc[jobs.index], routings, work_results, current, jobs


def test_fabrication_has_long_routings_over_many_work_centres(fab):
    items, routings, work_results, current, jobs = fab
    lengths = jobs.str.len()
    assert 7 <= lengths.mean() <= 10 and lengths.quantile(0.9) >= 11
    assert current["RES_CD"].nunique() >= 30
    assert {"LASER", "PUNCH", "BEND", "WELD", "POWDER", "GALV", "NDT", "ASSY"} <= set(current["JOB_CD"])
    assert set(items["ITEM_TYPE"].dropna()) == {"PART", "WELDMENT", "ASSY"}
    assert items.loc[items["ITEM_TYPE"] == "PART", "GROUP1"].isna().all()  # weld class only on weldments
    several = routings.groupby("ITEM_CD")["ROUT_NO"].nunique() > 1
    assert 0.18 < several.mean() < 0.35


def test_fabrication_counts_and_thickness_decide_steps(fab):
    items, _, _, _, jobs = fab
    n_bend = jobs.map(lambda j: j.count("BEND"))
    bends = items["ROTATE_CLOCKWISE"]
    thick = items["OUTTHICKNESS"]
    known = bends.notna() & thick.notna()
    assert (n_bend[known & (bends == 0)] == 0).mean() > 0.95
    assert (n_bend[known & bends.between(1, 6) & (thick < 10)] == 1).mean() > 0.95
    assert (n_bend[known & (bends >= 7)] == 2).mean() > 0.95
    welded = jobs.map(lambda j: "WELD" in j)
    assert welded[items["ITEM_TYPE"] == "WELDMENT"].mean() > 0.95 and welded[items["ITEM_TYPE"] == "PART"].mean() < 0.05
    two_welds = jobs.map(lambda j: j.count("WELD") == 2)
    weldment = items["ITEM_TYPE"] == "WELDMENT"
    assert (
        two_welds[weldment & (thick >= 8)].mean() > 0.9
        and two_welds[weldment & (thick < 8) & (items["GROUP1"] == "ISO 5817-D")].mean() < 0.1
    )
    powder = jobs.map(lambda j: "POWDER" in j)
    assert powder[items["GROUP2"] == "POWDER"].mean() > 0.95 and powder[items["GROUP2"] == "NONE"].mean() < 0.05
    # the cut follows material x thickness: stainless above 10 mm goes to the plasma table, steel not until 15 mm
    cut = jobs.map(lambda j: j[0])
    cls = items["ITEM_MATERIAL"].map(dict(zip(fabrication.MAT_CODE, fabrication.MAT_CLASS, strict=True)))
    sheet = items["RAW_MATL_KIND"].isin(["SHEET", "PLATE"])
    assert (cut[sheet & (cls == fabrication.STEEL) & thick.between(10.5, 15)] == "LASER").mean() > 0.9
    assert (cut[sheet & (cls == fabrication.STAINLESS) & (thick > 10)] == "PLASMA").mean() > 0.9


def test_fabrication_work_results_reference_routing_rows_and_drift_works():
    drift = date(2026, 5, 1)
    _, rout_a, wr_a = generate(3000, seed=2, profile="fabrication")
    _, rout_b, wr_b = generate(3000, seed=2, profile="fabrication", drift_from=drift)
    pd.testing.assert_frame_equal(rout_a, rout_b)
    joined = wr_a.merge(rout_a[["ITEM_CD", "ROUT_NO", "PROC_SEQ", "JOB_CD"]], on=["ITEM_CD", "ROUT_NO", "PROC_SEQ"], suffixes=("", "_R"))
    assert len(joined) == len(wr_a) and (joined["JOB_CD"] == joined["JOB_CD_R"]).all()
    after = (wr_a["REPORT_DT"] >= pd.Timestamp(drift)).to_numpy()
    drifted = wr_a["RES_CD"].isin(fabrication.DRIFT_RUN_FACTOR_BY_RES).to_numpy()
    ratio = (wr_b["MACH_WORKED_HOURS"] / wr_a["MACH_WORKED_HOURS"]).to_numpy()
    assert np.nanmedian(ratio[after & drifted]) > 1.4
    assert np.allclose(ratio[~after & ~np.isnan(ratio)], 1.0)


# --------------------------------------------------------------------------- seed_demo_erp
@pytest.mark.django_db
def test_seed_command_writes_the_generated_counts():
    out = StringIO()
    call_command("seed_demo_erp", "--items", "300", "--seed", "5", stdout=out)
    items, routings, work_results = generate(300, seed=5)
    assert data.table_counts() == {"Item": 300, "RoutingOperation": len(routings), "WorkResult": len(work_results)}
    assert Item.objects.filter(pk=items["ITEM_CD"].iloc[0]).exists()
    assert f"{len(routings):,} routing operations" in out.getvalue() and " s" in out.getvalue()
    assert "profile seal, seed 5" in out.getvalue()  # the default profile, named in the success line


@pytest.mark.django_db
def test_seed_command_profile_option_writes_that_factory():
    out = StringIO()
    call_command("seed_demo_erp", "--items", "250", "--seed", "4", "--profile", "jobshop", stdout=out)
    items, routings, work_results = generate(250, seed=4, profile="jobshop")
    assert data.table_counts() == {"Item": 250, "RoutingOperation": len(routings), "WorkResult": len(work_results)}
    stored = data.load_items()
    assert stored["ITEM_CD"].str.startswith("JS-").all()
    assert set(stored["PART_TYPE"]) == set(items["PART_TYPE"])
    assert "profile jobshop, seed 4" in out.getvalue()


@pytest.mark.django_db
def test_seed_command_refuses_an_unknown_profile():
    with pytest.raises(CommandError, match="Unknown --profile 'foundry'. Choose one of: seal, jobshop, fabrication"):
        call_command("seed_demo_erp", "--items", "10", "--profile", "foundry", stdout=StringIO())
    assert Item.objects.count() == 0


@pytest.mark.django_db
def test_seed_command_refuses_non_empty_tables():
    call_command("seed_demo_erp", "--items", "50", stdout=StringIO())
    with pytest.raises(CommandError, match="not empty.*--replace"):
        call_command("seed_demo_erp", "--items", "80", stdout=StringIO())
    assert Item.objects.count() == 50


@pytest.mark.django_db
def test_seed_command_if_empty_does_nothing_when_items_exist():
    call_command("seed_demo_erp", "--items", "50", stdout=StringIO())
    before = data.table_counts()
    out = StringIO()
    call_command("seed_demo_erp", "--items", "80", "--if-empty", stdout=out)
    assert data.table_counts() == before
    assert "nothing to do" in out.getvalue()


@pytest.mark.django_db
def test_seed_command_if_empty_seeds_an_empty_database():
    call_command("seed_demo_erp", "--items", "40", "--if-empty", stdout=StringIO())
    assert Item.objects.count() == 40


@pytest.mark.django_db
def test_seed_command_replace_deletes_first():
    call_command("seed_demo_erp", "--items", "50", stdout=StringIO())
    call_command("seed_demo_erp", "--items", "70", "--seed", "2", "--replace", stdout=StringIO())
    _, routings, work_results = generate(70, seed=2)
    assert data.table_counts() == {"Item": 70, "RoutingOperation": len(routings), "WorkResult": len(work_results)}


@pytest.mark.django_db
def test_seed_command_keeps_the_indexes():
    from django.db import connection

    before = {i for i in connection.introspection.get_constraints(connection.cursor(), "BI_WORK_ORDER_RESULTS") if i.startswith("erp_")}
    call_command("seed_demo_erp", "--items", "30", stdout=StringIO())
    after = {i for i in connection.introspection.get_constraints(connection.cursor(), "BI_WORK_ORDER_RESULTS") if i.startswith("erp_")}
    partition = {"erp_chg_part_bi_work_order_results"} if connection.vendor == "sqlite" else set()  # erp.changes.partition_index_sql
    assert before == after == {"erp_wr_item_job", "erp_wr_report_dt_item", *partition}


@pytest.mark.django_db
def test_seed_command_drift_from_option_slows_late_orders():
    call_command("seed_demo_erp", "--items", "400", "--seed", "1", "--drift-from", "2026-03-01", stdout=StringIO())
    _, _, plain = generate(400, seed=1)
    stored = data.load_work_results()
    assert stored["MACH_WORKED_HOURS"].sum() > plain["MACH_WORKED_HOURS"].sum() * 1.02


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--items", "0"], "--items must be between"),
        (["--items", "10", "--drift-from", "2026-13-01"], "Not a date"),
        (["--items", "10", "--drift-from", "2030-01-01"], "after the end of the data"),
        (["--items", "10", "--if-empty", "--replace"], "contradict"),
    ],
)
def test_seed_command_bad_arguments_are_clear_errors(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("seed_demo_erp", *args, stdout=StringIO())
    assert Item.objects.count() == 0
