from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from routing_ml.admin_utils import HEADLINE_METRICS, ReadOnlyAdminMixin, badge, candidate_table, fmt, scalar_metrics, search_table
from routing_ml.errors import RoutingMLError

from .models import DeploymentEvent, ModelVersion


def _metric_column(name: str):
    @admin.display(description=name)
    def column(self, version):
        return fmt(version.headline(name))

    return column


class DeploymentEventInline(admin.TabularInline):
    model = DeploymentEvent
    fk_name = "to_version"
    fields = ["created_at", "kind", "from_version", "performed_by", "reason"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "deployment history (this version made active)"

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(SimpleHistoryAdmin):
    # Kept narrow enough for a laptop screen beside the admin's sidebar; the version page has everything.
    list_display = ["label", "status_badge", "is_active", "files", "m_process_match", "m_exact_match", "m_mae", "m_trim_mae", "selected_estimator", "unique_items", "created_at"]
    list_filter = ["status", "is_active", "selected_estimator"]
    search_fields = ["label", "description"]
    date_hierarchy = "created_at"
    actions = ["activate_version"]
    change_list_template = "admin/registry/modelversion/change_list.html"
    inlines = [DeploymentEventInline]
    change_form_template = "admin/registry/modelversion/change_form.html"
    fields = ["label", "status", "is_active", "description", "tags", "selected_estimator", "total_samples", "unique_items", "unique_processes",
              "training_duration_seconds", "training_cutoff", "artifact_path", "manifest_sha256", "parameters", "created_at", "activated_at"]
    readonly_fields = [f for f in fields if f not in ("description", "tags")]

    m_process_match = _metric_column("process_match")
    m_exact_match = _metric_column("exact_match")
    m_mae = _metric_column("mae")
    m_trim_mae = _metric_column("trim_mae")

    @admin.display(description="status", ordering="status")
    def status_badge(self, version):
        return badge(version.status)

    @admin.display(description="files")
    def files(self, version):
        """Whether the bundle on disk is still the registered one (manifest and file sizes; the full hash runs on activation)."""
        if version.status != version.Status.READY:
            return "—"
        problem = version.files_problem()
        return format_html('<span class="badge failed" title="{}">fail verification</span>', problem) if problem else badge("ok")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def revert_disabled(self, request, obj=None) -> bool:
        """History stays viewable, but a version is never reverted to an old record.

        A revert saves the historical row whole, bringing back its old is_active/status/activated_at:
        the served version could be switched off with no DeploymentEvent, an archived version whose
        files are gone could become `ready`, and a second active row would hit the database
        constraint. Activation and rollback go through the model methods (the actions above).
        """
        return True

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        # Hiding the Revert button is not enough: the history form still saves whatever is POSTed.
        if request.method == "POST":
            raise PermissionDenied("Model versions cannot be reverted from their history; use Activate or Roll back.")
        return super().history_form_view(request, object_id, version_id, extra_context)

    def save_model(self, request, obj, form, change):
        # Only what the form may change is written: a whole-row save could put back an is_active
        # or status that an activation in another request changed meanwhile.
        changed = [name for name in form.changed_data if name in ("description", "tags")]
        if changed:
            obj.save(update_fields=changed)

    def has_activate_permission(self, request):
        return request.user.has_perm("registry.activate_modelversion")

    @admin.action(description="Activate the selected version", permissions=["activate"])
    def activate_version(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.WARNING)
            return
        version = queryset.get()
        try:
            version.activate(by=request.user, reason="activated in the admin")
        except RoutingMLError as exc:
            self.message_user(request, f"[{exc.code}] {exc.message}", messages.ERROR)
            return
        self.message_user(request, f"{version.label} is now the active model version.", messages.SUCCESS)

    def get_urls(self):
        from django.urls import path

        return [path("rollback/", self.admin_site.admin_view(self.rollback_view), name="registry_modelversion_rollback"), *super().get_urls()]

    def rollback_view(self, request):
        """The "Roll back" button of the versions list (POST): `ModelVersion.rollback()`; no row to tick, none plays a part."""
        from django.shortcuts import redirect
        from django.urls import reverse

        if request.method != "POST" or not self.has_activate_permission(request):
            raise PermissionDenied
        try:
            event = ModelVersion.rollback(by=request.user, reason="rolled back in the admin")
        except RoutingMLError as exc:
            self.message_user(request, f"[{exc.code}] {exc.message}", messages.ERROR)
        else:
            self.message_user(request, f"Rolled back from {event.from_version} to {event.to_version}.", messages.SUCCESS)
        return redirect(reverse("admin:registry_modelversion_changelist"))

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_activate": self.has_activate_permission(request),
            "rollback_target": ModelVersion.rollback_target(),
        }
        return super().changelist_view(request, extra_context)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = extra_context or {}
        version = self.get_object(request, object_id) if object_id else None
        if version is not None:
            active = ModelVersion.objects.get_active()
            mine, theirs = scalar_metrics(version.metrics), scalar_metrics(active.metrics if active else None)
            names = sorted(set(HEADLINE_METRICS) | set(mine) | set(theirs))
            extra_context["metric_rows"] = [(name, fmt(mine.get(name), 4), fmt(theirs.get(name), 4) if active else "—") for name in names]
            extra_context["search_table"] = search_table((version.metrics or {}).get("search"))
            routing = (version.metrics or {}).get("routing_candidates")
            extra_context["routing_table"] = candidate_table(routing, (version.metrics or {}).get("selected_routing", "vote")) if routing else None
            extra_context["active_version"] = active
            extra_context["candidate_table"] = candidate_table(version.candidate_scores, version.selected_estimator)
            extra_context["can_activate"] = request.user.has_perm("registry.activate_modelversion")
        return super().changeform_view(request, object_id, form_url, extra_context)


@admin.register(DeploymentEvent)
class DeploymentEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "kind", "from_version", "to_version", "performed_by", "reason"]
    list_filter = ["kind"]
    list_select_related = ["from_version", "to_version", "performed_by"]
    date_hierarchy = "created_at"
    search_fields = ["from_version__label", "to_version__label", "reason"]
