"""Dashboards: overview, quality history, model comparison (server-rendered, Plotly)."""

from __future__ import annotations

import hmac
import ipaddress
from datetime import timedelta

import plotly.graph_objects as go
from django.conf import settings
from django.contrib.auth.decorators import login_required, permission_required
from django.db.models import Count
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from predictions.views import plotly_version
from registry.models import DeploymentEvent, ModelVersion
from training.models import TrainingJob

from .metrics_collector import exposition
from .models import QualityAlert, QualityCycle, QualitySettings

DASHBOARD_PERM = "quality.view_dashboard"
HISTORY_LIMIT = 200
COMPARED_METRICS = ["process_match", "exact_match", "op_precision", "op_recall", "op_f1", "mae", "trim_mae", "rmse", "setup_mae", "cv", "sample_count",
                    "items_evaluated", "items_without_actuals"]


def _state(value, warning, critical, higher_is_worse: bool) -> str:
    if value is None:
        return ""
    if higher_is_worse:
        return "bad" if value > critical else "warn" if value > warning else "ok"
    return "bad" if value < critical else "warn" if value < warning else "ok"


def _figure_html(fig: go.Figure, height: int = 340) -> str:
    fig.update_layout(margin={"l": 50, "r": 20, "t": 40, "b": 40}, height=height, template="plotly_white", legend={"orientation": "h"})
    return fig.to_html(include_plotlyjs=False, full_html=False, config={"displaylogo": False, "responsive": True})


def _with_nonce(chart_html: str, request) -> str:
    """Plotly's chart HTML carries one inline <script>: give it this response's CSP nonce so the policy lets it run."""
    if not chart_html:
        return chart_html
    if not hasattr(request, "csp_nonce"):
        return chart_html
    return chart_html.replace("<script>", f'<script nonce="{request.csp_nonce!s}">')  # reading the nonce puts it in the header


@login_required
@permission_required(DASHBOARD_PERM, raise_exception=True)
def overview(request):
    cfg = QualitySettings.current()
    latest = QualityCycle.objects.latest_finished()
    last_any = QualityCycle.objects.order_by("-started_at", "-pk").first()
    metrics = latest.metrics if latest else {}
    tiles = [
        ("MAE (min/unit)", metrics.get("mae"), f"warn > {cfg.mae_warning:g}, critical > {cfg.mae_critical:g}", _state(metrics.get("mae"), cfg.mae_warning, cfg.mae_critical, True), 3),
        ("Process match", metrics.get("process_match"), f"warn < {cfg.process_match_warning:g}, critical < {cfg.process_match_critical:g}",
         _state(metrics.get("process_match"), cfg.process_match_warning, cfg.process_match_critical, False), 3),
        ("Exact match", metrics.get("exact_match"), "share of identical routings", "", 3),
        ("Trim MAE", metrics.get("trim_mae"), "10 % trimmed", "", 3),
        ("CV of actuals", metrics.get("cv"), f"max {cfg.cv_max:g}", "warn" if (metrics.get("cv") or 0) > cfg.cv_max else "ok" if metrics.get("cv") is not None else "", 3),
    ]
    context = {
        "active": ModelVersion.objects.get_active(),
        "latest": latest,
        "drift": _drift_rows(latest, cfg),
        "last_any": last_any,
        "tiles": tiles,
        "agreement": _agreement_rows(cfg),
        "alerts": QualityAlert.objects.open().select_related("cycle")[:20],
        "jobs": TrainingJob.objects.select_related("model_version")[:10],
        "in_flight": TrainingJob.objects.in_flight().count(),
        "cfg": cfg,
        "chart": _history_chart(list(QualityCycle.objects.finished().select_related("model_version").order_by("-started_at")[:60])[::-1], cfg) if latest else "",
        "plotly_version": plotly_version(),
    }
    context["chart"] = _with_nonce(context["chart"], request)
    return render(request, "quality/overview.html", context)


def _agreement_rows(cfg: QualitySettings) -> list[dict]:
    """Planner agreement per model version (newest first), each with its state against the thresholds."""
    from predictions.agreement import cached_planner_agreement

    rows = []
    for label, figures in cached_planner_agreement().items():
        judged = figures["items_compared"] >= cfg.planner_agreement_min_items
        state = _state(figures["process_match"], cfg.planner_agreement_warning, cfg.planner_agreement_critical, False) if judged else ""
        rows.append({"label": label, **figures, "state": state})
    created = dict(ModelVersion.objects.filter(label__in=[r["label"] for r in rows]).values_list("label", "created_at"))
    return sorted(rows, key=lambda r: (created.get(r["label"]) is not None, created.get(r["label"]) or 0), reverse=True)


