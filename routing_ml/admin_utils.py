"""Small pieces every admin module uses: read-only records and formatted columns."""

from __future__ import annotations

from django.utils.html import format_html, format_html_join

# The held-out metrics an ML admin compares first (versions list, version page, training job page).
HEADLINE_METRICS = ["process_match", "exact_match", "op_f1", "mae", "trim_mae", "rmse", "setup_mae", "items_evaluated"]

STATUS_CLASS = {
    "succeeded": "ok", "ready": "ok", "resolved": "ok", "healthy": "ok",
    "running": "warn", "queued": "warn", "registering": "warn", "acknowledged": "warn", "warning": "warn", "degraded": "warn",
    "failed": "bad", "cancelled": "bad", "critical": "bad", "open": "bad", "unhealthy": "bad",
}


def badge(text: str):
    return format_html('<span class="badge {}">{}</span>', STATUS_CLASS.get(str(text), ""), text)


def progress_bar(percent: float | None):
    percent = max(0.0, min(100.0, float(percent or 0)))
    return format_html(
        '<span class="bar" role="progressbar" aria-valuenow="{}" aria-valuemin="0" aria-valuemax="100"><span style="width:{}%"></span></span> {}%',
        f"{percent:.0f}", f"{percent:.0f}", f"{percent:.0f}",
    )


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def candidate_table(scores: dict | None, selected: str = ""):
    """Held-out scores per candidate as an HTML table, one row a candidate, the selected one marked."""
    if not scores:
        return "—"
    header = format_html_join("", "<th>{}</th>", ((m,) for m in HEADLINE_METRICS))
    rows = format_html_join(
        "",
        "<tr><td>{}</td>{}</tr>",
        (
            (
                format_html("<strong>{} ✓</strong>", name) if name == selected else name,
                format_html_join("", '<td class="num">{}</td>', ((fmt((values or {}).get(m), 4),) for m in HEADLINE_METRICS)),
            )
            for name, values in scores.items()
        ),
    )
    return format_html('<table class="compare"><thead><tr><th>candidate</th>{}</tr></thead><tbody>{}</tbody></table>', header, rows)


SEARCH_COLUMNS = ["k", "weighting", "size_transform", "embedding", "process_match", "exact_match", "trim_mae", "setup_mae", "objective"]


def search_table(search: dict | None):
    """The training's settings search (engine.search) as HTML: what was chosen, then every trial, the chosen one marked."""
    if not search or not search.get("trials"):
        return "—"
    chosen = search.get("chosen") or {}
    key = (chosen.get("k"), chosen.get("weighting"), chosen.get("size_transform"), chosen.get("embedding"))
    header = format_html_join("", "<th>{}</th>", ((c.replace("_", " "),) for c in SEARCH_COLUMNS))
    rows = format_html_join(
        "",
        "<tr>{}</tr>",
        (
            (
                format_html_join(
                    "",
                    '<td class="num">{}</td>',
                    (
                        (format_html("<strong>{} ✓</strong>", fmt(t.get(c), 4)) if i == 0 and (t.get("k"), t.get("weighting"), t.get("size_transform"), t.get("embedding")) == key else fmt(t.get(c), 4),)
                        for i, c in enumerate(SEARCH_COLUMNS)
                    ),
                ),
            )
            for t in search["trials"]
        ),
    )
    weights = ", ".join(f"{name} {weight:g}" for name, weight in sorted((chosen.get("feature_weights") or {}).items(), key=lambda kv: -kv[1]))
    summary = format_html(
        "<p>Chosen on {} held-out items against {} indexed items: k = {}, weighting {}, sizes {}, embedding {}.</p><p>Feature weights: {}</p>",
        chosen.get("query_items", "?"), chosen.get("index_items", "?"), chosen.get("k"), chosen.get("weighting"),
        chosen.get("size_transform"), chosen.get("embedding"), weights or "—",
    )
    return format_html('{}<table class="compare"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', summary, header, rows)


def scalar_metrics(metrics: dict | None) -> dict:
    """The plain numbers of a metrics dict (the search table and candidate scores are shown apart)."""
    return {k: v for k, v in (metrics or {}).items() if not isinstance(v, dict | list)}


class ReadOnlyAdminMixin:
    """Records written by machines: visible, never added or edited by hand."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
