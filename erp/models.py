"""Mirrors of the three ERP views Routing ML reads.

Table and column names are exactly those of the ERP (`BI_ITEM_INFO_VIEW`,
`BI_ROUTING_VIEW`, `BI_WORK_ORDER_RESULTS`), so the same models read the real
views through the `erp` database alias (`ERP_DATABASE_URL`, unmanaged) or, by
default, ordinary tables in the default database filled by the demo generator
or the CSV import.

Units: routing times are minutes; `RUN_TIME` is minutes per `RUN_TIME_QTY`
units. Work results are hours for the whole order; `erp.data` converts them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .labels import label

# When the real ERP is attached the views are read-only and not ours to migrate.
ERP_MANAGED = not getattr(settings, "ERP_EXTERNAL", False)


class Item(models.Model):
    """One row of `BI_ITEM_INFO_VIEW`: the item master."""

    item_cd = models.CharField(label("ITEM_CD"), max_length=50, primary_key=True, db_column="ITEM_CD")
    item_nm = models.CharField(label("ITEM_NM"), max_length=200, blank=True, null=True, db_column="ITEM_NM")
    part_type = models.CharField(label("PART_TYPE"), max_length=50, blank=True, null=True, db_column="PART_TYPE")
    part_nm = models.CharField(label("PartNm"), max_length=100, blank=True, null=True, db_column="PartNm")
    item_type = models.CharField(label("ITEM_TYPE"), max_length=50, blank=True, null=True, db_column="ITEM_TYPE")
    item_acct = models.CharField(label("ITEM_ACCT"), max_length=50, blank=True, null=True, db_column="ITEM_ACCT")
    item_unit = models.CharField(label("ITEM_UNIT"), max_length=20, blank=True, null=True, db_column="ITEM_UNIT")
    item_material = models.CharField(label("ITEM_MATERIAL"), max_length=50, blank=True, null=True, db_column="ITEM_MATERIAL")
    material_desc = models.CharField(label("MATERIAL_DESC"), max_length=200, blank=True, null=True, db_column="MATERIAL_DESC")
    raw_matl_kind = models.CharField(label("RAW_MATL_KIND"), max_length=50, blank=True, null=True, db_column="RAW_MATL_KIND")
    item_grp1 = models.CharField(label("ITEM_GRP1"), max_length=50, blank=True, null=True, db_column="ITEM_GRP1")
    group1 = models.CharField(label("GROUP1"), max_length=50, blank=True, null=True, db_column="GROUP1")
    group2 = models.CharField(label("GROUP2"), max_length=50, blank=True, null=True, db_column="GROUP2")
    standard_yn = models.CharField(label("STANDARD_YN"), max_length=1, blank=True, null=True, db_column="STANDARD_YN")
    draw_no = models.CharField(label("DRAW_NO"), max_length=100, blank=True, null=True, db_column="DRAW_NO")
    draw_rev = models.CharField(label("DRAW_REV"), max_length=20, blank=True, null=True, db_column="DRAW_REV")
    seal_type_grup = models.CharField(label("SealTypeGrup"), max_length=50, blank=True, null=True, db_column="SealTypeGrup")
    in_sealtype_cd = models.CharField(label("IN_SEALTYPE_CD"), max_length=50, blank=True, null=True, db_column="IN_SEALTYPE_CD")
    mid_sealtype_cd = models.CharField(label("MID_SEALTYPE_CD"), max_length=50, blank=True, null=True, db_column="MID_SEALTYPE_CD")
    out_sealtype_cd = models.CharField(label("OUT_SEALTYPE_CD"), max_length=50, blank=True, null=True, db_column="OUT_SEALTYPE_CD")
    outdiameter = models.FloatField(label("OUTDIAMETER"), blank=True, null=True, db_column="OUTDIAMETER")
    indiameter = models.FloatField(label("INDIAMETER"), blank=True, null=True, db_column="INDIAMETER")
    outthickness = models.FloatField(label("OUTTHICKNESS"), blank=True, null=True, db_column="OUTTHICKNESS")
    in_sealsize = models.FloatField(label("IN_SEALSIZE"), blank=True, null=True, db_column="IN_SEALSIZE")
    mid_sealsize = models.FloatField(label("MID_SEALSIZE"), blank=True, null=True, db_column="MID_SEALSIZE")
    out_sealsize = models.FloatField(label("OUT_SEALSIZE"), blank=True, null=True, db_column="OUT_SEALSIZE")
    rotate_clockwise = models.FloatField(label("ROTATE_CLOCKWISE"), blank=True, null=True, db_column="ROTATE_CLOCKWISE")
    rotate_ctrclockwise = models.FloatField(label("ROTATE_CTRCLOCKWISE"), blank=True, null=True, db_column="ROTATE_CTRCLOCKWISE")
    insrt_dt = models.DateTimeField(label("INSRT_DT"), blank=True, null=True, db_column="INSRT_DT")

    class Meta:
        managed = ERP_MANAGED
        db_table = "BI_ITEM_INFO_VIEW"
        ordering = ["item_cd"]
        indexes = [models.Index(fields=["part_type"], name="erp_item_part_type")]

    def __str__(self) -> str:
        return self.item_cd


class RoutingOperationQuerySet(models.QuerySet):
    def valid_on(self, when=None) -> RoutingOperationQuerySet:
        """Operations whose validity window contains `when` (today by default); open ends count as valid."""
        when = when or timezone.now()
        return self.filter(
            Q(valid_from_dt__isnull=True) | Q(valid_from_dt__lte=when),
            Q(valid_to_dt__isnull=True) | Q(valid_to_dt__gte=when),
        )

    def current(self, when=None) -> RoutingOperationQuerySet:
        """The valid operations of each item's current routing, by `erp.frames.current_routing_rows` (the one rule).

        Reads (ITEM_CD, ROUT_NO, INSRT_DT) of the valid operations of the items in this queryset,
        picks each item's routing with the rule, and returns those operations ordered by item and
        sequence. Evaluates one query now; meant for a few items (pages, admin) — bulk readers
        use `erp.data.load_current_routings`.
        """
        from .frames import current_routing_mask

        when = when or timezone.now()
        valid = self.valid_on(when)
        rows = list(valid.values_list("item_cd", "rout_no", "insrt_dt"))
        items, routs, inserted = zip(*rows, strict=True) if rows else ((), (), ())
        by_rout_no: dict[str, set[str]] = {}
        for item, rout_no, keep in zip(items, routs, current_routing_mask(items, routs, inserted), strict=True):
            if keep:
                by_rout_no.setdefault(rout_no, set()).add(item)
        chosen = Q(pk__in=[])
        for rout_no, codes in sorted(by_rout_no.items()):
            chosen |= Q(rout_no=rout_no, item_cd__in=sorted(codes))
        return valid.filter(chosen).order_by("item_cd", "proc_seq")

    def for_item(self, item_cd: str) -> RoutingOperationQuerySet:
        return self.filter(item_cd=item_cd)


class RoutingOperation(models.Model):
    """One operation of one routing (`BI_ROUTING_VIEW`). Times are minutes; run time per RUN_TIME_QTY units."""

    class InsideFlag(models.TextChoices):
        IN_HOUSE = "IN", "in-house"
        OUTSOURCED = "OUT", "outsourced"

    # The ERP view has no surrogate key; Django needs one to manage the demo table.
    id = models.BigAutoField(primary_key=True, db_column="ROW_ID")
    item_cd = models.CharField(label("ITEM_CD"), max_length=50, db_column="ITEM_CD")
    rout_no = models.CharField(label("ROUT_NO"), max_length=20, db_column="ROUT_NO")
    proc_seq = models.IntegerField(label("PROC_SEQ"), db_column="PROC_SEQ")
    job_cd = models.CharField(label("JOB_CD"), max_length=50, db_column="JOB_CD")
    job_nm = models.CharField(label("JOB_NM"), max_length=200, blank=True, null=True, db_column="JOB_NM")
    res_cd = models.CharField(label("RES_CD"), max_length=50, blank=True, null=True, db_column="RES_CD")
    res_dis = models.CharField(label("RES_DIS"), max_length=200, blank=True, null=True, db_column="RES_DIS")
    inside_flag = models.CharField(label("INSIDE_FLAG"), max_length=3, choices=InsideFlag.choices, blank=True, null=True, db_column="INSIDE_FLAG")
    time_unit = models.CharField(label("TIME_UNIT"), max_length=10, blank=True, null=True, db_column="TIME_UNIT")
    setup_time = models.FloatField(label("SETUP_TIME"), blank=True, null=True, db_column="SETUP_TIME")
    run_time = models.FloatField(label("RUN_TIME"), blank=True, null=True, db_column="RUN_TIME")
    run_time_qty = models.FloatField(label("RUN_TIME_QTY"), blank=True, null=True, db_column="RUN_TIME_QTY")
    mfg_lt = models.FloatField(label("MFG_LT"), blank=True, null=True, db_column="MFG_LT")
    queue_time = models.FloatField(label("QUEUE_TIME"), blank=True, null=True, db_column="QUEUE_TIME")
    wait_time = models.FloatField(label("WAIT_TIME"), blank=True, null=True, db_column="WAIT_TIME")
    move_time = models.FloatField(label("MOVE_TIME"), blank=True, null=True, db_column="MOVE_TIME")
    valid_from_dt = models.DateTimeField(label("VALID_FROM_DT"), blank=True, null=True, db_column="VALID_FROM_DT")
    valid_to_dt = models.DateTimeField(label("VALID_TO_DT"), blank=True, null=True, db_column="VALID_TO_DT")
    insrt_dt = models.DateTimeField(label("INSRT_DT"), blank=True, null=True, db_column="INSRT_DT")

    objects = RoutingOperationQuerySet.as_manager()

    class Meta:
        managed = ERP_MANAGED
        db_table = "BI_ROUTING_VIEW"
        ordering = ["item_cd", "rout_no", "proc_seq"]
        indexes = [
            models.Index(fields=["item_cd", "rout_no", "proc_seq"], name="erp_rout_item_rout_seq"),
            models.Index(fields=["res_cd"], name="erp_rout_res"),
        ]

    def __str__(self) -> str:
        return f"{self.item_cd}/{self.rout_no}#{self.proc_seq} {self.job_cd}"

    @property
    def run_minutes_per_unit(self) -> float | None:
        if self.run_time is None:
            return None
        return self.run_time / (self.run_time_qty or 1.0)


class WorkResult(models.Model):
    """One operation of one work order actually run (`BI_WORK_ORDER_RESULTS`). Hours for the whole order."""

    id = models.BigAutoField(primary_key=True, db_column="ROW_ID")
    item_cd = models.CharField(label("ITEM_CD"), max_length=50, db_column="ITEM_CD")
    rout_no = models.CharField(label("ROUT_NO"), max_length=20, blank=True, null=True, db_column="ROUT_NO")
    proc_seq = models.IntegerField(label("PROC_SEQ"), blank=True, null=True, db_column="PROC_SEQ")
    job_cd = models.CharField(label("JOB_CD"), max_length=50, db_column="JOB_CD")
    res_cd = models.CharField(label("RES_CD"), max_length=50, blank=True, null=True, db_column="RES_CD")
    report_dt = models.DateTimeField(label("REPORT_DT"), db_column="REPORT_DT")
    order_qty = models.FloatField(label("ORDER_QTY"), db_column="ORDER_QTY")
    bad_qty = models.FloatField(label("BAD_QTY"), blank=True, null=True, db_column="BAD_QTY")
    setup_hours = models.FloatField(label("SETUP_HOURS"), blank=True, null=True, db_column="SETUP_HOURS")
    mach_worked_hours = models.FloatField(label("MACH_WORKED_HOURS"), blank=True, null=True, db_column="MACH_WORKED_HOURS")

    class Meta:
        managed = ERP_MANAGED
        db_table = "BI_WORK_ORDER_RESULTS"
        ordering = ["item_cd", "report_dt"]
        indexes = [
            models.Index(fields=["item_cd", "job_cd"], name="erp_wr_item_job"),
            # Quality cycles pick the items produced in a recent window: (date, item) answers that
            # from the index alone (measured at 325k: 1.4 s -> 0.4 s for the eligible items).
            models.Index(fields=["report_dt", "item_cd"], name="erp_wr_report_dt_item"),
        ]

    def __str__(self) -> str:
        return f"{self.item_cd} {self.job_cd} {self.report_dt:%Y-%m-%d}"

    @property
    def run_minutes_per_unit(self) -> float | None:
        if self.mach_worked_hours is None or not self.order_qty:
            return None
        return self.mach_worked_hours * 60.0 / self.order_qty

    @property
    def setup_minutes(self) -> float | None:
        return None if self.setup_hours is None else self.setup_hours * 60.0
