"""Recording a planner's decision: what the page, the API and tests call.

The routing "as predicted" is asked of the prediction service again for the chosen version
(the active one by default), not taken from the client: a review always pairs a decision
with what that version really predicts for the item (predictions are deterministic per
version), so the agreement figures compare like with like.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.core.exceptions import ValidationError

from erp.models import Item
from registry.models import ModelVersion
from routing_ml.errors import ModelNotFound, NoActiveModel

from .models import RoutingReview
from .service import predict_items

CHANNEL = "review"


def review_version(label: str | None) -> ModelVersion:
    """The ModelVersion named `label`, or the active one (ModelNotFound 404 / NoActiveModel 503)."""
    if label:
        version = ModelVersion.objects.filter(label=label).first()
        if version is None:
            raise ModelNotFound(f"Model version {label!r} does not exist.", details={"model_version": label})
        return version
    version = ModelVersion.objects.get_active()
    if version is None:
        raise NoActiveModel("No model version is active: activate one before reviewing predictions.")
    return version


def predicted_routing(item_cd: str, version: ModelVersion) -> dict[str, Any]:
    """What `version` predicts for `item_cd`: `{signature, confidence, operations}` (ValidationError if it cannot)."""
    result = predict_items(item_codes=[item_cd], model_version=version.label, include_context=False, channel=CHANNEL).results[0]
    if not result.ok:
        raise ValidationError({"item_cd": [result.error["message"]]})
    return result.routing


def record_review(
    *,
    item_cd: str,
    decision: str,
    operations: Sequence[Mapping[str, Any]] | None = None,
    comment: str = "",
    model_version: str | None = None,
    by=None,
) -> RoutingReview:
    """Store a planner's decision on the routing `model_version` (default: the active one) predicts for `item_cd`."""
    item_cd = (item_cd or "").strip()
    if not item_cd:
        raise ValidationError({"item_cd": ["an item code is required."]})
    if not Item.objects.filter(pk=item_cd).exists():
        raise ValidationError({"item_cd": [f"item {item_cd} is not in the item master."]})
    version = review_version(model_version)
    return RoutingReview.record(
        item_cd=item_cd,
        decision=decision,
        predicted=predicted_routing(item_cd, version),
        model_version=version,
        operations=operations,
        comment=comment,
        by=by,
    )


def decided_routing_rows(reviews) -> list[dict[str, Any]]:
    """The decided routings of `reviews` (accepted or edited) as BI_ROUTING_VIEW rows, ready for `import_erp --routings`.

    Minutes, run time per 1 unit, ROUT_NO "ML", valid from the day of the decision, inserted at
    its time. Rejected reviews have no rows.
    """
    from django.utils import timezone

    from .service import PREDICTED_ROUT_NO, work_centre_names

    decided = [r for r in reviews if r.decided]
    names = work_centre_names(op.get("res_cd") for r in decided for op in r.decided["operations"])
    rows = []
    for review in decided:
        when = timezone.localtime(review.decided_at).replace(microsecond=0)
        for op in review.decided["operations"]:
            rows.append(
                {
                    "ITEM_CD": review.item_cd,
                    "ROUT_NO": PREDICTED_ROUT_NO,
                    "PROC_SEQ": op["proc_seq"],
                    "JOB_CD": op["job_cd"],
                    "JOB_NM": op.get("job_nm") or "",
                    "RES_CD": op.get("res_cd") or "",
                    "RES_DIS": names.get(op.get("res_cd") or "", ""),
                    "INSIDE_FLAG": op.get("inside_flag") or "",
                    "TIME_UNIT": "MIN",
                    "SETUP_TIME": "" if op.get("setup_minutes") is None else op["setup_minutes"],
                    "RUN_TIME": "" if op.get("run_minutes_per_unit") is None else op["run_minutes_per_unit"],
                    "RUN_TIME_QTY": 1,
                    "MFG_LT": "",
                    "QUEUE_TIME": "",
                    "WAIT_TIME": "",
                    "MOVE_TIME": "",
                    "VALID_FROM_DT": when.replace(hour=0, minute=0, second=0).strftime("%Y-%m-%d %H:%M:%S"),
                    "VALID_TO_DT": "",
                    "INSRT_DT": when.strftime("%Y-%m-%d %H:%M:%S"),
                }
            )
    return rows
