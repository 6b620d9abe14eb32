"""Planners' decisions on predicted routings.

A `RoutingReview` records one decision — accepted, edited or rejected — on the routing the
model predicted for one item: the routing as predicted, the routing as decided, who, when,
why. Rows are never changed: a new decision adds a row, so the history stays, and the latest
row of an item is its current decision (`RoutingReview.objects.latest_per_item()`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import OuterRef, Subquery
from django.utils import timezone

INSIDE_FLAGS = ("IN", "OUT")
# Decisions that fix a routing the ERP should receive (a rejection fixes none).
ROUTING_DECISIONS = ("accepted", "edited")


class RoutingReviewQuerySet(models.QuerySet):
    def latest_per_item(self) -> RoutingReviewQuerySet:
        """Each item's current decision: its newest review (ties to the highest id)."""
        newest = RoutingReview.objects.filter(item_cd=OuterRef("item_cd")).order_by("-decided_at", "-pk").values("pk")[:1]
        return self.filter(pk=Subquery(newest))

    def decided_routings(self) -> RoutingReviewQuerySet:
        """Reviews that fix a routing (accepted or edited), i.e. what the ERP should receive."""
        return self.filter(decision__in=ROUTING_DECISIONS)

    def by(self, user) -> RoutingReviewQuerySet:
        return self.filter(decided_by=user)

    def since(self, when) -> RoutingReviewQuerySet:
        return self.filter(decided_at__gte=when)


class RoutingReview(models.Model):
    """A planner's decision on the routing predicted for one item (append-only: the newest row per item counts)."""

    class Decision(models.TextChoices):
        ACCEPTED = "accepted", "accepted"
        EDITED = "edited", "edited"
        REJECTED = "rejected", "rejected"

    item_cd = models.CharField("item code", max_length=50, db_index=True)
    model_version = models.ForeignKey(
        "registry.ModelVersion", on_delete=models.PROTECT, related_name="reviews", help_text="The version whose prediction was reviewed."
    )
    predicted = models.JSONField(help_text="The routing as predicted: {signature, confidence, operations}.")
    decided = models.JSONField(null=True, blank=True, help_text="The routing as decided ({signature, operations}); empty when rejected.")
    decision = models.CharField(max_length=10, choices=Decision.choices, db_index=True)
    comment = models.TextField(blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="routing_reviews"
    )
    decided_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = RoutingReviewQuerySet.as_manager()

    class Meta:
        ordering = ["-decided_at", "-pk"]
        indexes = [models.Index(fields=["item_cd", "-decided_at"], name="pred_review_item_newest")]

    def __str__(self) -> str:
        return f"{self.item_cd}: {self.decision} ({self.decided_at:%Y-%m-%d %H:%M})"

    @property
    def decided_signature(self) -> list[str]:
        return list((self.decided or {}).get("signature") or [])

    @property
    def predicted_signature(self) -> list[str]:
        return list((self.predicted or {}).get("signature") or [])

    @classmethod
    def record(
        cls,
        *,
        item_cd: str,
        decision: str,
        predicted: Mapping[str, Any],
        model_version,
        operations: Sequence[Mapping[str, Any]] | None = None,
        comment: str = "",
        by=None,
    ) -> RoutingReview:
        """Validate and store one decision on `predicted` (the routing `model_version` predicted for `item_cd`).

        accepted → the decided routing is the predicted one; edited → `operations` (required, each
        with a known JOB_CD and RES_CD, IN or OUT, setup and run minutes per unit ≥ 0) in their
        order, numbered 10, 20, 30…; rejected → no decided routing (a comment says why).
        Raises ValidationError with the faulty fields (`operations.2.res_cd`…) otherwise.
        """
        errors: dict[str, list[str]] = {}
        if decision not in cls.Decision.values:
            errors["decision"] = [f"must be one of {', '.join(cls.Decision.values)}, not {decision!r}."]
        decided = None
        if decision == cls.Decision.ACCEPTED:
            decided = {
                "signature": list(predicted.get("signature") or []),
                "operations": [dict(op) for op in predicted.get("operations") or []],
            }
            if not decided["operations"]:
                errors["decision"] = ["there is no predicted routing to accept; edit or reject it."]
        elif decision == cls.Decision.EDITED:
            decided, op_errors = clean_operations(operations)
            errors.update(op_errors)
        if errors:
            raise ValidationError(errors)
        review = cls(
            item_cd=item_cd,
            model_version=model_version,
            predicted=dict(predicted),
            decided=decided,
            decision=decision,
            comment=(comment or "").strip(),
            decided_by=by if by is not None and getattr(by, "is_authenticated", False) else None,
        )
        review.save()
        return review

    record.alters_data = True