def _drift_rows(cycle: QualityCycle | None, cfg: QualitySettings) -> list[tuple[str, float, bool]]:
    """(feature, PSI, over the threshold) of a cycle, the most drifted first."""
    if cycle is None:
        return []
    psi = {name: value for name, value in (cycle.drift or {}).items() if value is not None}
    return [(name, value, value > cfg.drift_psi_threshold) for name, value in sorted(psi.items(), key=lambda kv: (-kv[1], kv[0]))]


def _history_chart(cycles: list[QualityCycle], cfg, part_type: str | None = None) -> str:
    """Quality over time in two panels sharing the time axis: minutes above, shares (0–1) below.

    One quantity per axis; thresholds as lines; deployments as markers with their label on hover
    (labels drawn on the chart would overlap); a single cycle gets a day either side, not an axis
    of milliseconds.
    """
    from plotly.subplots import make_subplots

    def series(name):
        if part_type:
            return [(c.metrics_by_part_type or {}).get(part_type, {}).get(name) for c in cycles]
        return [(c.metrics or {}).get(name) for c in cycles]

    x = [c.started_at for c in cycles]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.5, 0.5])
    fig.add_trace(go.Scatter(x=x, y=series("mae"), name="MAE", mode="lines+markers", hovertemplate="%{y:.2f} min/unit"), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=series("trim_mae"), name="trim MAE", mode="lines+markers", hovertemplate="%{y:.2f} min/unit"), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=series("process_match"), name="process match", mode="lines+markers", hovertemplate="%{y:.1%}"), row=2, col=1)
    fig.add_trace(go.Scatter(x=x, y=series("exact_match"), name="exact match", mode="lines+markers", hovertemplate="%{y:.1%}"), row=2, col=1)
    thresholds = (
        ("y", cfg.mae_warning, "dot", "#a86a00", "MAE warning"),
        ("y", cfg.mae_critical, "dash", "#b3261e", "MAE critical"),
        ("y2", cfg.process_match_warning, "dot", "#7b1fa2", "process match warning"),
        ("y2", cfg.process_match_critical, "dash", "#7b1fa2", "process match critical"),
    )
    for yref, value, dash, color, text in thresholds:
        fig.add_shape(type="line", xref="paper", x0=0, x1=1, yref=yref, y0=value, y1=value, line={"dash": dash, "color": color, "width": 1})
        fig.add_annotation(xref="paper", x=1, xanchor="right", yref=yref, y=value, text=text, showarrow=False, font={"size": 10, "color": color}, yshift=7)
    if x:
        start, end = min(x), max(x)
        pad = max(timedelta(hours=12), (end - start) * 0.03)
        fig.update_xaxes(range=[start - pad, end + pad])
        events = list(DeploymentEvent.objects.filter(created_at__gte=start - pad).select_related("to_version"))
        if events:
            fig.add_trace(
                go.Scatter(
                    x=[e.created_at for e in events], y=[1.0] * len(events), name="deployments", mode="markers",
                    marker={"symbol": "triangle-down", "size": 11, "color": "#1f5fa8"},
                    hovertext=[f"{e.kind}: {e.to_version} ({e.created_at:%Y-%m-%d %H:%M})" for e in events], hoverinfo="text",
                ),
                row=2, col=1,
            )  # fmt: skip
    fig.update_yaxes(title_text="minutes per unit", rangemode="tozero", nticks=6, row=1, col=1)
    fig.update_yaxes(title_text="share", range=[0, 1.05], tickformat=".0%", dtick=0.2, row=2, col=1)
    fig.update_layout(title=f"Quality over time{' — ' + part_type if part_type else ''}", hovermode="x unified")
    return _figure_html(fig, height=480)


def _history_rows(cycles: list[QualityCycle], part_type: str | None) -> list[dict]:
    """The history table, filtered like the chart: with a part type, that part type's metrics of the cycles that measured it."""
    rows = []
    for c in cycles:
        if part_type:
            metrics = (c.metrics_by_part_type or {}).get(part_type)
            if not metrics:
                continue
            items = metrics.get("items_evaluated")
        else:
            metrics, items = c.metrics or {}, c.items_evaluated
        rows.append({"cycle": c, "metrics": metrics, "items": items})
    return rows


