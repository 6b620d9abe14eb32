"""Raw ERP frames → engine frames (`erp.frames`) and bulk loading from the database (`erp.data`)."""

from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO

import numpy as np
import pandas as pd
import pytest
from django.core.management import call_command

from erp import data
from erp.frames import ACTUAL_COLUMNS, CURRENT_ROUTING_COLUMNS, actuals_from_work_results, current_routings
from erp.generator import DEFAULT_TODAY, generate
from erp.models import RoutingOperation, WorkResult

# Database-facing: run again on PostgreSQL by `make test` (see the Makefile).
pytestmark = pytest.mark.postgres

WHEN = pd.Timestamp("2026-06-01")


def op(item, rout, seq, job, inserted, valid_from=None, valid_to=None, **extra):
    row = {
        "ITEM_CD": item, "ROUT_NO": rout, "PROC_SEQ": seq, "JOB_CD": job, "JOB_NM": job.title(), "RES_CD": "R1",
        "INSIDE_FLAG": "IN", "TIME_UNIT": "MIN", "SETUP_TIME": 10.0, "RUN_TIME": 2.0, "RUN_TIME_QTY": 1.0,
        "VALID_FROM_DT": pd.Timestamp(valid_from) if valid_from else pd.NaT,
        "VALID_TO_DT": pd.Timestamp(valid_to) if valid_to else pd.NaT,
        "INSRT_DT": pd.Timestamp(inserted) if inserted else pd.NaT,
    }  # fmt: skip
    row.update(extra)
    return row


def jobs_of(frame: pd.DataFrame, item: str) -> list[str]:
    return frame.loc[frame["ITEM_CD"] == item, "JOB_CD"].tolist()


# --------------------------------------------------------------------------- current routing rule
def test_current_routing_is_the_one_with_the_newest_insert_date():
    routings = pd.DataFrame(
        [
            op("A", "002", 10, "OLD", "2024-01-01"),
            op("A", "001", 10, "NEW", "2025-01-01"),
            op("A", "001", 20, "NEWER2", "2025-01-01"),
        ]
    )
    assert jobs_of(current_routings(routings, WHEN), "A") == ["NEW", "NEWER2"]


def test_expired_routing_is_not_current_even_when_newest():
    routings = pd.DataFrame(
        [
            op("A", "001", 10, "VALID", "2024-01-01"),
            op("A", "002", 10, "EXPIRED", "2025-01-01", valid_to="2026-01-31"),
            op("B", "001", 10, "NOT_YET", "2025-01-01", valid_from="2027-01-01"),
            op("B", "002", 10, "OPEN", "2024-01-01", valid_from="2024-01-01", valid_to="2026-06-01"),
        ]
    )
    current = current_routings(routings, WHEN)
    assert jobs_of(current, "A") == ["VALID"]
    assert jobs_of(current, "B") == ["OPEN"]  # validity ends are inclusive


def test_insert_date_ties_go_to_the_highest_rout_no():
    routings = pd.DataFrame(
        [op("A", "001", 10, "LOW", "2025-01-01"), op("A", "003", 10, "HIGH", "2025-01-01"), op("A", "002", 10, "MID", "2025-01-01")]
    )
    assert jobs_of(current_routings(routings, WHEN), "A") == ["HIGH"]


def test_missing_insert_date_counts_as_oldest():
    routings = pd.DataFrame([op("A", "009", 10, "UNDATED", None), op("A", "001", 10, "DATED", "2020-01-01")])
    assert jobs_of(current_routings(routings, WHEN), "A") == ["DATED"]


def test_item_without_a_valid_routing_has_no_current_routing():
    routings = pd.DataFrame([op("A", "001", 10, "GONE", "2020-01-01", valid_to="2021-01-01"), op("B", "001", 10, "OK", "2020-01-01")])
    current = current_routings(routings, WHEN)
    assert set(current["ITEM_CD"]) == {"B"}


def test_current_routing_is_sorted_by_item_and_sequence_with_int_sequence():
    routings = pd.DataFrame(
        [
            op("B", "001", 20, "B2", "2020-01-01"),
            op("A", "001", 30, "A3", "2020-01-01"),
            op("B", "001", 10, "B1", "2020-01-01"),
            op("A", "001", 5, "A1", "2020-01-01"),
        ]
    )
    current = current_routings(routings, WHEN)
    assert list(current.columns) == CURRENT_ROUTING_COLUMNS
    assert current["JOB_CD"].tolist() == ["A1", "A3", "B1", "B2"]
    assert current["PROC_SEQ"].dtype == np.int64


