"""Which thresholds a cycle's metrics breach. Pure: metrics and settings in, breaches out."""

from __future__ import annotations

from dataclasses import dataclass

from routing_ml.errors import ErrorCode


@dataclass(frozen=True)
class Breach:
    metric: str
    level: str  # "warning" | "critical"
    value: float
    threshold: float
    error_code: int | None
    message: str


def _number(value) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def breaches(metrics: dict, cfg, drift: dict[str, float] | None = None) -> list[Breach]:
    """One breach per metric at its worst level (a critical MAE is not also reported as a warning)."""
    found: list[Breach] = []
    mae = _number(metrics.get("mae"))
    if mae is not None:
        if mae > cfg.mae_critical:
            found.append(Breach("mae", "critical", mae, cfg.mae_critical, ErrorCode.MAE_CRITICAL,
                                f"MAE {mae:.2f} min/unit is over the critical threshold {cfg.mae_critical:g}: the model's times are far from the work orders."))
        elif mae > cfg.mae_warning:
            found.append(Breach("mae", "warning", mae, cfg.mae_warning, None, f"MAE {mae:.2f} min/unit is over the warning threshold {cfg.mae_warning:g}."))
    match = _number(metrics.get("process_match"))
    if match is not None:
        if match < cfg.process_match_critical:
            found.append(Breach("process_match", "critical", match, cfg.process_match_critical, ErrorCode.PROCESS_MATCH_CRITICAL,
                                f"Process match {match:.1%} is under the critical threshold {cfg.process_match_critical:.0%}: predicted routings often differ from the ERP."))
        elif match < cfg.process_match_warning:
            found.append(Breach("process_match", "warning", match, cfg.process_match_warning, None,
                                f"Process match {match:.1%} is under the warning threshold {cfg.process_match_warning:.0%}."))
    cv = _number(metrics.get("cv"))
    if cv is not None and cv > cfg.cv_max:
        found.append(Breach("cv", "warning", cv, cfg.cv_max, None, f"The actual run times vary a lot (CV {cv:.2f} > {cfg.cv_max:g}): MAE is less trustworthy."))
    samples = _number(metrics.get("sample_count"))
    if samples is not None and samples < cfg.sample_count_min:
        found.append(Breach("sample_count", "warning", samples, cfg.sample_count_min, None,
                            f"Only {samples:.1f} work orders per evaluated operation (< {cfg.sample_count_min:g}): too few actuals to judge times well."))
    agreement, decided = _number(metrics.get("planner_process_match")), _number(metrics.get("planner_items")) or 0
    if agreement is not None and decided >= cfg.planner_agreement_min_items:
        if agreement < cfg.planner_agreement_critical:
            found.append(Breach("planner_process_match", "critical", agreement, cfg.planner_agreement_critical, None,
                                f"Planner agreement {agreement:.1%} over {decided:.0f} decided items is under the critical threshold "
                                f"{cfg.planner_agreement_critical:.0%}: planners change most predicted routings."))
        elif agreement < cfg.planner_agreement_warning:
            found.append(Breach("planner_process_match", "warning", agreement, cfg.planner_agreement_warning, None,
                                f"Planner agreement {agreement:.1%} over {decided:.0f} decided items is under the warning threshold {cfg.planner_agreement_warning:.0%}."))
    for feature, value in sorted((drift or {}).items()):
        if value > cfg.drift_psi_threshold:
            found.append(Breach(f"drift:{feature}", "warning", value, cfg.drift_psi_threshold, None,
                                f"{feature} of recent items differs from the training data (PSI {value:.2f} > {cfg.drift_psi_threshold:g})."))
    return found
