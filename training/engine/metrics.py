"""The one definition of routing quality, used by training, quality cycles and the API.

Per evaluated item the predicted routing (ordered JOB_CD list) is compared with the actual
one (the item's current routing); predicted times are compared with the item's actual
work-result times on the operations that the longest common subsequence (LCS) aligns, each
operation with the work orders of *that* operation (the second GRIND with the second GRIND's).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import trim_mean

from .tables import OCC_COLUMN

TRIM = 0.1

METRIC_NAMES = (
    "process_match",
    "exact_match",
    "op_precision",
    "op_recall",
    "op_f1",
    "mae",
    "trim_mae",
    "rmse",
    "setup_mae",
    "cv",
    "sample_count",
    "res_match",
    "items_evaluated",
    "items_without_actuals",
    "operations_compared",
)


def _lcs_table(a: Sequence, b: Sequence) -> list[list[int]]:
    """table[i][j] = LCS length of a[i:] and b[j:] (suffix form makes the walk-back forward)."""
    n, m = len(a), len(b)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        row, below = table[i], table[i + 1]
        ai = a[i]
        for j in range(m - 1, -1, -1):
            row[j] = below[j + 1] + 1 if ai == b[j] else max(below[j], row[j + 1])
    return table


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence of `a` and `b`."""
    return _lcs_table(a, b)[0][0] if a and b else 0


def lcs_pairs(a: Sequence, b: Sequence) -> list[tuple[int, int]]:
    """Index pairs (i, j), a[i] == b[j], of one longest common subsequence, in order.

    On ties the earliest match is taken, so repeated codes align left to right.
    """
    if not a or not b:
        return []
    table = _lcs_table(a, b)
    pairs = []
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            pairs.append((i, j))
            i += 1
            j += 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


def process_match(predicted: Sequence, actual: Sequence) -> float:
    """LCS length ÷ the longer length (1.0 when both are empty)."""
    longest = max(len(predicted), len(actual))
    return lcs_length(predicted, actual) / longest if longest else 1.0


def actual_time_stats(actual_times: pd.DataFrame, items: set[str] | None = None) -> pd.DataFrame:
    """Per operation (ITEM_CD, JOB_CD, OP_OCC): mean/std/count of actual run minutes per unit and mean setup minutes.

    `OP_OCC` (see `tables.assign_occurrences`) tells the first GRIND of a routing from the
    second; rows it could not place (-1) are left out. Without the column every row counts as
    the first occurrence.
    """
    cols = ["ITEM_CD", "JOB_CD", OCC_COLUMN, "RUN_MINUTES_PER_UNIT", "SETUP_MINUTES"]
    if actual_times is None or len(actual_times) == 0:
        return pd.DataFrame(columns=["run_mean", "run_std", "run_count", "setup_mean"])
    frame = actual_times[[c for c in cols if c in actual_times.columns]].copy()
    frame["ITEM_CD"] = frame["ITEM_CD"].astype(str)
    frame["JOB_CD"] = frame["JOB_CD"].astype(str).str.strip()
    if OCC_COLUMN not in frame.columns:
        frame[OCC_COLUMN] = 0
    frame[OCC_COLUMN] = pd.to_numeric(frame[OCC_COLUMN], errors="coerce").fillna(-1).astype(np.int64)
    frame = frame[frame[OCC_COLUMN] >= 0]
    if items is not None:
        frame = frame[frame["ITEM_CD"].isin(items)]
    run = pd.to_numeric(frame["RUN_MINUTES_PER_UNIT"], errors="coerce")
    frame["RUN_MINUTES_PER_UNIT"] = run.where(run >= 0)
    if "SETUP_MINUTES" in frame.columns:
        setup = pd.to_numeric(frame["SETUP_MINUTES"], errors="coerce")
        frame["SETUP_MINUTES"] = setup.where(setup >= 0)
    else:
        frame["SETUP_MINUTES"] = np.nan
    grouped = frame.groupby(["ITEM_CD", "JOB_CD", OCC_COLUMN], sort=False)
    stats = grouped["RUN_MINUTES_PER_UNIT"].agg(run_mean="mean", run_std="std", run_count="count")
    stats["setup_mean"] = grouped["SETUP_MINUTES"].mean()
    return stats[stats["run_count"] > 0]


def _occurrences(sequence: list[str]) -> list[int]:
    """For each position, how often its code appeared before it (0 for a first GRIND, 1 for the second)."""
    seen: Counter = Counter()
    out = []
    for code in sequence:
        out.append(seen[code])
        seen[code] += 1
    return out