def test_run_minutes_per_unit_divides_by_run_time_quantity():
    routings = pd.DataFrame(
        [
            op("A", "001", 10, "PER_100", "2020-01-01", RUN_TIME=50.0, RUN_TIME_QTY=100.0),
            op("A", "001", 20, "NO_QTY", "2020-01-01", RUN_TIME=3.0, RUN_TIME_QTY=np.nan),
            op("A", "001", 30, "HOURS", "2020-01-01", RUN_TIME=0.5, RUN_TIME_QTY=1.0, SETUP_TIME=0.25, TIME_UNIT="HR"),
        ]
    )
    current = current_routings(routings, WHEN).set_index("JOB_CD")
    assert current.loc["PER_100", "RUN_MINUTES_PER_UNIT"] == pytest.approx(0.5)
    assert current.loc["NO_QTY", "RUN_MINUTES_PER_UNIT"] == pytest.approx(3.0)
    assert current.loc["HOURS", "RUN_MINUTES_PER_UNIT"] == pytest.approx(30.0)
    assert current.loc["HOURS", "SETUP_MINUTES"] == pytest.approx(15.0)
    assert current.loc["PER_100", "SETUP_MINUTES"] == pytest.approx(10.0)


def test_actuals_convert_order_hours_to_minutes_per_unit():
    work_results = pd.DataFrame(
        {
            "ITEM_CD": ["A", "A", "A", "A"],
            "ROUT_NO": ["001"] * 4,
            "PROC_SEQ": [10, 20, 30, 40],
            "JOB_CD": ["TURN", "GRIND", "ZERO_QTY", "NO_HOURS"],
            "RES_CD": ["LT", "GR", "X", "Y"],
            "REPORT_DT": pd.to_datetime(["2026-01-01 08:00", "2026-01-02 00:00", "2026-01-03 00:00", "2026-01-04 00:00"]),
            "ORDER_QTY": [20.0, 4.0, 0.0, 5.0],
            "BAD_QTY": [0.0] * 4,
            "SETUP_HOURS": [0.5, np.nan, 1.0, 1.0],
            "MACH_WORKED_HOURS": [2.0, 0.1, 1.0, np.nan],
        }
    )
    actuals = actuals_from_work_results(work_results)
    assert list(actuals.columns) == ACTUAL_COLUMNS
    assert actuals["JOB_CD"].tolist() == ["TURN", "GRIND"]  # qty 0 and missing hours dropped
    assert actuals["RUN_MINUTES_PER_UNIT"].tolist() == pytest.approx([2.0 * 60 / 20, 0.1 * 60 / 4])
    assert actuals["SETUP_MINUTES"].iloc[0] == pytest.approx(30.0)
    assert np.isnan(actuals["SETUP_MINUTES"].iloc[1])
    assert actuals["PROC_SEQ"].dtype == np.int64


# --------------------------------------------------------------------------- loading from the database
@pytest.fixture
def seeded(db):
    call_command("seed_demo_erp", "--items", "1200", "--seed", "9", stdout=StringIO())
    return generate(1200, seed=9)


def _by_item(frame: pd.DataFrame, *keys: str) -> pd.DataFrame:
    return frame.sort_values(list(keys), kind="stable").reset_index(drop=True)


