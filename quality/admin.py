from django.contrib import admin, messages
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from simple_history.admin import SimpleHistoryAdmin

from routing_ml.admin_utils import ReadOnlyAdminMixin, badge, fmt

from .models import CycleInProgress, NotificationChannel, NotificationDelivery, QualityAlert, QualityCycle, QualitySettings
from .notifications import mask


def _figure(value) -> str:
    """A metric for reading: counts as integers, other numbers to 4 significant decimals, never 16 digits."""
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return f"{value:.0f}"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{value:.3f}".rstrip("0").rstrip(".")
    return fmt(value)


@admin.register(QualitySettings)
class QualitySettingsAdmin(SimpleHistoryAdmin):
    fieldsets = [
        ("Thresholds", {"fields": ["mae_warning", "mae_critical", "process_match_warning", "process_match_critical", "cv_max", "sample_count_min", "drift_psi_threshold"]}),
        ("Planner agreement", {"fields": ["planner_agreement_warning", "planner_agreement_critical", "planner_agreement_min_items"]}),
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
                       "items_failed", "metrics_table", "part_type_table", "drift_table", "retraining_job", "retraining_decision", "error", "report",
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

    @admin.display(description="metrics")
    def metrics_table(self, cycle):
        rows = format_html_join("", '<tr><th>{}</th><td class="num">{}</td></tr>', ((name, _figure(v)) for name, v in (cycle.metrics or {}).items()))
        return format_html('<table class="metrics"><tbody>{}</tbody></table>', rows) if rows else "—"

    @admin.display(description="metrics per part type")
    def part_type_table(self, cycle):
        """One row a part type, one column a metric (the metrics every part type reports first)."""
        by_type = cycle.metrics_by_part_type or {}
        if not by_type:
            return "—"
        names = list(dict.fromkeys(name for metrics in by_type.values() for name in metrics))
        header = format_html_join("", '<th class="num">{}</th>', ((n,) for n in names))
        rows = format_html_join(
            "", "<tr><th>{}</th>{}</tr>",
            ((pt, format_html_join("", '<td class="num">{}</td>', ((_figure(m.get(n)),) for n in names))) for pt, m in sorted(by_type.items())),
        )  # fmt: skip
        return format_html('<div style="overflow-x:auto"><table class="metrics"><thead><tr><th>part type</th>{}</tr></thead><tbody>{}</tbody></table></div>', header, rows)

    @admin.display(description="drift (PSI)")
    def drift_table(self, cycle):
        drift = sorted((cycle.drift or {}).items(), key=lambda kv: -(kv[1] or 0))
        rows = format_html_join("", '<tr><th>{}</th><td class="num">{}</td></tr>', ((name, _figure(v)) for name, v in drift))
        return format_html('<table class="metrics"><tbody>{}</tbody></table>', rows) if rows else "—"

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
            return "system"
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


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    """Mail lists and webhooks for alerts and events. Channels from ALERT_EMAILS / ALERT_WEBHOOK_URL work beside these."""

    list_display = ["name", "kind", "destination", "min_level", "events", "enabled"]
    list_filter = ["kind", "enabled", "min_level"]
    search_fields = ["name"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "target", "enabled"]}),
        ("What to send", {"fields": ["min_level", "on_alert_opened", "on_alert_resolved", "on_training_failed", "on_version_deployed"]}),
    ]

    @admin.display(description="destination")
    def destination(self, channel):
        # The list never shows a webhook's path or query: that is where tokens live.
        return ", ".join(mask(channel.kind, t.strip()) for t in channel.target.split(","))

    @admin.display(description="events")
    def events(self, channel):
        return ", ".join(str(label) for value, label in NotificationChannel.Event.choices if getattr(channel, f"on_{value}")) or "—"


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "created_at", "event", "level_badge", "channel_name", "destination", "status_badge", "attempts", "last_error_short", "sent_at"]
    list_filter = ["status", "event", "level", "kind"]
    list_select_related = ["alert"]
    date_hierarchy = "created_at"
    search_fields = ["subject", "channel_name"]
    show_full_result_count = False
    readonly_fields = ["channel", "settings_channel", "channel_name", "kind", "destination", "event", "level", "subject", "payload", "alert",
                       "status", "attempts", "last_error", "created_at", "next_attempt_at", "sent_at"]
    fields = readonly_fields

    @admin.display(description="level", ordering="level")
    def level_badge(self, delivery):
        return badge(delivery.level)

    @admin.display(description="status", ordering="status")
    def status_badge(self, delivery):
        return badge({"sent": "succeeded", "sending": "running"}.get(delivery.status, delivery.status))

    @admin.display(description="last error")
    def last_error_short(self, delivery):
        return (delivery.last_error[:120] + "…") if len(delivery.last_error) > 120 else (delivery.last_error or "—")
