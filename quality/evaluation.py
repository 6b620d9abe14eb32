"""Score a model version on a set of items against what the factory actually did.

Each item is predicted through the prediction service as if it were new (it is never its own
neighbour) and compared with its current ERP routing and the actual times of its work results,
using the one metric definition of `training.engine.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
from django.conf import settings

from erp.data import load_actuals, load_current_routings, select_frame
from erp.models import Item
from predictions.service import predict_items
from training.engine import metrics as routing_metrics
from training.engine.tables import assign_occurrences


@dataclass
class Evaluation:
    """Metrics over the evaluated items, per part type, and what happened to each item."""

    model_version: str
    metrics: dict
    by_part_type: dict[str, dict]
    items: list[dict]
    items_without_actuals: list[str]
    items_failed: list[dict]
    actuals_source: dict = field(default_factory=dict)

    @property
    def items_evaluated(self) -> int:
        return int(self.metrics.get("items_evaluated", 0) or 0)


def _sequence(value) -> list[str]:
    if isinstance(value, str):
        return [part for part in value.split(">") if part]
    return list(value or [])


def prefer_unseen(actuals: pd.DataFrame, after: datetime | None) -> tuple[pd.DataFrame, dict]:
    """Per item, keep only the rows reported after `after` (the model's training cut-off) where the
    item has any — work the model has not seen — else all of its rows."""
    info = {"rows": int(len(actuals))}
    if after is None or actuals.empty:
        return actuals, info
    cutoff = pd.Timestamp(after)
    cutoff = cutoff.tz_convert("UTC").tz_localize(None) if cutoff.tzinfo else cutoff
    later = pd.to_datetime(actuals["REPORT_DT"]) > cutoff
    items_with_later = set(actuals.loc[later, "ITEM_CD"])
    kept = actuals[later | ~actuals["ITEM_CD"].isin(items_with_later)].reset_index(drop=True)
    info.update(after=cutoff.isoformat(), items_with_unseen_rows=len(items_with_later), rows_after_cutoff=int(later.sum()), rows=int(len(kept)))
    return kept, info


def _job_sequences(routings: pd.DataFrame) -> dict[str, list[str]]:
    """{item: its JOB_CD in PROC_SEQ order}: the groups of the sorted frame, split with numpy rather
    than a pandas groupby that builds a frame per item."""
    ordered = routings.sort_values(["ITEM_CD", "PROC_SEQ"])
    items, jobs = ordered["ITEM_CD"].to_numpy(), ordered["JOB_CD"].tolist()
    if not len(items):
        return {}
    starts = np.flatnonzero(np.r_[True, items[1:] != items[:-1]])
    ends = np.r_[starts[1:], len(items)]
    return {items[a]: jobs[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)}


def evaluate(item_codes: list[str], model_version: str, *, after: datetime | None = None, since: datetime | None = None) -> Evaluation:
    """Predict `item_codes` with `model_version` and score the predictions.

    `since`: only actual rows reported from then on — the recent window, so a model is judged on
    what the shop floor does now, and champion and challenger on the same rows.
    `after`: the model's training cut-off; see `prefer_unseen`.
    """
    limit = settings.PREDICTION_BATCH_LIMIT
    results = []
    for start in range(0, len(item_codes), limit):
        batch = predict_items(item_codes=item_codes[start : start + limit], model_version=model_version, include_context=False, channel="quality")
        results.extend(batch.results)
    predictions, failed = [], []
    for result in results:
        if result.ok:
            predictions.append({"item_cd": result.item_cd, "signature": _sequence(result.routing["signature"]), "operations": result.routing["operations"]})
        else:
            failed.append({"item_cd": result.item_cd, "error": result.error})
    codes = [p["item_cd"] for p in predictions]
    routings = load_current_routings(codes)
    actual_routings = _job_sequences(routings)
    actuals, source = prefer_unseen(assign_occurrences(load_actuals(codes, since=since), routings), after)
    source["since"] = since.isoformat() if since else None
    overall = routing_metrics.evaluate(predictions, actual_routings, actuals)
    with_actuals = set(actuals["ITEM_CD"]) if not actuals.empty else set()
    without = sorted(set(codes) - with_actuals)

    # Only the two columns it needs (not the whole item master row of each item).
    part_types = select_frame(Item, ["ITEM_CD", "PART_TYPE"], codes) if codes else pd.DataFrame(columns=["ITEM_CD", "PART_TYPE"])
    part_of = dict(zip(part_types["ITEM_CD"], part_types["PART_TYPE"].fillna("(none)"), strict=False))
    by_part: dict[str, dict] = {}
    for part_type in sorted(set(part_of.values())):
        subset = [p for p in predictions if part_of.get(p["item_cd"]) == part_type]
        subset_codes = {p["item_cd"] for p in subset}
        by_part[part_type] = routing_metrics.evaluate(
            subset, {c: actual_routings[c] for c in subset_codes if c in actual_routings}, actuals[actuals["ITEM_CD"].isin(subset_codes)]
        )
    items = [
        {
            "item_cd": p["item_cd"],
            "part_type": part_of.get(p["item_cd"]),
            "predicted": p["signature"],
            "actual": actual_routings.get(p["item_cd"], []),
            "process_match": round(routing_metrics.process_match(p["signature"], actual_routings.get(p["item_cd"], [])), 4),
            "has_actuals": p["item_cd"] in with_actuals,
        }
        for p in predictions
    ]
    return Evaluation(model_version, overall, by_part, items, without, failed, source)
