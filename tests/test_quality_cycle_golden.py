"""A quality cycle's figures are pinned: speeding the cycle up must not change one number of its report.

The golden file was recorded from the cycle as it was before the speed work of issue 12 (point 5)
on a fixed demo ERP and a fixed training; every metric, per-part-type metric, drift figure,
per-item row, sample and population count must stay equal. Re-record it only when a metric's
*definition* changes on purpose: `UPDATE_GOLDEN=1 pytest tests/test_quality_cycle_golden.py`,
or when training gives another model on purpose (re-recorded when the settings search began to
score setup times beside run times: other settings chosen, so other predictions to grade).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from django.core.management import call_command

from quality.cycle import run_cycle
from quality.models import QualityAlert, QualitySettings

GOLDEN = Path(__file__).parent / "golden" / "quality_cycle_report.json"

# Report keys that name the run rather than measure the model.
VOLATILE = {"cycle", "duration_seconds", "retraining"}


@pytest.fixture
def trained(db):
    call_command("seed_demo_erp", items=800, seed=41, stdout=io.StringIO())
    call_command("train", sync=True, label="golden", candidates="baseline", activate=True, stdout=io.StringIO(), stderr=io.StringIO())


def _figures(cycle) -> dict:
    report = json.loads(Path(cycle.report_path).read_text())
    alerts = QualityAlert.objects.filter(last_cycle=cycle) | QualityAlert.objects.filter(cycle=cycle)
    return {
        "status": cycle.status,
        "counts": [cycle.items_sampled, cycle.items_evaluated, cycle.items_without_actuals, cycle.items_failed],
        "row_metrics": cycle.metrics,
        "row_metrics_by_part_type": cycle.metrics_by_part_type,
        "row_drift": cycle.drift,
        "row_report": cycle.report,
        "alerts": sorted((a.level, a.metric, a.value, a.threshold, a.error_code) for a in alerts.distinct()),
        "report": {k: v for k, v in report.items() if k not in VOLATILE},
    }


def _widen(cfg) -> None:
    """Make the small demo exercise every branch: a long window (many eligible items), a training
    cut-off inside it (some items are graded on rows the model never saw, others on all their rows),
    and a few items whose only recent work results are unusable (evaluated without actuals)."""
    from datetime import timedelta

    from erp.models import WorkResult
    from quality.sampling import newest_report_date
    from registry.models import ModelVersion

    cfg.recent_window_days, cfg.min_work_orders = 730, 1
    cfg.auto_retrain = False  # alerts are pinned too; a retraining job would only add noise
    cfg.save()
    newest = newest_report_date()
    ModelVersion.objects.filter(label="golden").update(training_cutoff=newest - timedelta(days=60))
    codes = sorted(set(WorkResult.objects.values_list("item_cd", flat=True)))[::40]
    WorkResult.objects.filter(item_cd__in=codes).update(order_qty=0)


def test_cycle_figures_equal_the_recorded_golden(trained):
    _widen(QualitySettings.current())
    figures = {}
    for strategy, size in (("stratified", 500), ("random", 150), ("recent", 90)):
        figures[f"{strategy}-{size}"] = _figures(run_cycle(sample_size=size, strategy=strategy))
    # Round-trip through JSON so tuples and floats compare as the file stores them.
    figures = json.loads(json.dumps(figures, default=str))
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"golden re-recorded at {GOLDEN}")
    golden = json.loads(GOLDEN.read_text())
    assert golden.keys() == figures.keys()
    for run in golden:
        for key in golden[run]:
            assert figures[run][key] == golden[run][key], f"{run}: {key} changed"
    assert figures == golden
