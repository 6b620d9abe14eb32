"""Prometheus figures of the prediction service (served at /metrics by quality.metrics_collector.exposition).

`routing_ml_predictions_total{status, channel}` counts **items**: one `ok` or `error` per item
of every batch (an unknown code in a batch of ten adds 9 ok and 1 error); a call refused as a
whole (invalid request, over the batch limit, unknown model version, no active model) adds one
`rejected`. `channel` says who asked: `api`, `page`, `reshow`, `export`, `review`, `quality` or `internal`.

`page` counts a planner's query once, when the result page first shows it; showing it again (another
page of details, a reload) re-runs it under `reshow`; a review re-asks one item under `review`. The CSV and JSON downloads
re-run that same query (the result is not kept; see `predictions.views`) and count under
`export`, so `page` + `api` are the questions asked and `export` is the re-runs for downloads:
summing every channel counts a query that was shown and downloaded twice more.

`routing_ml_prediction_duration_seconds{channel}` is the time of one service call (a whole
batch), from input check to assembled results, without HTTP and rendering (django-prometheus'
own request histograms cover those).

With several gunicorn workers each process keeps its own figures unless
PROMETHEUS_MULTIPROC_DIR is set (prometheus_client's multiprocess mode); `make run` sets it, and
/metrics then sums every worker's and the qcluster's files.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

PREDICTIONS = Counter(
    "routing_ml_predictions_total",
    "Predicted items by outcome (ok, error per item; rejected per refused request).",
    ["status", "channel"],
)
DURATION = Histogram(
    "routing_ml_prediction_duration_seconds",
    "Time of one prediction service call (a whole batch).",
    ["channel"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def record_batch(batch, channel: str) -> None:
    ok = batch.ok_count
    errors = len(batch.results) - ok
    if ok:
        PREDICTIONS.labels(status="ok", channel=channel).inc(ok)
    if errors:
        PREDICTIONS.labels(status="error", channel=channel).inc(errors)
    DURATION.labels(channel=channel).observe(batch.duration)


def record_rejected(channel: str) -> None:
    PREDICTIONS.labels(status="rejected", channel=channel).inc()
