"""One "current routing" rule (erp.frames.current_routing_rows), the same through every entry point.

Each case is one item's routing rows and the routing that must be current on `when`. The same
table runs through the pandas frames (training), the DB loader and routing history (erp.data),
the queryset (`RoutingOperation.objects.current()`, admin and pages) and the prediction
service's current routing, so the four readers cannot disagree.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from erp import data
from erp.frames import current_routing_keys, current_routings
from erp.models import RoutingOperation
from predictions.service import _current_routings

# Database-facing: run again on PostgreSQL by `make test` (see the Makefile).
pytestmark = pytest.mark.postgres

JUNE = "2026-06-01"


def op(rout, seq, job, inserted, valid_from=None, valid_to=None):
    return {
        "ROUT_NO": rout, "PROC_SEQ": seq, "JOB_CD": job, "JOB_NM": job.title(), "RES_CD": "R1", "INSIDE_FLAG": "IN",
        "TIME_UNIT": "MIN", "SETUP_TIME": 10.0, "RUN_TIME": 2.0, "RUN_TIME_QTY": 1.0,
        "VALID_FROM_DT": pd.Timestamp(valid_from) if valid_from else pd.NaT,
        "VALID_TO_DT": pd.Timestamp(valid_to) if valid_to else pd.NaT,
        "INSRT_DT": pd.Timestamp(inserted) if inserted else pd.NaT,
    }  # fmt: skip


# (case, when, operations, current ROUT_NO or None, JOB_CDs of the current routing's valid operations)
CASES = [
    ("newest_insert_wins", JUNE, [op("002", 10, "OLD", "2024-01-01"), op("001", 10, "NEW", "2025-01-01"), op("001", 20, "NEW2", "2025-01-01")], "001", ["NEW", "NEW2"]),
    ("expired_newest_routing", JUNE, [op("001", 10, "VALID", "2024-01-01"), op("002", 10, "EXPIRED", "2025-01-01", valid_to="2026-01-31")], "001", ["VALID"]),
    ("not_yet_valid_newest_routing", JUNE, [op("001", 10, "VALID", "2024-01-01"), op("002", 10, "LATER", "2025-01-01", valid_from="2027-01-01")], "001", ["VALID"]),
    ("validity_ends_are_inclusive", JUNE, [op("001", 10, "OLD", "2020-01-01"), op("002", 10, "EDGE", "2024-01-01", valid_from="2024-01-01", valid_to=JUNE)], "002", ["EDGE"]),
    ("null_insert_counts_as_oldest", JUNE, [op("009", 10, "UNDATED", None), op("001", 10, "DATED", "2020-01-01")], "001", ["DATED"]),
    ("all_inserts_null_highest_rout_no", JUNE, [op("001", 10, "LOW", None), op("002", 10, "HIGH", None)], "002", ["HIGH"]),
    ("tie_goes_to_highest_rout_no_as_text", JUNE, [op("10", 10, "TEN", "2025-01-01"), op("9", 10, "NINE", "2025-01-01"), op("08", 10, "EIGHT", "2025-01-01")], "9", ["NINE"]),
    (
        "newest_operation_decides_for_its_routing",
        JUNE,
        [op("001", 10, "A_OLD", "2020-01-01"), op("001", 20, "A_REDONE", "2025-03-01"), op("002", 10, "B", "2024-01-01"), op("002", 20, "B2", "2024-01-01")],
        "001",
        ["A_OLD", "A_REDONE"],
    ),
    (
        "only_valid_operations_count_and_are_returned",
        JUNE,
        # 001's newest operation expired: 001 counts as inserted 2020 and loses to 002 (2024)
        [op("001", 10, "A", "2020-01-01"), op("001", 20, "A_GONE", "2025-01-01", valid_to="2026-01-01"), op("002", 10, "B", "2024-01-01")],
        "002",
        ["B"],
    ),
    (
        "expired_operation_of_the_current_routing_is_dropped",
        JUNE,
        [op("001", 10, "A", "2025-01-01"), op("001", 20, "A_GONE", "2025-01-01", valid_to="2026-01-01"), op("002", 10, "B", "2024-01-01")],
        "001",
        ["A"],
    ),
    ("another_when", "2025-06-01", [op("001", 10, "THEN", "2024-01-01", valid_to="2025-12-31"), op("002", 10, "NOW", "2026-01-01", valid_from="2026-01-01")], "001", ["THEN"]),
    ("no_valid_routing", JUNE, [op("001", 10, "GONE", "2020-01-01", valid_to="2021-01-01")], None, []),
]  # fmt: skip
IDS = [c[0] for c in CASES]


def _frame(case, when, ops):
    frame = pd.DataFrame(ops)
    frame.insert(0, "ITEM_CD", f"CASE-{IDS.index(case):02d}")  # ITEM_CD is varchar(50)
    return frame


def _aware(when: str) -> datetime:
    return pd.Timestamp(when).to_pydatetime().replace(tzinfo=UTC)


@pytest.mark.parametrize(("case", "when", "ops", "rout_no", "jobs"), CASES, ids=IDS)
def test_frames_apply_the_rule(case, when, ops, rout_no, jobs):
    frame = _frame(case, when, ops)
    keys = current_routing_keys(frame, when)
    assert keys["ROUT_NO"].tolist() == ([rout_no] if rout_no else [])
    assert current_routings(frame, when)["JOB_CD"].tolist() == jobs
    # row order does not matter
    assert current_routings(frame.iloc[::-1], when)["JOB_CD"].tolist() == jobs


@pytest.mark.django_db
@pytest.mark.parametrize(("case", "when", "ops", "rout_no", "jobs"), CASES, ids=IDS)
def test_every_entry_point_picks_the_same_current_routing(case, when, ops, rout_no, jobs):
    frame = _frame(case, when, ops)
    item = frame["ITEM_CD"].iloc[0]
    data.insert_frame(RoutingOperation, frame)
    moment = _aware(when)

    # erp.data: the bulk loader (training, quality cycles) and the routing history page
    assert data.load_current_routings([item], when=moment)["JOB_CD"].tolist() == jobs
    history = data.routing_history(item, when=moment)
    assert sorted(set(history.loc[history["CURRENT"], "ROUT_NO"])) == ([rout_no] if rout_no else [])
    assert len(history) == len(ops)

    # the queryset (admin, pages)
    current = RoutingOperation.objects.filter(item_cd=item).current(moment)
    assert [(o.rout_no, o.job_cd) for o in current] == [(rout_no, j) for j in jobs]

    # the prediction service's existing routing
    existing = _current_routings([item], when=moment).get(item)
    assert (existing["signature"] if existing else []) == jobs


@pytest.mark.django_db
def test_entry_points_agree_on_several_items_at_once():
    """All cases in one table: the rule is applied per item, never across items."""
    frames = [_frame(case, JUNE, ops) for case, when, ops, _, _ in CASES if when == JUNE]
    table = pd.concat(frames, ignore_index=True)
    data.insert_frame(RoutingOperation, table)
    moment = _aware(JUNE)
    expected = current_routings(table, JUNE)
    codes = sorted(table["ITEM_CD"].unique())

    loaded = data.load_current_routings(codes, when=moment)
    pd.testing.assert_frame_equal(loaded, expected)
    by_queryset = RoutingOperation.objects.filter(item_cd__in=codes).current(moment).values_list("item_cd", "job_cd")
    assert list(by_queryset) == list(zip(expected["ITEM_CD"], expected["JOB_CD"], strict=True))
    service = _current_routings(codes, when=moment)
    assert {code: r["signature"] for code, r in service.items()} == expected.groupby("ITEM_CD")["JOB_CD"].agg(list).to_dict()


def test_rule_on_cursor_tuples_reads_aware_datetimes_in_utc():
    """PostgreSQL hands back aware datetimes, SQLite naive UTC ones: both mean the same instant."""
    from datetime import timedelta, timezone

    from erp.frames import current_routing_mask

    seoul = timezone(timedelta(hours=9))
    # 002 at 08:00 in Seoul is 23:00 UTC the day before: older than 001 at 00:00 UTC
    items, routs = ["A", "A", "B", "B"], ["001", "002", "001", "002"]
    aware = [datetime(2025, 1, 2, tzinfo=UTC), datetime(2025, 1, 2, 8, tzinfo=seoul), None, datetime(2020, 1, 1, tzinfo=seoul)]
    naive = [datetime(2025, 1, 2), datetime(2025, 1, 1, 23), None, datetime(2019, 12, 31, 15)]
    assert current_routing_mask(items, routs, aware).tolist() == [True, False, False, True]
    assert current_routing_mask(items, routs, naive).tolist() == [True, False, False, True]
    assert current_routing_mask([], [], []).tolist() == []


def test_rule_on_a_few_rows_decides_as_the_vectorised_rule():
    """The per-request path (a few cursor rows, plain Python) picks exactly the rows the numpy rule picks."""
    import random

    import numpy as np

    from erp import frames

    rng = random.Random(7)
    moments = [None, datetime(2024, 5, 1), datetime(2024, 5, 1, 12), datetime(2025, 1, 1)]
    for _ in range(400):
        n = rng.randint(1, 14)
        items = [rng.choice("ABC") for _ in range(n)]
        routs = [rng.choice(["001", "002", "010", "", None]) for _ in range(n)]
        inserted = [rng.choice(moments) for _ in range(n)]
        item, _ = frames.pd.factorize(np.asarray(items, dtype=object))
        vectorised = frames._newest_routing(item, np.asarray(routs, dtype=object), frames._python_datetimes(inserted))
        assert frames.current_routing_mask(items, routs, inserted).tolist() == vectorised.tolist(), (items, routs, inserted)