def _mean_or_none(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def evaluate(
    predictions: list[dict[str, Any]],
    actual_routings: dict[str, list[str]],
    actual_times: pd.DataFrame | None,
    actual_work_centres: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Quality of `predictions` (records as returned by `RoutingModel.predict`).

    Items without an entry in `actual_routings` are not evaluated. Evaluated items without
    any usable actual time still count in the routing metrics and in `items_without_actuals`.
    Time metrics are in minutes (run: minutes per unit); they are None when nothing could be
    compared. With `actual_work_centres` ({item: RES_CD per operation of the actual routing}),
    `res_match` is the share of aligned operations whose predicted work centre is the actual one.
    """
    evaluated = [p for p in predictions if p.get("item_cd") is not None and str(p["item_cd"]) in actual_routings]
    codes = {str(p["item_cd"]) for p in evaluated}
    stats = actual_time_stats(actual_times, codes)
    # {(item, job, occurrence): (run mean, run count, setup mean)}; to_dict("index") cost more than the loop below.
    lookup = dict(
        zip(
            stats.index,
            zip(stats["run_mean"].to_numpy(float), stats["run_count"].to_numpy(), stats["setup_mean"].to_numpy(float), strict=True),
            strict=True,
        )
    )
    items_with_actuals = {key[0] for key in lookup}

    matches: list[float] = []
    exact = 0
    inter = n_pred = n_act = 0
    run_err: list[float] = []
    setup_err: list[float] = []
    counts: list[int] = []
    without_actuals = 0
    res_hits = res_compared = 0
    for pred in evaluated:
        item = str(pred["item_cd"])
        actual = [str(j) for j in actual_routings[item]]
        ops = pred.get("operations") or []
        predicted = [str(op["job_cd"]) for op in ops] if ops else [str(j) for j in pred.get("signature", [])]
        longest = max(len(predicted), len(actual))
        same = predicted == actual
        # Most predictions are exact: their alignment is position by position, as lcs_pairs would find.
        pairs = [(i, i) for i in range(len(actual))] if same else lcs_pairs(predicted, actual)
        matches.append(len(pairs) / longest if longest else 1.0)
        exact += same
        inter += len(actual) if same else sum((Counter(predicted) & Counter(actual)).values())
        n_pred += len(predicted)
        n_act += len(actual)
        if actual_work_centres is not None and item in actual_work_centres:
            centres = actual_work_centres[item]
            for i, j in pairs:
                if i < len(ops) and j < len(centres):
                    res_compared += 1
                    res_hits += str(ops[i].get("res_cd")) == str(centres[j])
        if item not in items_with_actuals:
            without_actuals += 1
            continue
        occurrence = _occurrences(actual)
        for i, j in pairs:
            row = lookup.get((item, actual[j], occurrence[j]))
            if row is None or i >= len(ops):
                continue
            run_mean, run_count, setup_mean = row
            run = ops[i].get("run_minutes_per_unit")
            if run is not None:
                run_err.append(abs(float(run) - run_mean))
                counts.append(int(run_count))
            setup = ops[i].get("setup_minutes")
            if setup is not None and setup_mean == setup_mean:
                setup_err.append(abs(float(setup) - setup_mean))

    precision = inter / n_pred if n_pred else 0.0
    recall = inter / n_act if n_act else 0.0
    errs = np.asarray(run_err, dtype=float)
    cv_rows = stats[(stats["run_count"] >= 2) & (stats["run_mean"] > 0)]
    return {
        "process_match": _mean_or_none(matches),
        "exact_match": exact / len(evaluated) if evaluated else None,
        "op_precision": precision,
        "op_recall": recall,
        "op_f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "mae": float(errs.mean()) if errs.size else None,
        "trim_mae": float(trim_mean(errs, TRIM)) if errs.size else None,
        "rmse": float(np.sqrt(np.mean(errs**2))) if errs.size else None,
        "setup_mae": _mean_or_none(setup_err),
        "cv": float((cv_rows["run_std"] / cv_rows["run_mean"]).mean()) if len(cv_rows) else None,
        "sample_count": _mean_or_none(counts),
        "res_match": res_hits / res_compared if res_compared else None,
        "items_evaluated": len(evaluated),
        "items_without_actuals": without_actuals,
        "operations_compared": int(errs.size),
    }