def _minutes(value, name: str, errors: dict, key: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        errors[key] = [f"{name} is required (minutes, 0 or more)."]
        return None
    if isinstance(value, bool):
        errors[key] = [f"{name} must be a number of minutes."]
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        errors[key] = [f"{name} must be a number of minutes, not {value!r}."]
        return None
    if not math.isfinite(number) or number < 0:
        errors[key] = [f"{name} must be 0 or more minutes."]
        return None
    return number


def clean_operations(operations: Sequence[Mapping[str, Any]] | None) -> tuple[dict | None, dict[str, list[str]]]:
    """A planner's operations → (`{"signature", "operations"}`, errors keyed `operations.<i>.<field>`).

    Job codes and work centres must be among the ERP's known ones (`erp.codes`); the in-house
    flag IN or OUT; setup minutes and run minutes per unit numbers ≥ 0. Operations are kept in
    the given order and numbered 10, 20, 30….
    """
    from erp.codes import known_jobs, known_work_centres

    errors: dict[str, list[str]] = {}
    if not operations:
        return None, {"operations": ["an edited routing needs at least one operation."]}
    if not isinstance(operations, Sequence) or isinstance(operations, str | bytes):
        return None, {"operations": ["must be a list of operations."]}
    jobs, centres = known_jobs(), known_work_centres()
    cleaned = []
    for index, op in enumerate(operations):
        prefix = f"operations.{index}"
        if not isinstance(op, Mapping):
            errors[prefix] = ["must be an object with job_cd, res_cd, inside_flag, setup_minutes, run_minutes_per_unit."]
            continue
        job = str(op.get("job_cd") or "").strip()
        res = str(op.get("res_cd") or "").strip()
        flag = str(op.get("inside_flag") or "").strip().upper()
        if not job:
            errors[f"{prefix}.job_cd"] = ["a job is required."]
        elif job not in jobs:
            errors[f"{prefix}.job_cd"] = [f"{job!r} is not a job the ERP's routings know."]
        if not res:
            errors[f"{prefix}.res_cd"] = ["a work centre is required."]
        elif res not in centres:
            errors[f"{prefix}.res_cd"] = [f"{res!r} is not a work centre the ERP's routings know."]
        if flag not in INSIDE_FLAGS:
            errors[f"{prefix}.inside_flag"] = ["must be IN (in-house) or OUT (outsourced)."]
        setup = _minutes(op.get("setup_minutes"), "Setup time", errors, f"{prefix}.setup_minutes")
        run = _minutes(op.get("run_minutes_per_unit"), "Run time per unit", errors, f"{prefix}.run_minutes_per_unit")
        cleaned.append(
            {
                "proc_seq": 10 * (index + 1),
                "job_cd": job,
                "job_nm": jobs.get(job, ""),
                "res_cd": res,
                "inside_flag": flag,
                "setup_minutes": setup,
                "run_minutes_per_unit": run,
            }
        )
    if errors:
        return None, errors
    return {"signature": [op["job_cd"] for op in cleaned], "operations": cleaned}, {}


class PredictionLogQuerySet(models.QuerySet):
    def older_than(self, days: float) -> PredictionLogQuerySet:
        return self.filter(served_at__lt=timezone.now() - timedelta(days=days))


class PredictionLog(models.Model):
    """One prediction served for an item of known code (compact: the job sequence and times, no neighbours).

    Written by the prediction service in one INSERT per request for the channels in
    PREDICTION_LOG_CHANNELS, kept PREDICTION_LOG_RETENTION_DAYS, and compared with the routing
    finally decided (a planner's review, or the routing entered in the ERP afterwards) to
    measure planner agreement per model version (`predictions.agreement`).
    """

    item_cd = models.CharField("item code", max_length=50)
    # The label, not a key: a log line costs no look-up, and outlives nothing it refers to (labels are never reused).
    model_version = models.CharField(max_length=100)
    signature = models.CharField(max_length=1000, help_text="The predicted job codes, in order, joined by '>'.")
    times = models.JSONField(default=list, help_text="[setup minutes, run minutes per unit] of each predicted operation.")
    confidence = models.FloatField(null=True)
    channel = models.CharField(max_length=10)
    served_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = PredictionLogQuerySet.as_manager()

    SEPARATOR = ">"

    class Meta:
        indexes = [
            models.Index(fields=["item_cd", "served_at"], name="pred_log_item_served"),
            # Planner agreement per version and period: which items were served, from the index alone
            # (measured at 62,000 log rows: 100 ms -> 28 ms per quality cycle, growing with the log).
            models.Index(fields=["model_version", "served_at", "item_cd"], name="pred_log_version_served_item"),
        ]

    def __str__(self) -> str:
        return f"{self.item_cd} {self.served_at:%Y-%m-%d %H:%M} {self.signature}"

    @property
    def jobs(self) -> list[str]:
        return self.signature.split(self.SEPARATOR) if self.signature else []

    @classmethod
    def purge(cls, days: float | None = None) -> int:
        """Delete the entries older than the retention (PREDICTION_LOG_RETENTION_DAYS; 0 keeps everything)."""
        days = settings.PREDICTION_LOG_RETENTION_DAYS if days is None else days
        if not days:
            return 0
        deleted, _ = cls.objects.older_than(days).delete()
        return deleted

    purge.alters_data = True
