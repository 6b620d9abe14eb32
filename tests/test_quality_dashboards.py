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


def _figure(page: str) -> dict:
    """The Plotly figure embedded in a dashboard page (data and layout)."""
    match = re.search(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*(\{.*?\}),\s*\{"displaylogo"', page, re.S)
    assert match, "no Plotly figure on the page"
    return {"data": json.loads(match.group(1)), "layout": json.loads(match.group(2))}


def test_history_chart_has_one_quantity_per_axis_deployments_on_hover_and_a_day_around_one_cycle(planner_client):
    from registry.models import DeploymentEvent, ModelVersion

    version = ModelVersion.objects.create(label="v-chart", status="ready", artifact_path="v-chart")
    DeploymentEvent.objects.create(kind="activate", to_version=version, created_at=timezone.now() - timedelta(hours=1))
    cycle = finished_cycle()
    figure = _figure(planner_client.get("/quality/history/").content.decode())
    layout = figure["layout"]
    assert "overlaying" not in layout["yaxis2"]  # minutes above, shares below: separate panels
    assert layout["yaxis"]["domain"][0] > layout["yaxis2"]["domain"][1]
    assert {t["name"]: t["yaxis"] for t in figure["data"] if t["name"] != "deployments"} == {
        "MAE": "y", "trim MAE": "y", "process match": "y2", "exact match": "y2",
    }  # fmt: skip
    assert layout["yaxis2"]["range"] == [0, 1.05] and layout["yaxis2"]["tickformat"] == ".0%"
    # The trained model's activation is a marker with its label on hover, not text drawn over the chart.
    deployments = next(t for t in figure["data"] if t["name"] == "deployments")
    assert deployments["mode"] == "markers" and deployments["hovertext"][0].startswith("activate: v-chart")
    assert not any("activate" in (a.get("text") or "") for a in layout.get("annotations", []))
    # One cycle: the time axis spans a day around it, not a few milliseconds.
    from datetime import datetime

    start, end = (datetime.fromisoformat(v) for v in layout["xaxis"]["range"])
    assert end - start >= timedelta(hours=24)
    assert start < cycle.started_at < end


def test_history_table_is_filtered_by_the_part_type_of_the_chart(planner_client):
    both = finished_cycle(minutes_ago=20, metrics_by_part_type={"SLEEVE": {"mae": 1.25, "process_match": 0.5, "items_evaluated": 7},
                                                                "GLAND": {"mae": 9.0, "items_evaluated": 3}})  # fmt: skip
    gland_only = finished_cycle(minutes_ago=10, metrics_by_part_type={"GLAND": {"mae": 4.0, "items_evaluated": 5}})
    page = planner_client.get("/quality/history/", {"part_type": "SLEEVE"}).content.decode()
    table = page[page.index('id="cycles-h"') :]
    assert f">#{both.pk}<" in table and f">#{gland_only.pk}<" not in table
    row = re.search(rf">#{both.pk}<.*?</tr>", table, re.S).group(0)
    assert '<td class="num">7</td>' in row and "1.250" in row and "0.500" in row and "2.000" not in row
