"""deploy/: every metric the Prometheus rules and the Grafana dashboard use is exported by /metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
METRIC = re.compile(r"\b((?:routing_ml|django)_[a-zA-Z0-9_]+)")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def rule_expressions() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "routing-ml.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def used_metrics(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in METRIC.findall(expr)}


def exported_metrics(client) -> set[str]:
    client.get("/health")  # one request, so the request/response families have samples
    text = client.get("/metrics").content.decode()
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        if family.type == "counter":  # a counter family `x` is scraped as `x_total`, samples or not yet
            names.add(f"{family.name}_total")
        names.update(sample.name for sample in family.samples)
    return names


@pytest.mark.django_db
def test_every_metric_of_the_alert_rules_and_the_dashboard_is_exported(client):
    used = used_metrics(rule_expressions()) | used_metrics(dashboard_expressions())
    assert len(used) >= 15
    exported = exported_metrics(client)
    missing = sorted(
        name for name in used
        if name not in exported and not (name.endswith(HISTOGRAM_SUFFIXES) and name.rsplit("_", 1)[0] in exported)
    )
    assert missing == []


def test_rules_cover_the_runbooks_alerts():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {
        "RoutingMLMaeWarning", "RoutingMLMaeCritical", "RoutingMLProcessMatchWarning", "RoutingMLProcessMatchCritical",
        "RoutingMLNoActiveModel", "RoutingMLModelNotLoadable", "RoutingMLTrainingFailures", "RoutingMLQueueStuck",
        "RoutingMLNoQualityCycle", "RoutingMLApi5xxRatio", "RoutingMLPredictionLatencyP95",
    } <= names
    tested = yaml.safe_load((DEPLOY / "prometheus" / "alerts.test.yml").read_text())
    assert names == {case["alertname"] for test in tested["tests"] for case in test["alert_rule_test"]}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed; `make test` runs it too")
def test_promtool_accepts_the_rules_their_tests_and_the_scrape_config():
    for command in (["promtool", "test", "rules", "alerts.test.yml"], ["promtool", "check", "config", "prometheus.yml"]):
        result = subprocess.run(command, cwd=DEPLOY / "prometheus", capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
