"""Small pieces every admin module uses: read-only records and formatted columns."""

from __future__ import annotations

from django.utils.html import format_html

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


class ReadOnlyAdminMixin:
    """Records written by machines: visible, never added or edited by hand."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