def test_load_items_returns_the_item_master_with_erp_columns(seeded):
    items = data.load_items()
    expected = seeded[0]
    assert list(items.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(_by_item(items, "ITEM_CD"), _by_item(expected, "ITEM_CD"))


def test_load_current_routings_matches_the_current_routing_rule(seeded):
    loaded = data.load_current_routings(when=DEFAULT_TODAY)
    pd.testing.assert_frame_equal(loaded, current_routings(seeded[1], when=DEFAULT_TODAY))


def test_load_current_routings_agrees_with_the_orm_queryset(seeded):
    loaded = data.load_current_routings(when=DEFAULT_TODAY)
    when = datetime(DEFAULT_TODAY.year, DEFAULT_TODAY.month, DEFAULT_TODAY.day, tzinfo=UTC)
    orm = pd.DataFrame(
        RoutingOperation.objects.current(when).values_list("item_cd", "proc_seq", "job_cd"), columns=["ITEM_CD", "PROC_SEQ", "JOB_CD"]
    )
    assert len(orm) == len(loaded)
    assert (orm.astype(str).to_numpy() == loaded[["ITEM_CD", "PROC_SEQ", "JOB_CD"]].astype(str).to_numpy()).all()


def test_load_actuals_returns_minutes_per_unit(seeded):
    loaded = data.load_actuals()
    expected = actuals_from_work_results(seeded[2])
    keys = ["ITEM_CD", "REPORT_DT", "PROC_SEQ", "ORDER_QTY", "RUN_MINUTES_PER_UNIT"]
    pd.testing.assert_frame_equal(_by_item(loaded, *keys), _by_item(expected, *keys))
    sample = WorkResult.objects.filter(mach_worked_hours__isnull=False, order_qty__gt=0).first()
    row = loaded[
        (loaded["ITEM_CD"] == sample.item_cd)
        & (loaded["REPORT_DT"] == pd.Timestamp(sample.report_dt.replace(tzinfo=None)))
        & (loaded["PROC_SEQ"] == sample.proc_seq)
    ]
    assert row["RUN_MINUTES_PER_UNIT"].iloc[0] == pytest.approx(sample.mach_worked_hours * 60 / sample.order_qty)


def test_load_functions_filter_by_long_item_code_lists(seeded):
    codes = seeded[0]["ITEM_CD"].iloc[::1].tolist()[:1000]  # more than one IN chunk
    assert len(data.load_items(codes)) == 1000
    routings = data.load_current_routings(codes, when=DEFAULT_TODAY)
    assert set(routings["ITEM_CD"]) == set(codes)
    actuals = data.load_actuals(codes)
    assert set(actuals["ITEM_CD"]) <= set(codes) and len(actuals) > 0
    assert len(data.load_items(["NO-SUCH-ITEM"])) == 0
    assert len(data.load_items([])) == 0


def test_load_actuals_since_until_bound_the_report_date(seeded):
    since, until = pd.Timestamp("2026-01-01"), pd.Timestamp("2026-03-01")
    window = data.load_actuals(since=since.date(), until=until.to_pydatetime())
    assert len(window) > 0
    assert window["REPORT_DT"].min() >= since and window["REPORT_DT"].max() < until
    everything = data.load_actuals()
    assert len(window) == ((everything["REPORT_DT"] >= since) & (everything["REPORT_DT"] < until)).sum()


def test_load_training_frames_returns_items_routings_actuals(seeded):
    items, routings, actuals = data.load_training_frames(when=DEFAULT_TODAY)
    assert len(items) == 1200 and routings["ITEM_CD"].nunique() == 1200
    assert list(routings.columns) == CURRENT_ROUTING_COLUMNS and list(actuals.columns) == ACTUAL_COLUMNS


def test_routing_history_marks_the_current_routing(seeded):
    routings = seeded[1]
    several = routings.groupby("ITEM_CD")["ROUT_NO"].nunique()
    item = several[several > 1].index[0]
    history = data.routing_history(item, when=DEFAULT_TODAY)
    assert history["ROUT_NO"].nunique() > 1
    current = history[history["CURRENT"]]
    assert current["ROUT_NO"].nunique() == 1
    expected = current_routings(routings[routings["ITEM_CD"] == item], when=DEFAULT_TODAY)
    assert current["JOB_CD"].tolist() == expected["JOB_CD"].tolist()


@pytest.mark.django_db
def test_load_functions_on_empty_tables_return_empty_frames():
    items, routings, actuals = data.load_training_frames()
    assert items.empty and routings.empty and actuals.empty
    assert list(routings.columns) == CURRENT_ROUTING_COLUMNS and list(actuals.columns) == ACTUAL_COLUMNS


# --------------------------------------------------------------------------- admin pages
def test_admin_lists_erp_tables_read_only(seeded, admin_client):
    for path in ("/admin/erp/item/", "/admin/erp/routingoperation/", "/admin/erp/workresult/"):
        response = admin_client.get(path)
        assert response.status_code == 200, path
        assert f'href="{path}add/"'.encode() not in response.content
    assert admin_client.get("/admin/erp/item/add/").status_code == 403
    item = seeded[0]["ITEM_CD"].iloc[5]
    found = admin_client.get("/admin/erp/routingoperation/", {"q": item[:7]})
    assert item.encode() in found.content


def test_admin_item_page_shows_its_current_routing(seeded, admin_client):
    item = seeded[0]["ITEM_CD"].iloc[3]
    response = admin_client.get(f"/admin/erp/item/{item}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="erp-current-routing"' in html
    for job in current_routings(seeded[1][seeded[1]["ITEM_CD"] == item], when=DEFAULT_TODAY)["JOB_CD"]:
        assert f"<td>{job}</td>" in html
    assert admin_client.post(f"/admin/erp/item/{item}/delete/").status_code == 403


def test_load_training_frames_until_trains_as_of_a_moment(seeded):
    until = pd.Timestamp("2026-02-01")
    _, routings, actuals = data.load_training_frames(until=until.date())
    assert actuals["REPORT_DT"].max() < until
    pd.testing.assert_frame_equal(routings, current_routings(seeded[1], when=until))
