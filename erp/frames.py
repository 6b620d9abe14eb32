"""Turn raw ERP frames into the frames the training engine consumes. Pure pandas/numpy, no Django.

Units, once and for all: every time out of here is **minutes**, run time **minutes per unit**.

* `current_routing_rows(routings, when)` / `current_routing_keys(...)` — **the** current-routing
  rule, the only implementation: among the routings with an operation valid on `when`, the one
  whose newest valid operation has the latest `INSRT_DT` (empty = oldest; ties → highest `ROUT_NO`).
* `current_routings(routings)` — the current routing of every item by that rule, one row per
  operation with `SETUP_MINUTES` and `RUN_MINUTES_PER_UNIT = RUN_TIME / RUN_TIME_QTY`.
* `actuals_from_work_results(work_results)` — one row per work-order operation with
  `SETUP_MINUTES = SETUP_HOURS × 60` and `RUN_MINUTES_PER_UNIT = MACH_WORKED_HOURS × 60 / ORDER_QTY`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd

CURRENT_ROUTING_COLUMNS = [
    "ITEM_CD", "PROC_SEQ", "JOB_CD", "JOB_NM", "RES_CD", "INSIDE_FLAG", "SETUP_MINUTES", "RUN_MINUTES_PER_UNIT",
]  # fmt: skip
ACTUAL_COLUMNS = [
    "ITEM_CD", "PROC_SEQ", "JOB_CD", "RES_CD", "REPORT_DT", "ORDER_QTY", "SETUP_MINUTES", "RUN_MINUTES_PER_UNIT",
]  # fmt: skip

# TIME_UNIT values the ERP may use, as a factor to minutes. Empty means minutes (the ERP default).
TIME_UNIT_TO_MINUTES = {"MIN": 1.0, "M": 1.0, "MINUTE": 1.0, "MINUTES": 1.0, "HR": 60.0, "H": 60.0,
                        "HOUR": 60.0, "HOURS": 60.0, "SEC": 1 / 60, "S": 1 / 60, "SECOND": 1 / 60}  # fmt: skip


def to_timestamp(when: date | datetime | pd.Timestamp | str | None) -> pd.Timestamp:
    """A naive UTC Timestamp for `when` (now when None); aware values are converted to UTC."""
    if when is None:
        return pd.Timestamp.now(tz="UTC").tz_localize(None)
    ts = pd.Timestamp(when)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


def _minutes_factor(time_unit: pd.Series) -> np.ndarray:
    """Factor to minutes per row; unknown or empty units are taken as minutes."""
    codes, uniques = pd.factorize(time_unit)  # a handful of distinct values: map those, not every row
    factors = np.array([TIME_UNIT_TO_MINUTES.get(str(u).strip().upper(), 1.0) for u in uniques] + [1.0])
    return factors[codes]  # code -1 (empty) picks the trailing 1.0


def _datetimes(values: pd.Series) -> np.ndarray:
    """int64 microsecond keys, comparable (NaT → int64 min, so it sorts lowest).

    Naive values are UTC; aware ones (PostgreSQL, the ORM) are converted to UTC.
    """
    values = pd.Series(values)
    if not pd.api.types.is_datetime64_dtype(values.dtype):  # text, Python datetimes, tz-aware
        values = pd.to_datetime(values, utc=True, format="ISO8601").dt.tz_localize(None)
    return values.to_numpy(dtype="datetime64[us]").view(np.int64)


def current_routing_rows(routings: pd.DataFrame, when: date | datetime | pd.Timestamp | str | None = None) -> np.ndarray:
    """Positions (into `routings`, ascending) of the operations of each item's current routing valid on `when`.

    **The** current-routing rule; every reader of routings goes through it (`current_routings`,
    `current_routing_keys`, `erp.data`, `RoutingOperation.objects.current()`, the prediction service):

    * an operation is valid on `when` (now by default) when `VALID_FROM_DT <= when <= VALID_TO_DT`,
      an empty end (or an absent column) counting as open;
    * among each item's routings (`ROUT_NO`) with a valid operation, the current one is the one
      whose newest valid operation has the latest `INSRT_DT` (empty counts as oldest);
    * ties go to the highest `ROUT_NO` (string order).

    Needs `ITEM_CD`, `ROUT_NO`; `INSRT_DT`, `VALID_FROM_DT`, `VALID_TO_DT` are optional. Rows without
    ITEM_CD (or with a `PROC_SEQ` column but no value) are never current. Vectorised.
    """
    return _current_rows(routings, when)[0]


def _current_rows(routings: pd.DataFrame, when) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, item code of each row, item uniques): `current_routing_rows` plus its factorised ITEM_CD."""
    if routings.empty:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object)
    at = to_timestamp(when).to_datetime64().astype("datetime64[us]").view(np.int64)
    nat = np.iinfo(np.int64).min
    valid = routings["ITEM_CD"].notna().to_numpy(copy=True)
    if "PROC_SEQ" in routings:
        valid &= routings["PROC_SEQ"].notna().to_numpy()
    if "VALID_FROM_DT" in routings:
        vf = _datetimes(routings["VALID_FROM_DT"])
        valid &= (vf == nat) | (vf <= at)
    if "VALID_TO_DT" in routings:
        vt = _datetimes(routings["VALID_TO_DT"])
        valid &= (vt == nat) | (vt >= at)
    rows = np.flatnonzero(valid)  # positions into `routings`; columns are taken once, at the end
    if not len(rows):
        return rows, rows, np.zeros(0, dtype=object)

    item, item_uniques = pd.factorize(routings["ITEM_CD"].to_numpy(dtype=object)[rows])
    inserted = _datetimes(routings["INSRT_DT"])[rows] if "INSRT_DT" in routings else np.full(len(rows), nat)
    keep = _newest_routing(item, routings["ROUT_NO"].to_numpy(dtype=object)[rows], inserted)
    return rows[keep], item[keep], item_uniques


