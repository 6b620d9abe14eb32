from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from routing_ml.admin_utils import ReadOnlyAdminMixin, badge, candidate_table, fmt, progress_bar
from routing_ml.errors import RoutingMLError
from training.engine.config import EngineConfig

from .models import (
    CANDIDATES,
    DEFAULT_CANDIDATES,
    TrainingJob,
    summarize_value,  # noqa: F401 - used by the admin columns below
)


# Lists longer than this are shown as their length and first few entries.
class OptionalJSONField(forms.JSONField):
    """A JSON field whose empty value shows as an empty box, not the text `null`."""

    def prepare_value(self, value):
        return "" if value is None else super().prepare_value(value)


class StartTrainingForm(forms.Form):
    label = forms.SlugField(required=False, help_text="Leave empty for a timestamp label.")
    candidates = forms.MultipleChoiceField(
        choices=[(c, c) for c in CANDIDATES], initial=list(DEFAULT_CANDIDATES), widget=forms.CheckboxSelectMultiple,
        help_text=(
            "baseline is always trained; a candidate replaces it only if it is clearly better on held-out items. "
            f"On a factory with at most {EngineConfig().stacking_up_to_items:,} items with actual times, boost brings stacking along."
        ),
    )
    sample_size = forms.IntegerField(required=False, min_value=20, help_text="Train on a sample of items (empty: all items).")
    min_improvement_pct = forms.FloatField(
        required=False, min_value=0, max_value=100, help_text="Empty: the value of the Quality settings (default 5 %)."
    )
    feature_weights = OptionalJSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60, "placeholder": '{"OUTDIAMETER": 2.0}'}),
        help_text='Similarity weight per item attribute, e.g. {"OUTDIAMETER": 2.0, "DRAW_NO": 0.5}; 0 switches a feature off. Empty: the defaults.',
    )
    activate = forms.BooleanField(required=False, help_text="Activate the new version as soon as it is ready.")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2, "cols": 60}))

    def parameters(self) -> dict:
        data = self.cleaned_data
        candidates = list(data["candidates"])
        if "baseline" not in candidates:
            candidates.insert(0, "baseline")
        params = {"candidates": candidates, "activate": data["activate"], "seed": 0}
        for name in ("sample_size", "min_improvement_pct", "description", "feature_weights"):
            if data.get(name) not in (None, "", {}):
                params[name] = data[name]
        return params

    def clean_feature_weights(self):
        from training.engine import check_feature_weights

        value = self.cleaned_data.get("feature_weights")
        if value in (None, ""):
            return None
        try:
            return check_feature_weights(value)
        except ValueError as exc:
            raise forms.ValidationError(str(exc))


