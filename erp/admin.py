"""Read-only admin pages over the ERP tables (they mirror the ERP; change data in the ERP or by import)."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from .models import Item, RoutingOperation, WorkResult


class ReadOnlyAdmin(admin.ModelAdmin):
    """No add, change or delete: the rows come from the ERP, the demo generator or the CSV import."""

    show_full_result_count = False
    list_per_page = 50

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields] + list(self.readonly_fields)


class ItemCodeSearchMixin:
    """Search by item code as an index-friendly prefix range (`icontains` would scan millions of rows)."""

    search_fields = ["item_cd"]
    search_help_text = "Item code or its beginning (case-sensitive)."

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(item_cd__gte=term, item_cd__lt=term + "\U0010ffff"), False


@admin.register(Item)
class ItemAdmin(ItemCodeSearchMixin, ReadOnlyAdmin):
    list_display = ["item_cd", "item_nm", "part_type", "item_material", "outdiameter", "indiameter", "standard_yn", "insrt_dt"]
    list_filter = ["part_type", "item_material"]
    readonly_fields = ["current_routing"]
    fieldsets = [
        (None, {"fields": ["item_cd", "item_nm", "part_type", "part_nm", "item_type", "item_acct", "item_unit", "standard_yn"]}),
        ("Material", {"fields": ["item_material", "material_desc", "raw_matl_kind"]}),
        ("Groups and seal type", {"fields": ["item_grp1", "group1", "group2", "seal_type_grup", "in_sealtype_cd", "mid_sealtype_cd", "out_sealtype_cd"]}),
        ("Dimensions", {"fields": ["outdiameter", "indiameter", "outthickness", "in_sealsize", "mid_sealsize", "out_sealsize", "rotate_clockwise", "rotate_ctrclockwise"]}),
        ("Drawing", {"fields": ["draw_no", "draw_rev", "insrt_dt"]}),
        ("Current routing", {"fields": ["current_routing"]}),
    ]  # fmt: skip

    @admin.display(description="current routing (minutes)")
    def current_routing(self, obj: Item) -> str:
        ops = list(RoutingOperation.objects.filter(item_cd=obj.item_cd).current())
        if not ops:
            return "No valid routing."
        header = mark_safe(  # a constant, no user data
            "<tr><th>seq</th><th>job</th><th>name</th><th>work centre</th><th>in/out</th>"
            "<th>setup min</th><th>run min/unit</th><th>routing</th></tr>"
        )
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    op.proc_seq,
                    op.job_cd,
                    op.job_nm or "",
                    op.res_cd or "",
                    op.inside_flag or "",
                    "" if op.setup_time is None else f"{op.setup_time:g}",
                    "" if op.run_minutes_per_unit is None else f"{op.run_minutes_per_unit:.3g}",
                    op.rout_no,
                )
                for op in ops
            ),
        )
        return format_html('<table class="erp-current-routing">{}{}</table>', header, body)


@admin.register(RoutingOperation)
class RoutingOperationAdmin(ItemCodeSearchMixin, ReadOnlyAdmin):
    list_display = [
        "item_cd",
        "rout_no",
        "proc_seq",
        "job_cd",
        "job_nm",
        "res_cd",
        "inside_flag",
        "setup_time",
        "run_per_unit",
        "valid_to_dt",
        "insrt_dt",
    ]
    list_filter = ["res_cd", "inside_flag"]
    ordering = ["item_cd", "rout_no", "proc_seq"]  # the (ITEM_CD, ROUT_NO, PROC_SEQ) index

    @admin.display(description="run min/unit")
    def run_per_unit(self, obj: RoutingOperation) -> str:
        value = obj.run_minutes_per_unit
        return "" if value is None else f"{value:.3g}"


@admin.register(WorkResult)
class WorkResultAdmin(ItemCodeSearchMixin, ReadOnlyAdmin):
    list_display = [
        "item_cd",
        "rout_no",
        "proc_seq",
        "job_cd",
        "res_cd",
        "report_dt",
        "order_qty",
        "bad_qty",
        "setup_minutes_display",
        "run_per_unit",
    ]
    list_filter = ["res_cd"]
    date_hierarchy = "report_dt"
    ordering = ["-report_dt"]  # the REPORT_DT index, so a page does not sort millions of rows

    @admin.display(description="setup min")
    def setup_minutes_display(self, obj: WorkResult) -> str:
        value = obj.setup_minutes
        return "" if value is None else f"{value:.1f}"

    @admin.display(description="run min/unit")
    def run_per_unit(self, obj: WorkResult) -> str:
        value = obj.run_minutes_per_unit
        return "" if value is None else f"{value:.3g}"
