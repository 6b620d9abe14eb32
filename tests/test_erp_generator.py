"""The demo ERP generator (`erp.generator`) and the `seed_demo_erp` command."""

from __future__ import annotations

from datetime import date
from io import StringIO

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from erp import data
from erp.frames import actuals_from_work_results, current_routings
from erp.generator import DEFAULT_TODAY, DRIFT_RUN_FACTOR_BY_RES, generate
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


# --------------------------------------------------------------------------- seed_demo_erp
@pytest.mark.django_db
def test_seed_command_writes_the_generated_counts():
    out = StringIO()
    call_command("seed_demo_erp", "--items", "300", "--seed", "5", stdout=out)
    items, routings, work_results = generate(300, seed=5)
    assert data.table_counts() == {"Item": 300, "RoutingOperation": len(routings), "WorkResult": len(work_results)}
    assert Item.objects.filter(pk=items["ITEM_CD"].iloc[0]).exists()
    assert f"{len(routings):,} routing operations" in out.getvalue() and " s" in out.getvalue()


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
    assert before == after == {"erp_wr_item_job", "erp_wr_report_dt"}


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