@admin.register(TrainingJob)
class TrainingJobAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "label", "status_badge", "trigger", "progress_column", "stage", "model_version", "requested_by", "created_at", "duration"]
    list_filter = ["status", "trigger"]
    list_select_related = ["model_version", "requested_by"]
    search_fields = ["label", "id"]
    date_hierarchy = "created_at"
    actions = ["cancel_jobs", "retry_jobs"]
    change_list_template = "admin/training/trainingjob/change_list.html"
    change_form_template = "admin/training/trainingjob/change_form.html"
    readonly_fields = [
        "label", "status_badge", "trigger", "progress_column", "stage", "heartbeat_at", "parameters_view", "candidate_scores_table", "selected_estimator",
        "gate_view", "model_version", "requested_by", "created_at", "started_at", "finished_at", "duration", "error_code", "error", "log_view",
    ]
    fields = readonly_fields

    @admin.display(description="status", ordering="status")
    def status_badge(self, job):
        return badge(job.status)

    @admin.display(description="progress", ordering="progress")
    def progress_column(self, job):
        return progress_bar(job.progress)

    @admin.display(description="duration")
    def duration(self, job):
        seconds = job.duration_seconds
        return "—" if seconds is None else f"{seconds:.0f} s"

    @admin.display(description="parameters")
    def parameters_view(self, job):
        """The job's parameters as a table; a long list (a retraining job's 500 gate items) is counted, not spelled out."""
        rows = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", ((name, summarize_value(value)) for name, value in (job.parameters or {}).items()))
        return format_html('<table class="parameters"><tbody>{}</tbody></table>', rows) if rows else "—"

    @admin.display(description="candidate scores (held-out items)")
    def candidate_scores_table(self, job):
        return candidate_table(job.candidate_scores, job.selected_estimator)

    @admin.display(description="deployment gate")
    def gate_view(self, job):
        """The champion/challenger decision of a retraining job: verdict, reason and both versions' scores side by side."""
        gate = job.gate or {}
        if not gate:
            return "— (no gate: only retraining jobs that ask for it are gated)"
        verdict, css = ("deployed", "ok") if gate.get("deployed") else ("kept, not deployed", "warn")
        champion_metrics, challenger_metrics = gate.get("champion_metrics") or {}, gate.get("challenger_metrics") or {}
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((name, fmt(champion_metrics.get(name)), fmt(challenger_metrics.get(name))) for name in dict.fromkeys([*champion_metrics, *challenger_metrics])),
        )
        return format_html(
            '<div class="gate-decision"><p><span class="badge {}">{}</span> {}</p>'
            "<p>champion {} · challenger {} · sample {} items · min. improvement {} % · auto-deploy {} · decided {}</p>"
            '<table><thead><tr><th>metric</th><th>champion {}</th><th>challenger {}</th></tr></thead><tbody>{}</tbody></table></div>',
            css, verdict, gate.get("reason", ""),
            gate.get("champion", "—"), gate.get("challenger", "—"), gate.get("sample_size", "—"), gate.get("min_improvement_pct", "—"),
            "on" if gate.get("auto_deploy") else "off", gate.get("at", "—"),
            gate.get("champion", ""), gate.get("challenger", ""), rows,
        )

    @admin.display(description="log")
    def log_view(self, job):
        return format_html('<pre class="job-log" id="job-log" style="max-height:420px;overflow:auto;white-space:pre-wrap">{}</pre>', job.log or "")

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("training.view_trainingjob")

    def get_urls(self):
        return [
            path("start/", self.admin_site.admin_view(self.start_view), name="training_trainingjob_start"),
            path("<int:pk>/cancel/", self.admin_site.admin_view(self.cancel_view), name="training_trainingjob_cancel"),
            *super().get_urls(),
        ]

    def cancel_view(self, request, pk: int):
        """The Cancel button of a queued or running job's page (POST): `job.cancel()`, then back to the page."""
        if request.method != "POST" or not self.has_cancel_permission(request):
            raise PermissionDenied
        job = TrainingJob.objects.filter(pk=pk).first()
        if job is None:
            self.message_user(request, f"There is no training job {pk}.", messages.ERROR)
            return redirect(reverse("admin:training_trainingjob_changelist"))
        try:
            job.cancel(by=request.user)
        except RoutingMLError as exc:
            self.message_user(request, exc.message, messages.WARNING)
        else:
            self.message_user(request, f"Cancellation of job {job.pk} requested.", messages.SUCCESS)
        return redirect(reverse("admin:training_trainingjob_change", args=[job.pk]))

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_cancel": self.has_cancel_permission(request)}
        return super().changeform_view(request, object_id, form_url, extra_context)

    def start_view(self, request):
        if not request.user.has_perm("training.add_trainingjob"):
            raise PermissionDenied
        form = StartTrainingForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                job = TrainingJob.enqueue(parameters=form.parameters(), trigger=TrainingJob.Trigger.MANUAL, by=request.user, label=form.cleaned_data["label"] or None)
            except RoutingMLError as exc:
                form.add_error(None, f"[{exc.code}] {exc.message}")
            else:
                self.message_user(request, f"Training job {job.pk} queued (label {job.label}).", messages.SUCCESS)
                return redirect(reverse("admin:training_trainingjob_change", args=[job.pk]))
        context = {**self.admin_site.each_context(request), "title": "Start training", "form": form, "opts": self.model._meta}
        return render(request, "admin/training/trainingjob/start.html", context)

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_start": request.user.has_perm("training.add_trainingjob")}
        return super().changelist_view(request, extra_context)

    @admin.action(description="Cancel selected jobs", permissions=["cancel"])
    def cancel_jobs(self, request, queryset):
        done, refused = 0, []
        for job in queryset:
            try:
                job.cancel(by=request.user)
                done += 1
            except RoutingMLError as exc:
                refused.append(exc.message)
        self.message_user(request, f"Cancellation requested for {done} job(s).", messages.SUCCESS)
        for message in refused:
            self.message_user(request, message, messages.WARNING)

    @admin.action(description="Retry selected jobs (new job, same parameters)", permissions=["add_job"])
    def retry_jobs(self, request, queryset):
        for job in queryset:
            try:
                new = job.retry(by=request.user)
                self.message_user(request, f"Job {job.pk} retried as job {new.pk}.", messages.SUCCESS)
            except RoutingMLError as exc:
                self.message_user(request, f"[{exc.code}] {exc.message}", messages.WARNING)

    def has_cancel_permission(self, request):
        return request.user.has_perm("training.cancel_trainingjob")

    def has_add_job_permission(self, request):
        return request.user.has_perm("training.add_trainingjob")
