"""Planner agreement: how often the routing a version served is the routing finally decided.

For each (item, model version) the *latest* prediction served (`PredictionLog`) is compared
with the item's *final* routing:

- the item's current ERP routing, when it was entered after that prediction (INSRT_DT later
  than the prediction: someone wrote the real routing since); otherwise
- the planner's current decision (`RoutingReview`, accepted or edited).

A current decision "rejected" has no routing to compare: it is counted (`rejected`) but takes
no part in the matches. Process match and exact match are the engine's own definitions
(`training.engine.metrics`), so the figures read like a quality cycle's — only weeks earlier,
as no work order has to exist yet.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import F, Min, Window
from django.db.models.functions import FirstValue, RowNumber
from django.utils import timezone

from training.engine.metrics import process_match

from .models import PredictionLog, RoutingReview
from .service import _chunks, _param_limit, current_routings, newest_routing_inserts

CACHE_KEY = "predictions:planner_agreement"
CACHE_SECONDS = 60


def _aware(value) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        from django.utils.dateparse import parse_datetime

        value = parse_datetime(value)
        if value is None:
            return None
    return value.replace(tzinfo=UTC) if timezone.is_naive(value) else value


def planner_agreement(*, since: datetime | None = None, model_version: str | None = None) -> dict[str, dict[str, Any]]:
    """`{version label: {items_compared, process_match, exact_match, from_erp, from_planner, rejected, items_logged}}`.

    `since`: only predictions served from then on (default: the whole retained log).
    `process_match` (mean LCS ÷ longer length) and `exact_match` (share identical) are None for a
    version with no item compared yet.
    """
    logs = PredictionLog.objects.all()
    if since is not None:
        logs = logs.filter(served_at__gte=since)
    if model_version:
        logs = logs.filter(model_version=model_version)
    # Only items with a final routing are compared: a current review, or an ERP routing entered after
    # the item's latest prediction. The others are only counted: of the retained log (one row per item
    # and request, tens of thousands) one (version, item) pair each is read, and the compared items'
    # latest predictions.
    pairs = list(logs.order_by().values_list("model_version", "item_cd").distinct())
    if not pairs:
        return {}
    logged = Counter(label for label, _ in pairs)
    codes = sorted({item_cd for _, item_cd in pairs})
    # Every current decision, kept for the logged items: planners decide far fewer items than are
    # predicted, so this reads less than asking for the logged codes (the whole log again, in SQL).
    known = set(codes)
    decisions = {
        r.item_cd: r
        for r in RoutingReview.objects.latest_per_item().only("item_cd", "decision", "decided").iterator()
        if r.item_cd in known
    }
    # Any latest prediction was served at or after the log's oldest entry, so a routing entered after a
    # prediction has an operation entered after that: the ERP is asked only for those items (a day
    # earlier still, in case the ERP stores INSRT_DT as text with a UTC offset, compared as text).
    # Which of them really count is decided below, on their current routings, as it always was.
    now = timezone.now()
    oldest = logs.aggregate(oldest=Min("served_at"))["oldest"]
    entered_later = sorted(newest_routing_inserts(codes, now, after=oldest - timedelta(days=1)))
    erp = current_routings(entered_later, with_inserted=True, when=now) if entered_later else {}
    latest = _latest_predictions(logs, sorted(set(decisions) | set(erp)))

    per_version: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"matches": [], "exact": 0, "from_erp": 0, "from_planner": 0, "rejected": 0, "items_logged": 0}
    )
    for label, items in logged.items():
        per_version[label]["items_logged"] = items
    for (item_cd, label), (signature, served_at) in latest.items():
        stats = per_version[label]
        predicted = signature.split(PredictionLog.SEPARATOR) if signature else []
        final, routing = None, erp.get(item_cd)
        inserted = _aware(routing.get("inserted")) if routing else None
        if routing and inserted is not None and inserted > served_at:
            final = list(routing["signature"])
            stats["from_erp"] += 1
        else:
            review = decisions.get(item_cd)
            if review is not None and review.decided:
                final = list(review.decided.get("signature") or [])
                stats["from_planner"] += 1
            elif review is not None:
                stats["rejected"] += 1
        if final is None:
            continue
        stats["matches"].append(process_match(predicted, final))
        stats["exact"] += int(predicted == final)

    report = {}
    for label, stats in sorted(per_version.items()):
        compared = len(stats["matches"])
        report[label] = {
            "items_compared": compared,
            "process_match": round(sum(stats["matches"]) / compared, 4) if compared else None,
            "exact_match": round(stats["exact"] / compared, 4) if compared else None,
            "from_erp": stats["from_erp"],
            "from_planner": stats["from_planner"],
            "rejected": stats["rejected"],
            "items_logged": stats["items_logged"],
        }
    return report


def _latest_predictions(logs, codes: list[str]) -> dict[tuple[str, str], tuple[str, datetime]]:
    """`{(item, version): (signature, served_at)}` of the latest prediction in `logs` of each of `codes` (ties to the highest id).

    Chosen in SQL, one row per item and version. The pairs come in the order of their first
    prediction, as a walk through the log in serving order meets them, so the agreement sums its
    matches in the same order as ever (the same float, to the last bit).
    """
    pair = [F("item_cd"), F("model_version")]
    ranked = logs.annotate(
        rank=Window(RowNumber(), partition_by=pair, order_by=[F("served_at").desc(), F("pk").desc()]),
        first_served=Window(Min("served_at"), partition_by=pair),
        first_pk=Window(FirstValue("pk"), partition_by=pair, order_by=[F("served_at").asc(), F("pk").asc()]),
    )
    rows = []
    for chunk in _chunks(codes, max(100, _param_limit("default") - 10)):
        chunk_rows = (
            ranked.filter(item_cd__in=chunk)
            .filter(rank=1)
            .values_list("first_served", "first_pk", "item_cd", "model_version", "signature", "served_at")
        )
        rows.extend(chunk_rows)
    rows.sort(key=lambda row: (row[0], row[1]))
    return {(item_cd, label): (signature, served_at) for _, _, item_cd, label, signature, served_at in rows}


def cached_planner_agreement() -> dict[str, dict[str, Any]]:
    """`planner_agreement()` over the retained log, computed at most once a minute (dashboards, Prometheus scrapes)."""
    report = cache.get(CACHE_KEY)
    if report is None:
        report = planner_agreement()
        cache.set(CACHE_KEY, report, CACHE_SECONDS)
    return report


def cycle_metrics(label: str) -> dict[str, Any]:
    """The agreement of one version as quality-cycle metrics (`planner_process_match`, `planner_exact_match`, `planner_items`)."""
    days = settings.PREDICTION_LOG_RETENTION_DAYS
    since = timezone.now() - timedelta(days=days) if days else None
    figures = planner_agreement(since=since, model_version=label).get(label) or {}
    return {
        "planner_process_match": figures.get("process_match"),
        "planner_exact_match": figures.get("exact_match"),
        "planner_items": figures.get("items_compared", 0),
    }
