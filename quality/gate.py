"""The deployment gate: a retrained version (challenger) must beat the active one (champion).

Both are scored on the same recent evaluation sample (the one of the cycle that raised the alert,
which the retraining kept out of its learned time estimators' training rows) and the same actual
work results. With
`auto_deploy` on, the challenger is activated only if its MAE is at least `min_improvement_pct`
better and its process match is not worse (beyond a half-point of sampling noise); otherwise it
stays `ready`. The decision and both scores are recorded on the job (and on the DeploymentEvent
when deployed).
"""

from __future__ import annotations

import logging

import numpy as np
from django.utils import timezone

from registry.loader import loader
from registry.models import DeploymentEvent, ModelVersion

from .evaluation import evaluate
from .models import QualitySettings
from .sampling import choose, eligible_items, outside

logger = logging.getLogger(__name__)

# Process match on a few hundred items moves by about a point between two equal models; half a
# point below the champion still counts as "not worse".
PROCESS_MATCH_TOLERANCE = 0.005
SCORED = ("mae", "trim_mae", "process_match", "exact_match", "op_f1", "setup_mae", "items_evaluated")


def decide(champion: dict, challenger: dict, min_improvement_pct: float) -> tuple[bool, str]:
    """Pure decision on two metric dicts."""
    c_mae, n_mae = champion.get("mae"), challenger.get("mae")
    c_pm, n_pm = champion.get("process_match"), challenger.get("process_match")
    if n_mae is None or c_mae is None or n_pm is None or c_pm is None:
        return False, "Not comparable: a version has no MAE or process match on the evaluation sample."
    needed = c_mae * (1 - min_improvement_pct / 100.0)
    if n_mae > needed:
        return False, f"Challenger MAE {n_mae:.3f} is not {min_improvement_pct:g}% better than champion MAE {c_mae:.3f} (needs ≤ {needed:.3f})."
    if n_pm < c_pm - PROCESS_MATCH_TOLERANCE:
        return False, f"Challenger process match {n_pm:.3f} is worse than the champion's {c_pm:.3f}."
    return True, f"Challenger MAE {n_mae:.3f} vs champion {c_mae:.3f} (≥ {min_improvement_pct:g}% better); process match {n_pm:.3f} vs {c_pm:.3f}."


def gate_sample(eligible, champion: ModelVersion, challenger: ModelVersion, requested: list[str], cfg: QualitySettings) -> tuple[list[str], dict]:
    """The items both versions are scored on: only items that no learned part of *either* version was fitted on.

    The cycle's sample that asked for the job comes first (the retraining kept it out of its fits);
    items either version learned from are dropped, and the sample is topped up from the other
    eligible items outside both fits. Symmetric: swapping the two versions gives the same sample.
    """
    fitted = np.union1d(*(np.asarray(loader.get(v.label)[1].fit_codes).astype(str) for v in (champion, challenger)))
    kept = sorted(set(map(str, requested)) - set(fitted.tolist()))
    pool = outside(outside(eligible, fitted), np.array(kept, dtype=str))
    topped = choose(pool, cfg.sample_size - len(kept), cfg.sample_strategy, cfg.sample_seed) if len(kept) < cfg.sample_size else []
    info = {"requested": len(requested), "dropped_as_fitted": len(set(map(str, requested))) - len(kept), "topped_up": len(topped), "fitted_by_either": int(fitted.size)}
    return sorted(kept + topped), info


def run_gate(job, challenger: ModelVersion) -> dict:
    cfg = QualitySettings.current()
    champion = ModelVersion.objects.get_active()
    record = {"at": timezone.now().isoformat(), "challenger": challenger.label, "auto_deploy": cfg.auto_deploy, "min_improvement_pct": cfg.min_improvement_pct}
    if champion is None:
        deploy, reason = True, "No active version: the challenger has no champion to beat."
    else:
        record["champion"] = champion.label
        eligible, window_start, _ = eligible_items(cfg.recent_window_days, cfg.min_work_orders)
        codes, record["population"] = gate_sample(eligible, champion, challenger, (job.parameters or {}).get("gate_items") or [], cfg)
        if not codes:
            deploy, reason = False, "No recent items with work results to compare the two versions on."
        else:
            champ = evaluate(codes, champion.label, since=window_start)
            chall = evaluate(codes, challenger.label, since=window_start)
            record["sample_size"] = len(codes)
            record["champion_metrics"] = {k: champ.metrics.get(k) for k in SCORED}
            record["challenger_metrics"] = {k: chall.metrics.get(k) for k in SCORED}
            deploy, reason = decide(champ.metrics, chall.metrics, cfg.min_improvement_pct)
    record["better"] = deploy
    record["reason"] = reason
    if deploy and cfg.auto_deploy:
        event = challenger.activate(reason=f"auto-deploy after training job {job.pk}: {reason}", kind=DeploymentEvent.Kind.AUTO_DEPLOY, details=record)
        record["deployed"] = True
        record["deployment_event"] = event.pk
    else:
        record["deployed"] = False
        if deploy:
            record["reason"] += " auto_deploy is off: the challenger stays ready for an ML admin to activate."
    job.gate = record
    job.save(update_fields=["gate"])
    job.append_log(f"gate: {'deployed' if record['deployed'] else 'kept'} {challenger.label} — {record['reason']}")
    return record


def on_version_trained(sender, job, version, **kwargs) -> None:
    """Gate every retraining job that asked for it (quality-alert retraining does)."""
    if (job.parameters or {}).get("gate"):
        run_gate(job, version)
