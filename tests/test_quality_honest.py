"""Honest monitoring: cycles and the deployment gate grade versions on items no learned part of them saw,
and actuals after the training cut-off are preferred. Through the real entry points (train command,
cycle command, the gate)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.core.management import call_command

from quality.evaluation import prefer_unseen
from quality.gate import gate_sample, run_gate
from quality.models import QualityCycle, QualitySettings
from quality.sampling import eligible_items
from registry.loader import loader
from registry.models import ModelVersion
from training.models import TrainingJob

pytestmark = pytest.mark.postgres


def test_actuals_after_the_cutoff_are_preferred_on_rows_either_side_of_it():
    cutoff = pd.Timestamp("2026-06-01 12:00")
    actuals = pd.DataFrame(
        {
            "ITEM_CD": ["A", "A", "A", "B", "B", "C"],
            "REPORT_DT": [cutoff - pd.Timedelta(days=1), cutoff, cutoff + pd.Timedelta(seconds=1), cutoff - pd.Timedelta(days=3), cutoff, cutoff + pd.Timedelta(days=2)],
            "RUN_MINUTES_PER_UNIT": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        }
    )
    kept, info = prefer_unseen(actuals, cutoff.to_pydatetime())
    # A has a row after the cut-off: only that one counts; a row exactly at the cut-off was seen in training.
    # B has none after it: all its rows are kept. C only has later rows.
    assert kept.sort_values(["ITEM_CD", "REPORT_DT"])["RUN_MINUTES_PER_UNIT"].tolist() == [3.0, 4.0, 5.0, 6.0]
    assert info["items_with_unseen_rows"] == 2 and info["rows_after_cutoff"] == 2 and info["rows"] == 4
    # An aware cut-off means the same moment.
    aware, _ = prefer_unseen(actuals, cutoff.tz_localize("UTC").to_pydatetime())
    assert aware["RUN_MINUTES_PER_UNIT"].tolist() == kept["RUN_MINUTES_PER_UNIT"].tolist()


def _train(label: str, **options) -> ModelVersion:
    call_command("train", sync=True, label=label, stdout=io.StringIO(), stderr=io.StringIO(), **options)
    return ModelVersion.objects.get(label=label)


@pytest.mark.django_db(transaction=True)
def test_cycles_and_the_gate_grade_only_on_items_outside_every_learned_fit():
    call_command("seed_demo_erp", items=1500, seed=7, stdout=io.StringIO())
    # The champion ships a learned time estimator (forced by a negative improvement threshold).
    champion = _train("champion", candidates="baseline,mlp", min_improvement_pct=-100, activate=True)
    challenger = _train("challenger", candidates="baseline")
    champion_model, challenger_model = loader.get("champion")[1], loader.get("challenger")[1]
    assert champion_model.selected == "mlp" and len(champion_model.fit_codes) > 0
    fitted = set(champion_model.fit_codes.tolist()) | set(challenger_model.fit_codes.tolist())

    # A cycle samples the champion's monitoring set and says how many evaluated items it learned from: none.
    out = io.StringIO()
    call_command("run_quality_cycle", sync=True, json=True, stdout=out)
    summary = json.loads(out.getvalue().strip().splitlines()[-1])
    report = json.loads(Path(QualityCycle.objects.get(pk=summary["cycle"]).report_path).read_text())
    assert summary["items_evaluated"] > 50
    assert report["population"]["evaluated_in_learned_fit"] == 0
    assert not set(report["sample"]["items"]) & set(champion_model.fit_codes.tolist())
    assert report["population"]["from_monitoring_set"] > 0

    # The gate's sample holds no item either version was fitted on, and does not depend on which is which.
    cfg = QualitySettings.current()
    eligible, _, _ = eligible_items(cfg.recent_window_days, cfg.min_work_orders)
    asked = sorted(np.random.default_rng(0).choice(eligible["ITEM_CD"].to_numpy(), size=60, replace=False).tolist())
    one, info = gate_sample(eligible, champion, challenger, asked, cfg)
    other, _ = gate_sample(eligible, challenger, champion, asked, cfg)
    assert one == other and len(one) > 50
    assert not set(one) & fitted
    assert info["dropped_as_fitted"] == len(set(asked) & fitted) > 0

    # Through the gate itself: both versions scored on that sample.
    job = TrainingJob.objects.get(model_version=challenger)
    job.parameters = {**job.parameters, "gate": True, "gate_items": asked}
    job.save(update_fields=["parameters"])
    record = run_gate(job, challenger)
    assert record["sample_size"] == len(one)
    assert record["population"]["fitted_by_either"] == len(fitted)
    assert record["champion_metrics"]["items_evaluated"] == record["challenger_metrics"]["items_evaluated"] > 0
