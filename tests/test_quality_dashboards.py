"""The quality dashboards: drift on the overview, threshold lines on the history chart, a history page that does not query per cycle."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from quality.models import QualityAlert, QualityCycle, QualitySettings


@pytest.fixture
def planner_client(client, planner):
    client.force_login(planner)
    return client


def finished_cycle(minutes_ago: int = 0, alerts: int = 0, **fields) -> QualityCycle:
    started = timezone.now() - timedelta(minutes=minutes_ago)
    fields.setdefault("metrics", {"mae": 2.0, "trim_mae": 1.8, "process_match": 0.9, "exact_match": 0.7})
    cycle = QualityCycle.objects.create(status="succeeded", sample_strategy="stratified", sample_size=500, items_evaluated=480,
                                        started_at=started, finished_at=started + timedelta(seconds=5), **fields)
    for i in range(alerts):
        QualityAlert.objects.create(cycle=cycle, level="warning", metric=f"drift:F{i}", value=0.3, threshold=0.25, message="drift")
    return cycle


def chart_shapes(page: str) -> list[dict]:
    """The threshold lines of the Plotly figure embedded in a page."""
    return [json.loads(shape) for shape in re.findall(r'\{"line":\{[^{}]*\},"type":"line",[^{}]*\}', page)]


def test_overview_lists_the_latest_cycles_drift_and_flags_features_over_the_threshold(planner_client):
    cfg = QualitySettings.current()
    cfg.drift_psi_threshold = 0.2
    cfg.save()
    finished_cycle(minutes_ago=60, drift={"GROUP1": 0.9})
    latest = finished_cycle(drift={"PART_TYPE": 0.031, "OUTDIAMETER": 0.412, "ITEM_MATERIAL": 0.21})
    page = planner_client.get("/quality/").content.decode()
    section = page[page.index('id="drift-h"'):]
    section = section[: section.index("</section>")]
    assert f"Feature drift in cycle #{latest.pk}" in section and "over 0.20 counts as drift" in section
    rows = re.findall(r"<tr><td>(\w+)</td><td class=\"num\">([\d.]+)</td><td><span class=\"badge \w+\">(\w+)</span></td></tr>", section)
    assert rows == [("OUTDIAMETER", "0.412", "drift"), ("ITEM_MATERIAL", "0.210", "drift"), ("PART_TYPE", "0.031", "stable")]
    assert "GROUP1" not in section  # an older cycle's drift is not today's


def test_overview_says_when_a_cycle_measured_no_drift(planner_client):
    finished_cycle(drift={})
    page = planner_client.get("/quality/").content.decode()
    assert "No drift measured" in page


def test_history_chart_draws_both_process_match_thresholds(planner_client):
    cfg = QualitySettings.current()
    cfg.process_match_warning, cfg.process_match_critical = 0.87, 0.81
    cfg.save()
    finished_cycle()
    page = planner_client.get("/quality/history/").content.decode()
    lines = {(shape["yref"], shape["y0"], shape["line"]["dash"]) for shape in chart_shapes(page)}
    assert {("y2", 0.87, "dot"), ("y2", 0.81, "dash"), ("y", 5.0, "dot"), ("y", 10.0, "dash")} <= lines
    assert "process match warning" in page and "process match critical" in page


def test_history_page_counts_alerts_without_a_query_per_cycle(planner_client):
    def queries_for_history() -> tuple[int, str]:
        with CaptureQueriesContext(connection) as captured:
            page = planner_client.get("/quality/history/").content.decode()
        return len(captured), page

    finished_cycle(minutes_ago=30, alerts=2)
    few, _ = queries_for_history()
    for i in range(8):
        finished_cycle(minutes_ago=i, alerts=i % 3)
    many, page = queries_for_history()
    assert many == few
    counts = re.findall(r"<td>(\d+)</td><td>[^<]*</td></tr>", page)
    assert sorted(map(int, counts)) == sorted([2] + [i % 3 for i in range(8)])
