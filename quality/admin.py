from django.contrib import admin, messages
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from routing_ml.admin_utils import ReadOnlyAdminMixin, badge, fmt

from .models import CycleInProgress, QualityAlert, QualityCycle, QualitySettings


@admin.register(QualitySettings)
class QualitySettingsAdmin(SimpleHistoryAdmin):
    fieldsets = [
        ("Thresholds", {"fields": ["mae_warning", "mae_critical", "process_match_warning", "process_match_critical", "cv_max", "sample_count_min", "drift_psi_threshold"]}),
        ("Sampling", {"fields": ["sample_size", "sample_strategy", "recent_window_days", "min_work_orders", "sample_seed"]}),
        ("Retraining", {"fields": ["auto_retrain", "cooldown_hours", "queue_capacity", "auto_deploy", "min_improvement_pct"]}),
        ("Schedule", {"fields": ["schedule_enabled", "schedule_cron"]}),
    ]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        # There is one settings row: its list is its form.
        return redirect(reverse("admin:quality_qualitysettings_change", args=[QualitySettings.current().pk]))


class AlertInline(admin.TabularInline):
    model = QualityAlert
    fk_name = "cycle"
    fields = ["level", "metric", "value", "threshold", "error_code", "status", "count", "last_seen_at", "message"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(QualityCycle)
class QualityCycleAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "started_at", "status_badge", "trigger", "model_version", "items_evaluated", "items_without_actuals", "items_failed",
                    "mae", "trim_mae", "process_match", "exact_match", "duration", "retraining_job"]
    list_filter = ["status", "trigger", "model_version"]
    list_select_related = ["model_version", "retraining_job"]
    date_hierarchy = "started_at"
    inlines = [AlertInline]
    change_list_template = "admin/quality/qualitycycle/change_list.html"
    readonly_fields = ["status", "trigger", "model_version", "sample_strategy", "sample_size", "items_sampled", "items_evaluated", "items_without_actuals",
                       "items_failed", "metrics", "metrics_by_part_type", "drift", "retraining_job", "retraining_decision", "error", "report",
                       "started_at", "heartbeat_at", "finished_at", "duration_seconds", "requested_by"]
    fields = readonly_fields

    @admin.display(description="status", ordering="status")
    def status_badge(self, cycle):
        return badge(cycle.status)

    @admin.display(description="report")
    def report(self, cycle):
        url = cycle.report_url()
        return format_html('<a href="{}">cycle_{}.json</a>', url, cycle.pk) if url else "—"

    @admin.display(description="MAE")
    def mae(self, cycle):
        return fmt(cycle.metrics.get("mae"))

    @admin.display(description="trim MAE")
    def trim_mae(self, cycle):
        return fmt(cycle.metrics.get("trim_mae"))

    @admin.display(description="process match")
    def process_match(self, cycle):
        return fmt(cycle.metrics.get("process_match"))

    @admin.display(description="exact match")
    def exact_match(self, cycle):
        return fmt(cycle.metrics.get("exact_match"))

    @admin.display(description="duration")
    def duration(self, cycle):
        return "—" if cycle.duration_seconds is None else f"{cycle.duration_seconds:.1f} s"

    def get_urls(self):
        return [path("run/", self.admin_site.admin_view(self.run_view), name="quality_qualitycycle_run"), *super().get_urls()]

    def run_view(self, request):
        """The "Run a quality cycle now" button: queued on the cluster."""
        if request.method != "POST" or not request.user.has_perm("quality.run_qualitycycle"):
            self.message_user(request, "You may not run quality cycles.", messages.ERROR)
            return redirect(reverse("admin:quality_qualitycycle_changelist"))
        try:
            cycle, _ = QualityCycle.enqueue(trigger=QualityCycle.Trigger.MANUAL, by=request.user)
        except CycleInProgress as exc:
            self.message_user(request, exc.message, messages.WARNING)
            return redirect(reverse("admin:quality_qualitycycle_changelist"))
        self.message_user(request, f"Quality cycle {cycle.pk} queued; it runs as soon as a worker takes it.", messages.SUCCESS)
        return redirect(reverse("admin:quality_qualitycycle_changelist"))

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_run": request.user.has_perm("quality.run_qualitycycle")}
        return super().changelist_view(request, extra_context)


@admin.register(QualityAlert)
class QualityAlertAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "created_at", "level_badge", "metric", "value_fmt", "threshold", "error_code", "status_badge", "count", "last_seen_at", "cycle_link",
                    "acknowledged_by", "resolved_at"]
    list_filter = ["status", "level", "metric", "error_code"]
    list_select_related = ["cycle", "acknowledged_by"]
    date_hierarchy = "created_at"
    search_fields = ["message", "metric"]
    actions = ["acknowledge_alerts", "resolve_alerts"]
    readonly_fields = ["cycle", "last_cycle", "level", "metric", "part_type", "value", "threshold", "error_code", "message", "status", "created_at",
                       "last_seen_at", "count", "acknowledged_by",
                       "acknowledged_at", "resolved_by", "resolved_at", "resolution"]

    @admin.display(description="level", ordering="level")
    def level_badge(self, alert):
        return badge(alert.level)

    @admin.display(description="status", ordering="status")
    def status_badge(self, alert):
        return badge(alert.status)

    @admin.display(description="value")
    def value_fmt(self, alert):
        return fmt(alert.value)

    @admin.display(description="cycle")
    def cycle_link(self, alert):
        if alert.cycle_id is None:
            return "—"
        return format_html('<a href="{}">{}</a>', reverse("admin:quality_qualitycycle_change", args=[alert.cycle_id]), alert.cycle_id)

    def has_ack_permission(self, request):
        return request.user.has_perm("quality.acknowledge_qualityalert")

    @admin.action(description="Acknowledge selected alerts", permissions=["ack"])
    def acknowledge_alerts(self, request, queryset):
        done = 0
        for alert in queryset.filter(status=QualityAlert.Status.OPEN):
            alert.acknowledge(by=request.user)
            done += 1
        self.message_user(request, f"Acknowledged {done} alert(s).", messages.SUCCESS)

    @admin.action(description="Resolve selected alerts", permissions=["ack"])
    def resolve_alerts(self, request, queryset):
        done = 0
        for alert in queryset.exclude(status=QualityAlert.Status.RESOLVED):
            alert.resolve(by=request.user, resolution="resolved in the admin")
            done += 1
        self.message_user(request, f"Resolved {done} alert(s).", messages.SUCCESS)