def current_routing_mask(item_cd: Sequence, rout_no: Sequence, inserted: Sequence) -> np.ndarray:
    """The rule of `current_routing_rows` on plain sequences of operations already known to be valid.

    For callers holding a few rows as tuples (the prediction service's per-request read): no
    DataFrame, so it costs well under a millisecond. `inserted`: datetimes or None (naive = UTC).
    """
    if not len(item_cd):
        return np.zeros(0, dtype=bool)
    if len(item_cd) <= _FEW_ROWS and all(type(r) is str or r is None for r in rout_no):
        return _newest_routing_few(item_cd, rout_no, _python_datetimes(inserted).tolist())
    item, _ = pd.factorize(np.asarray(item_cd, dtype=object))
    return _newest_routing(item, np.asarray(rout_no, dtype=object), _python_datetimes(inserted))


# Up to this many rows (one request's few items), `_newest_routing_few` decides in plain Python.
_FEW_ROWS = 256


def _newest_routing_few(item_cd: Sequence, rout_no: Sequence, inserted: list[int]) -> np.ndarray:
    """`_newest_routing` in plain Python for a few rows: its three factorizations and lexsort cost ~0.15 ms a request.

    Same rule, same keys: a routing is (item, ROUT_NO with empty = ""), its time is the latest
    INSRT_DT of its rows (int64, empty = oldest), and per item the routing with the greatest
    (time, ROUT_NO) wins. ROUT_NO values must be text or None (compared as text, as `pd.factorize(sort=True)` does).
    """
    routs = ["" if r is None else r for r in rout_no]
    newest: dict[tuple, int] = {}
    for item, rout, at in zip(item_cd, routs, inserted, strict=True):
        key = (item, rout)
        if at > newest.get(key, _OLDEST):
            newest[key] = at
        else:
            newest.setdefault(key, _OLDEST)
    winner: dict = {}
    for (item, rout), at in newest.items():
        if item not in winner or (at, rout) > winner[item]:
            winner[item] = (at, rout)
    return np.fromiter((winner[item][1] == rout for item, rout in zip(item_cd, routs, strict=True)), dtype=bool, count=len(routs))


_OLDEST = int(np.iinfo(np.int64).min)


def _python_datetimes(values: Sequence) -> np.ndarray:
    """`_datetimes` for a short sequence of Python datetimes / None (a DB cursor's), without pandas' overhead."""
    naive = [v.astimezone(UTC).replace(tzinfo=None) if isinstance(v, datetime) and v.tzinfo is not None else v for v in values]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return np.array(naive, dtype="datetime64[us]").view(np.int64)
    except (ValueError, TypeError, UserWarning, DeprecationWarning):  # text with an offset, odd types
        return _datetimes(pd.Series(list(values), dtype=object))