@login_required
@permission_required(DASHBOARD_PERM, raise_exception=True)
def history(request):
    cfg = QualitySettings.current()
    cycles = list(
        QualityCycle.objects.finished().select_related("model_version").annotate(alert_count=Count("alerts")).order_by("-started_at")[:HISTORY_LIMIT]
    )[::-1]
    part_types = sorted({pt for c in cycles for pt in (c.metrics_by_part_type or {})})
    chosen = request.GET.get("part_type") or None
    if chosen and chosen not in part_types:
        chosen = None
    context = {
        "rows": _history_rows(cycles[::-1], chosen),
        "chart": _history_chart(cycles, cfg, chosen) if cycles else "",
        "part_types": part_types,
        "chosen": chosen,
        "plotly_version": plotly_version(),
    }
    context["chart"] = _with_nonce(context["chart"], request)
    return render(request, "quality/history.html", context)


@login_required
@permission_required(DASHBOARD_PERM, raise_exception=True)
def compare(request):
    versions = list(ModelVersion.objects.exclude(status=ModelVersion.Status.FAILED).order_by("-created_at")[:100])
    active = next((v for v in versions if v.is_active), None)
    a_label = request.GET.get("a") or (active.label if active else (versions[0].label if versions else None))
    b_label = request.GET.get("b") or next((v.label for v in versions if v.label != a_label), None)
    a = get_object_or_404(ModelVersion, label=a_label) if a_label else None
    b = get_object_or_404(ModelVersion, label=b_label) if b_label else None
    rows, chart = [], ""
    if a and b:
        for name in COMPARED_METRICS:
            va, vb = (a.metrics or {}).get(name), (b.metrics or {}).get(name)
            delta = vb - va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
            rows.append((name, va, vb, delta))
        from plotly.subplots import make_subplots

        # Shares (0–1) and minutes on separate panels: one quantity per axis.
        shares, minutes = ["process_match", "exact_match", "op_f1"], ["mae", "trim_mae", "setup_mae"]
        fig = make_subplots(rows=1, cols=2, subplot_titles=("shares (higher is better)", "minutes (lower is better)"))
        for index, v in enumerate((a, b)):
            for col, names in ((1, shares), (2, minutes)):
                fig.add_trace(
                    go.Bar(name=v.label, x=names, y=[(v.metrics or {}).get(m) for m in names], legendgroup=v.label,
                           showlegend=col == 1, marker_color=("#7a9cc6", "#1f5fa8")[index]),
                    row=1, col=col,
                )  # fmt: skip
        fig.update_yaxes(range=[0, 1.05], tickformat=".0%", row=1, col=1)
        fig.update_yaxes(rangemode="tozero", nticks=6, title_text="minutes per unit", row=1, col=2)
        fig.update_layout(barmode="group", title="Held-out metrics at training time")
        chart = _figure_html(fig)
    cycles = {
        v.label: QualityCycle.objects.finished().filter(model_version=v).order_by("-started_at").first() for v in (a, b) if v is not None
    }
    context = {"versions": versions, "a": a, "b": b, "rows": rows, "chart": chart, "cycles": cycles, "plotly_version": plotly_version()}
    context["chart"] = _with_nonce(context["chart"], request)
    return render(request, "quality/compare.html", context)


@login_required
@permission_required("quality.view_qualitycycle", raise_exception=True)
@require_GET
def cycle_report(request, pk: int):
    """A cycle's JSON report (sample, per-item detail), by its cycle: the file's place on the server is never shown."""
    cycle = get_object_or_404(QualityCycle, pk=pk)
    path = cycle.report_file
    if path is None:
        raise Http404(f"Quality cycle {pk} has no report file.")
    return FileResponse(path.open("rb"), content_type="application/json", as_attachment=False, filename=f"quality-cycle-{pk}.json")


def _metrics_allowed(request) -> bool:
    """Open unless METRICS_TOKEN or METRICS_ALLOWED_IPS is set; then the bearer token or a listed client address lets a scrape in."""
    token, networks = settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS
    if not token and not networks:
        return True
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip().encode(), token.encode()):
        return True
    try:
        client = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(client in ipaddress.ip_network(net.strip(), strict=False) for net in networks if net.strip())


@require_GET
def metrics(request):
    """Prometheus scrape endpoint: all processes' counters plus the quality gauges; restricted by METRICS_TOKEN / METRICS_ALLOWED_IPS when set."""
    if not _metrics_allowed(request):
        response = HttpResponse("Forbidden: a bearer token (METRICS_TOKEN) or an allowed address is needed.\n", status=403, content_type="text/plain")
        if settings.METRICS_TOKEN:
            response.status_code = 401
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
