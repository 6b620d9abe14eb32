"""Which items a quality cycle evaluates.

Eligible items have a current routing and at least `min_rows` work-result rows in the recent
window. The window ends at the newest work result in the ERP (not the wall clock), so a
snapshot or a demo database evaluates the same way whenever it is read.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from django.db import connections, router

from erp.data import db_datetime
from erp.models import Item, RoutingOperation, WorkResult


def _alias() -> str:
    return router.db_for_read(WorkResult) or "default"


def newest_report_date() -> datetime | None:
    from django.db.models import Max

    return WorkResult.objects.using(_alias()).aggregate(newest=Max("report_dt"))["newest"]


def eligible_items(
    window_days: int, min_rows: int = 1, end: datetime | None = None, *, last_report: bool = True
) -> tuple[pd.DataFrame, datetime | None, datetime | None]:
    """Items produced in the window: DataFrame[ITEM_CD, PART_TYPE, rows, last_report] plus the window bounds.

    `last_report=False` leaves that column empty (None): only the "recent" strategy reads it, and the
    maximum over every window row's date is ~15 % of the query at 325k items.
    """
    end = end or newest_report_date()
    if end is None:
        return pd.DataFrame(columns=["ITEM_CD", "PART_TYPE", "rows", "last_report"]), None, None
    start = end - timedelta(days=window_days)
    wr, it, ro = WorkResult._meta.db_table, Item._meta.db_table, RoutingOperation._meta.db_table
    # Count the window's rows per item first, then join the item master and test for a routing once
    # per item, not once per work-result row (~3 rows an item; 230,000 rows in 30 days at 325k items).
    newest = 'MAX("REPORT_DT")' if last_report else "NULL"
    sql = (
        f'SELECT w."ITEM_CD", i."PART_TYPE", w.n, w.last_report FROM ('
        f'SELECT "ITEM_CD", COUNT(*) AS n, {newest} AS last_report FROM "{wr}" '
        f'WHERE "REPORT_DT" >= %s AND "REPORT_DT" <= %s GROUP BY "ITEM_CD" HAVING COUNT(*) >= %s) w '
        f'JOIN "{it}" i ON i."ITEM_CD" = w."ITEM_CD" '
        f'WHERE EXISTS (SELECT 1 FROM "{ro}" r WHERE r."ITEM_CD" = w."ITEM_CD")'
    )
    with connections[_alias()].cursor() as cursor:
        # Adapted as the ORM adapts a DateTimeField: SQLite stores naive UTC text, and a raw aware datetime
        # ("+00:00") would be compared with it as text, leaving out a row reported exactly at the start.
        cursor.execute(sql, [db_datetime(start, _alias()), db_datetime(end, _alias()), min_rows])
        rows = cursor.fetchall()
    frame = pd.DataFrame(rows, columns=["ITEM_CD", "PART_TYPE", "rows", "last_report"])
    frame["PART_TYPE"] = frame["PART_TYPE"].fillna("(none)")
    return frame.sort_values("ITEM_CD", kind="stable").reset_index(drop=True), start, end


def largest_remainder(counts: pd.Series, n: int) -> pd.Series:
    """Split n across strata in proportion to their sizes (Hamilton's method), capped by each stratum's size.

    Quotas are never negative, sum to min(n, total), and depend only on the counts (ties go to the
    stratum that sorts first), so the same data and n always give the same allocation.
    """
    counts = counts[counts > 0].sort_index().astype(np.int64)
    n = min(int(n), int(counts.sum()))
    quota = pd.Series(0, index=counts.index, dtype=np.int64)
    # A stratum smaller than its share is filled and the rest re-shared among the others; each round places ≥ 1.
    while (remaining := n - int(quota.sum())) > 0:
        room = counts - quota
        open_sizes = counts[room > 0]
        exact = open_sizes / open_sizes.sum() * remaining
        base = np.floor(exact).astype(np.int64)
        by_remainder = sorted(open_sizes.index, key=lambda key: (-(exact[key] - base[key]), str(key)))
        for key in by_remainder[: remaining - int(base.sum())]:
            base[key] += 1
        quota[base.index] += np.minimum(base, room[base.index])
    return quota


def choose(eligible: pd.DataFrame, size: int, strategy: str, seed: int) -> list[str]:
    """Pick up to `size` item codes from the eligible ones, deterministically for a seed."""
    if eligible.empty:
        return []
    rng = np.random.default_rng(seed)
    if strategy == "recent":
        ordered = eligible.sort_values(["last_report", "ITEM_CD"], ascending=[False, True])
        return ordered["ITEM_CD"].head(size).tolist()
    if strategy == "random":
        n = min(size, len(eligible))
        return sorted(eligible["ITEM_CD"].to_numpy()[rng.choice(len(eligible), size=n, replace=False)].tolist())
    quotas = largest_remainder(eligible.groupby("PART_TYPE").size(), size)
    chosen: list[str] = []
    for part_type, quota in quotas.items():
        if quota <= 0:
            continue
        codes = eligible.loc[eligible["PART_TYPE"] == part_type, "ITEM_CD"].to_numpy()
        chosen.extend(codes[rng.choice(len(codes), size=int(quota), replace=False)].tolist())
    return sorted(chosen)


def _as_set(codes) -> frozenset[str] | set[str]:
    return codes if isinstance(codes, frozenset | set) else set(np.asarray(codes).astype(str).tolist())


def is_in(values, codes) -> np.ndarray:
    """`np.isin(values, codes)` for item codes, by hashing: numpy sorts both string arrays instead,
    ~0.3 s for the ~300,000 learned codes of a 325k-item version (`codes` may be a prepared set)."""
    codes = _as_set(codes)
    values = np.asarray(values).astype(str).tolist() if not isinstance(values, list) else values
    return np.fromiter((value in codes for value in values), dtype=bool, count=len(values))


def outside(eligible: pd.DataFrame, codes) -> pd.DataFrame:
    """The eligible items whose code is not in `codes` (an array or a set of item codes)."""
    if eligible.empty or len(codes) == 0:
        return eligible
    return eligible[~is_in(eligible["ITEM_CD"].to_numpy(), codes)]


_CODE_SETS: dict[int, tuple[object, frozenset[str], frozenset[str]]] = {}


def learned_code_sets(model) -> tuple[frozenset[str], frozenset[str]]:
    """(monitoring codes, learned-fit codes) of a loaded model as sets, built once per loaded model
    (the bundle's arrays never change; the two or three cycles and gates of a day reuse them)."""
    cached = _CODE_SETS.get(id(model))
    if cached is None or cached[0] is not model:
        cached = (model, frozenset(_as_set(model.monitoring_codes)), frozenset(_as_set(model.fit_codes)))
        if len(_CODE_SETS) >= 2:  # a champion and a challenger at most; keep memory bounded
            _CODE_SETS.clear()
        _CODE_SETS[id(model)] = cached
    return cached[1], cached[2]


def monitoring_sample(eligible: pd.DataFrame, model, size: int, strategy: str, seed: int) -> tuple[list[str], dict]:
    """A cycle's sample: eligible items of the version's monitoring set, which no learned part of it was
    fitted on; topped up, when the set holds too few recent items, with other eligible items that no
    learned part was fitted on either. Older bundles without a monitoring set sample as before.
    """
    monitoring, fitted = learned_code_sets(model)
    codes_now = eligible["ITEM_CD"].to_numpy() if not eligible.empty else np.zeros(0, dtype=str)
    in_set = is_in(codes_now, monitoring) if monitoring else np.zeros(codes_now.size, dtype=bool)
    chosen = choose(eligible[in_set], size, strategy, seed) if in_set.any() else []
    rest = outside(eligible[~in_set], fitted)
    topped = choose(rest, size - len(chosen), strategy, seed) if len(chosen) < size else []
    info = {
        "monitoring_set": int(len(model.monitoring_codes)),
        "eligible_in_monitoring_set": int(in_set.sum()),
        "from_monitoring_set": len(chosen),
        "from_outside_learned_fits": len(topped),
    }
    return sorted(chosen + topped), info
