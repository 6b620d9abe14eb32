from django.contrib import admin
from django.utils.html import format_html

from routing_ml.admin_utils import ReadOnlyAdminMixin

from .models import PredictionLog, RoutingReview


@admin.register(RoutingReview)
class RoutingReviewAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Planners' decisions: written from the planner pages and the API, read here."""

    list_display = ["item_cd", "decision", "model_version", "predicted_route", "decided_route", "decided_by", "decided_at"]
    list_filter = ["decision", "model_version"]
    list_select_related = ["model_version", "decided_by"]
    search_fields = ["item_cd", "comment"]
    date_hierarchy = "decided_at"
    show_full_result_count = False
    fields = [
        "item_cd",
        "model_version",
        "decision",
        "predicted_route",
        "decided_route",
        "comment",
        "decided_by",
        "decided_at",
        "predicted",
        "decided",
    ]
    readonly_fields = fields

    @admin.display(description="predicted")
    def predicted_route(self, obj):
        return format_html('<span class="signature">{}</span>', " → ".join(obj.predicted_signature) or "—")

    @admin.display(description="decided")
    def decided_route(self, obj):
        return format_html('<span class="signature">{}</span>', " → ".join(obj.decided_signature) or "—")


@admin.register(PredictionLog)
class PredictionLogAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Served predictions (api, page), the evidence behind planner agreement; purged after PREDICTION_LOG_RETENTION_DAYS."""

    list_display = ["served_at", "item_cd", "model_version", "route", "confidence", "channel"]
    list_filter = ["channel", "model_version"]
    search_fields = ["item_cd"]
    date_hierarchy = "served_at"
    show_full_result_count = False
    fields = ["served_at", "item_cd", "model_version", "route", "times", "confidence", "channel"]
    readonly_fields = fields

    @admin.display(description="predicted routing")
    def route(self, obj):
        return format_html('<span class="signature">{}</span>', " → ".join(obj.jobs) or "—")