def _newest_routing(item: np.ndarray, rout: np.ndarray, inserted: np.ndarray) -> np.ndarray:
    """Mask of the rows of each item's winning routing: latest newest INSRT_DT (int64 keys), ties → highest ROUT_NO."""
    rout_code, rout_uniques = pd.factorize(np.where(pd.isna(rout), "", rout).astype(object), sort=True)
    routing_key = item.astype(np.int64) * max(len(rout_uniques), 1) + rout_code
    routing, n_routings = pd.factorize(routing_key)
    newest = np.full(len(n_routings), np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(newest, routing, inserted)
    routing_inserted = newest[routing]

    # per item, the routing that sorts last by (insert time, ROUT_NO) wins
    order = np.lexsort((rout_code, routing_inserted, item))
    last_of_item = np.append(np.flatnonzero(np.diff(item[order])), len(order) - 1)
    winner = np.full(int(item.max()) + 1, -1, dtype=np.int64)
    winner[item[order][last_of_item]] = routing_key[order][last_of_item]
    return routing_key == winner[item]


def current_routing_keys(routings: pd.DataFrame, when: date | datetime | pd.Timestamp | str | None = None) -> pd.DataFrame:
    """`ITEM_CD, ROUT_NO` of each item's current routing on `when` (rule: `current_routing_rows`), sorted by ITEM_CD."""
    rows = current_routing_rows(routings, when)
    keys = routings[["ITEM_CD", "ROUT_NO"]].iloc[rows].drop_duplicates("ITEM_CD")
    return keys.sort_values("ITEM_CD", kind="stable").reset_index(drop=True)


def current_routings(routings: pd.DataFrame, when: date | datetime | pd.Timestamp | str | None = None) -> pd.DataFrame:
    """The current routing of every item in a `BI_ROUTING_VIEW` frame, in minutes.

    The valid operations of the routing `current_routing_rows` picks per item (the one rule).
    Returns `CURRENT_ROUTING_COLUMNS`, sorted by ITEM_CD, PROC_SEQ; `PROC_SEQ` is int64 and
    `RUN_MINUTES_PER_UNIT = RUN_TIME / RUN_TIME_QTY` (empty or non-positive quantity → 1).
    """
    rows, item_code, item_uniques = _current_rows(routings, when)
    if not len(rows):
        return _empty_current()
    # rank items in string order (numpy sorts fixed-width text much faster than Python objects)
    item_rank = np.empty(len(item_uniques), dtype=np.int64)
    item_rank[np.argsort(np.asarray(item_uniques, dtype=str), kind="stable")] = np.arange(len(item_uniques))
    seq = pd.to_numeric(routings["PROC_SEQ"]).to_numpy()[rows].astype(np.int64)
    final = rows[np.lexsort((seq, item_rank[item_code]))]

    def column(name: str):
        return _text_take(routings[name], final) if name in routings else None

    def numbers(name: str) -> np.ndarray:
        if name not in routings:
            return np.full(len(final), np.nan)
        return pd.to_numeric(routings[name], errors="coerce").to_numpy(dtype=float)[final]

    factor = _minutes_factor(routings["TIME_UNIT"].iloc[final]) if "TIME_UNIT" in routings else 1.0
    qty = numbers("RUN_TIME_QTY")
    qty = np.where(np.isnan(qty) | (qty <= 0), 1.0, qty)
    return pd.DataFrame(
        {
            "ITEM_CD": column("ITEM_CD"),
            "PROC_SEQ": pd.to_numeric(routings["PROC_SEQ"]).to_numpy()[final].astype(np.int64),
            "JOB_CD": column("JOB_CD"),
            "JOB_NM": column("JOB_NM"),
            "RES_CD": column("RES_CD"),
            "INSIDE_FLAG": column("INSIDE_FLAG"),
            "SETUP_MINUTES": numbers("SETUP_TIME") * factor,
            "RUN_MINUTES_PER_UNIT": numbers("RUN_TIME") * factor / qty,
        },
        columns=CURRENT_ROUTING_COLUMNS,
    )


def _text_take(column: pd.Series, rows: np.ndarray):
    """`column`'s values at `rows`, for a text column of a new frame.

    A Categorical (the ERP snapshot's text) becomes the `str` array through Arrow, without a
    Python string object per row; anything else is taken as an array, as before.
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        import pyarrow as pa

        codes = column.cat.codes.to_numpy()[rows]
        dictionary = pa.array(column.cat.categories.to_numpy(dtype=object), type=pa.large_string())
        text = pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes < 0), dictionary).cast(pa.large_string())
        return pd.array(text, dtype="str")
    return column.to_numpy()[rows]


def _empty_current() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ITEM_CD": pd.Series(dtype="str"),
            "PROC_SEQ": pd.Series(dtype=np.int64),
            "JOB_CD": pd.Series(dtype="str"),
            "JOB_NM": pd.Series(dtype="str"),
            "RES_CD": pd.Series(dtype="str"),
            "INSIDE_FLAG": pd.Series(dtype="str"),
            "SETUP_MINUTES": pd.Series(dtype=float),
            "RUN_MINUTES_PER_UNIT": pd.Series(dtype=float),
        }
    )


def actuals_from_work_results(work_results: pd.DataFrame) -> pd.DataFrame:
    """Actual times per work-order operation from a `BI_WORK_ORDER_RESULTS` frame, in minutes.

    Rows with `ORDER_QTY <= 0` (or empty) or empty `MACH_WORKED_HOURS` are dropped: they say
    nothing about the run time per unit. `SETUP_MINUTES` stays empty where `SETUP_HOURS` is.
    `PROC_SEQ` is int64, or the nullable Int64 when some rows have none. Input order is kept.
    """
    qty = pd.to_numeric(work_results["ORDER_QTY"], errors="coerce").to_numpy(dtype=float)
    hours = pd.to_numeric(work_results["MACH_WORKED_HOURS"], errors="coerce").to_numpy(dtype=float)
    keep = np.flatnonzero((qty > 0) & ~np.isnan(hours))
    qty, hours = qty[keep], hours[keep]
    setup = pd.to_numeric(work_results["SETUP_HOURS"], errors="coerce").to_numpy(dtype=float)[keep]
    seq = pd.to_numeric(work_results["PROC_SEQ"], errors="coerce").iloc[keep]
    seq = seq.astype(np.int64) if not seq.isna().any() else seq.astype("Int64")
    return pd.DataFrame(
        {
            "ITEM_CD": _text_take(work_results["ITEM_CD"], keep),
            "PROC_SEQ": seq.array,
            "JOB_CD": _text_take(work_results["JOB_CD"], keep),
            "RES_CD": _text_take(work_results["RES_CD"], keep),
            "REPORT_DT": pd.to_datetime(work_results["REPORT_DT"]).to_numpy(dtype="datetime64[us]")[keep],
            "ORDER_QTY": qty,
            "SETUP_MINUTES": setup * 60.0,
            "RUN_MINUTES_PER_UNIT": hours * 60.0 / qty,
        },
        columns=ACTUAL_COLUMNS,
    )


def latest_per_operation(actuals: pd.DataFrame, keep: int) -> pd.DataFrame:
    """The `keep` most recent work-order rows of each operation of an item: what the shop floor does now.

    An operation is its place in the routing: (ITEM_CD, JOB_CD, OP_OCC) when the rows carry the
    occurrence (`training.engine.tables.assign_occurrences`), else (ITEM_CD, PROC_SEQ, JOB_CD) — an
    item that grinds twice keeps the last `keep` orders of each grinding. Old orders of an item
    would otherwise outvote its recent ones after a process change, and a retrained model could
    never follow a drift. Ties on REPORT_DT keep input order. Vectorised.
    """
    if actuals.empty or keep <= 0:
        return actuals
    operation = ["ITEM_CD", "JOB_CD", "OP_OCC"] if "OP_OCC" in actuals.columns else ["ITEM_CD", "PROC_SEQ", "JOB_CD"]
    # One integer per operation (a missing value is a value of its own), then newest first within it:
    # stable integer sorts instead of a sort on strings (3 M rows: ~1 s instead of 3-7 s), and only one
    # when the rows come oldest first per operation, as the ERP snapshot gives them (0.5 s).
    group = np.zeros(len(actuals), dtype=np.int64)
    for column in operation:
        codes = pd.factorize(actuals[column], use_na_sentinel=False)[0].astype(np.int64)
        group = group * (int(codes.max()) + 1) + codes
    reported = pd.to_datetime(actuals["REPORT_DT"]).to_numpy(dtype="datetime64[us]")
    newest_first = np.where(np.isnat(reported), np.iinfo(np.int64).max, -reported.view(np.int64))  # undated rows last
    kept = np.zeros(len(actuals), dtype=bool)
    by_group = np.argsort(group, kind="stable")
    grouped, when = group[by_group], newest_first[by_group]
    new_group = np.concatenate(([True], grouped[1:] != grouped[:-1]))
    if not (when[1:] > when[:-1])[~new_group[1:]].any():
        # Oldest first within every operation already (the canonical order: by item, then report time):
        # a row's place newest first is the rows after its run of equal times, plus its place in that run.
        group_end = _run_ends(new_group)
        new_run = new_group.copy()
        new_run[1:] |= when[1:] != when[:-1]
        run_start = np.maximum.accumulate(np.where(new_run, np.arange(by_group.size), 0))
        kept[by_group] = (group_end - _run_ends(new_run)) + (np.arange(by_group.size) - run_start) < keep
    else:
        by_time = np.argsort(newest_first, kind="stable")
        order = by_time[np.argsort(group[by_time], kind="stable")]
        sorted_group = group[order]
        starts = np.concatenate(([True], sorted_group[1:] != sorted_group[:-1]))
        first_of_group = np.maximum.accumulate(np.where(starts, np.arange(order.size), 0))
        kept[order] = np.arange(order.size) - first_of_group < keep
    recent = actuals[kept]
    return recent if recent.index.is_monotonic_increasing else recent.sort_index(kind="stable")


def _run_ends(new_run: np.ndarray) -> np.ndarray:
    """For each position, the end (exclusive) of its run; `new_run[i]` is True where a run begins."""
    starts = np.flatnonzero(new_run)
    return np.append(starts[1:], new_run.size)[np.cumsum(new_run) - 1]


def _sort_codes(values: pd.Series | np.ndarray) -> np.ndarray:
    """int64 codes that sort like the values (missing first), for np.lexsort."""
    codes, _ = pd.factorize(pd.Series(values), sort=True, use_na_sentinel=True)
    return codes.astype(np.int64)


def canonical_items(items: pd.DataFrame) -> pd.DataFrame:
    """The item master sorted by ITEM_CD: the same frame whatever order the rows were read in."""
    order = np.argsort(_sort_codes(items["ITEM_CD"]), kind="stable")
    return _taken(items, order)


def _taken(frame: pd.DataFrame, order: np.ndarray) -> pd.DataFrame:
    """`frame` in `order`, without copying when it is in that order already (the ERP snapshot keeps it so)."""
    if np.array_equal(order, np.arange(len(order))):
        return frame.reset_index(drop=True)
    return frame.iloc[order].reset_index(drop=True)


def canonical_actuals(actuals: pd.DataFrame) -> pd.DataFrame:
    """Actuals in one order defined by their content: item, report time, then every other column.

    A database returns rows in no defined order, and a snapshot merged from partitions in yet
    another; the engine keeps input order on ties and sums floats in it, so both are put in this
    order before training, and the same rows give the same model to the last bit. One int64
    sort on (item, report time); only rows that tie on both are sorted by the other columns.
    """
    if actuals.empty:
        return actuals.reset_index(drop=True)
    item = _sort_codes(actuals["ITEM_CD"])
    reported = _datetimes(actuals["REPORT_DT"])
    when_uniques, when_rank = np.unique(reported, return_inverse=True)
    key = (item + 1) * np.int64(len(when_uniques)) + when_rank.astype(np.int64)
    order = np.argsort(key, kind="stable")
    ordered_key = key[order]
    tie = np.zeros(len(order), dtype=bool)
    same = ordered_key[1:] == ordered_key[:-1]
    tie[1:] |= same
    tie[:-1] |= same
    if tie.any():
        positions = np.flatnonzero(tie)
        rows = order[positions]
        rest = actuals.iloc[rows]
        keys = [
            rest[c].to_numpy(dtype=float, na_value=np.nan) if c in ("PROC_SEQ", "ORDER_QTY", "SETUP_MINUTES", "RUN_MINUTES_PER_UNIT") else _sort_codes(rest[c])
            for c in reversed(["PROC_SEQ", "JOB_CD", "RES_CD", "ORDER_QTY", "SETUP_MINUTES", "RUN_MINUTES_PER_UNIT"])
            if c in rest.columns
        ]
        order[positions] = rows[np.lexsort([*keys, key[rows]])]
    return _taken(actuals, order)


def item_time_order(frame: pd.DataFrame, time_column: str) -> np.ndarray:
    """Positions sorting `frame` by ITEM_CD, then `time_column` (stable): how the ERP snapshot stores its rows,
    so that `canonical_items` / `canonical_actuals` find them (nearly) in order."""
    if frame.empty:
        return np.zeros(0, dtype=np.int64)
    return np.lexsort((_datetimes(frame[time_column]), _sort_codes(frame["ITEM_CD"])))
