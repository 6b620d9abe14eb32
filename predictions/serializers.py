"""Request and response shapes of `POST /api/v1/predictions/`.

The response serializers document the schema (drf-spectacular); at run time the view returns
`PredictionBatch.as_dict()` directly, which has exactly these fields, to keep 1,000-item
batches fast.
"""

from __future__ import annotations

from rest_framework import serializers

from .service import ATTRIBUTE_COLUMNS, clean_item_codes


class PredictionRequestSerializer(serializers.Serializer):
    # Each code is checked against the item master by the service, so a code that is too long or
    # unknown is an error of that item only (1002), never a 400 for the whole batch; blank and null
    # entries (e.g. empty cells of a pasted column) are dropped, as on the planner's form.
    item_codes = serializers.ListField(
        child=serializers.CharField(allow_blank=True, allow_null=True, trim_whitespace=True),
        required=False,
        default=list,
        help_text=(
            "Codes of items of the ERP item master (BI_ITEM_INFO_VIEW.ITEM_CD). Blank and null entries are ignored; "
            "a code that is not in the item master is an error (1002) for that item only."
        ),
    )
    items = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        default=list,
        help_text=(
            "New items described by their attributes, keyed by the item master's column names "
            f"(any subset of {', '.join(ATTRIBUTE_COLUMNS)}; ITEM_CD optional). Empty values mean unknown."
        ),
    )
    top_k = serializers.IntegerField(
        min_value=1,
        max_value=50,
        required=False,
        allow_null=True,
        default=None,
        help_text="Similar items to consult (default: the model's own).",
    )
    model_version = serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        default=None,
        help_text="Label of a ready model version; default: the active one.",
    )

    include_context = serializers.BooleanField(
        required=False,
        default=True,
        help_text=(
            "false: leave out existing_routing and the similar items' attributes (two fewer queries, about a third "
            "less time and a smaller response for large batches that only need the routings)."
        ),
    )

    def validate_item_codes(self, value: list) -> list[str]:
        return clean_item_codes(value)

    def validate(self, attrs):
        if not attrs["item_codes"] and not attrs["items"]:
            raise serializers.ValidationError({"item_codes": ["Give item_codes or items (at least one)."]})
        attrs["model_version"] = attrs.get("model_version") or None
        return attrs


# Where a predicted time comes from (the engine's vocabulary); one OpenAPI enum for both fields.
TIME_SOURCES = ("actuals", "model", "standard")


class OperationSerializer(serializers.Serializer):
    proc_seq = serializers.IntegerField()
    job_cd = serializers.CharField()
    job_nm = serializers.CharField(allow_null=True)
    res_cd = serializers.CharField(allow_null=True, help_text="Work centre.")
    inside_flag = serializers.CharField(allow_null=True, help_text="IN (in-house) or OUT (outsourced).")
    setup_minutes = serializers.FloatField(allow_null=True)
    run_minutes_per_unit = serializers.FloatField(allow_null=True)
    time_source = serializers.ChoiceField(
        choices=TIME_SOURCES,
        allow_null=True,
        help_text="Where the run time comes from. actuals: similar items' work orders; model: the learned estimator; "
        "standard: routing standard times (no similar item has actuals).",
    )
    setup_source = serializers.ChoiceField(
        choices=TIME_SOURCES, allow_null=True, help_text="Where the setup time comes from (same values)."
    )
    run_p10 = serializers.FloatField(allow_null=True)
    run_p90 = serializers.FloatField(allow_null=True)
    setup_p10 = serializers.FloatField(allow_null=True)
    setup_p90 = serializers.FloatField(allow_null=True)
    sample_count = serializers.IntegerField(help_text="Work orders behind the times.")


class RoutingSerializer(serializers.Serializer):
    signature = serializers.ListField(child=serializers.CharField(), help_text="The ordered job codes.")
    confidence = serializers.FloatField(help_text="Similarity-weighted share of similar items using this routing (0…1).")
    operations = OperationSerializer(many=True)


class AlternativeSerializer(serializers.Serializer):
    signature = serializers.ListField(child=serializers.CharField())
    support = serializers.FloatField()


class SimilarItemSerializer(serializers.Serializer):
    item_cd = serializers.CharField()
    similarity = serializers.FloatField()
    signature = serializers.ListField(child=serializers.CharField())
    attributes = serializers.DictField(help_text="PART_TYPE, ITEM_MATERIAL, OUTDIAMETER, INDIAMETER, OUTTHICKNESS, SealTypeGrup.")


class ExistingOperationSerializer(serializers.Serializer):
    proc_seq = serializers.IntegerField()
    job_cd = serializers.CharField()
    job_nm = serializers.CharField(allow_null=True)
    res_cd = serializers.CharField(allow_null=True)
    inside_flag = serializers.CharField(allow_null=True)
    setup_minutes = serializers.FloatField(allow_null=True)
    run_minutes_per_unit = serializers.FloatField(allow_null=True)


class ExistingRoutingSerializer(serializers.Serializer):
    signature = serializers.ListField(child=serializers.CharField())
    operations = ExistingOperationSerializer(many=True)


class ItemErrorSerializer(serializers.Serializer):
    code = serializers.IntegerField(
        help_text="1002: item not found in the item master; 400: invalid attributes; 500: the model failed on this item."
    )
    message = serializers.CharField()
    details = serializers.JSONField(allow_null=True)


class ItemPredictionSerializer(serializers.Serializer):
    item_cd = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=["ok", "error"])
    model_version = serializers.CharField()
    source = serializers.ChoiceField(choices=["item_master", "attributes"])
    attributes = serializers.DictField(
        help_text="Item of the item master: ITEM_NM and the key attributes; new item: the attributes as given (cleaned)."
    )
    routing = RoutingSerializer(required=False)
    alternatives = AlternativeSerializer(many=True, required=False)
    similar_items = SimilarItemSerializer(many=True, required=False)
    existing_routing = ExistingRoutingSerializer(
        required=False, allow_null=True, help_text="The item's current ERP routing, for comparison."
    )
    unseen_attributes = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        help_text="Attribute values (column: value) the model never learned, e.g. a new PART_TYPE: the item is matched on its "
        "other attributes only, so treat the prediction with care. Empty for items the model was trained on.",
    )
    error = ItemErrorSerializer(required=False)


class PredictionBatchSerializer(serializers.Serializer):
    model_version = serializers.CharField(help_text="The model version that answered.")
    count = serializers.IntegerField()
    ok = serializers.IntegerField()
    errors = serializers.IntegerField()
    duration_ms = serializers.FloatField()
    results = ItemPredictionSerializer(many=True)


class ErrorBodySerializer(serializers.Serializer):
    error = ItemErrorSerializer()


# --------------------------------------------------------------------------------------------
# Planners' reviews
# --------------------------------------------------------------------------------------------


class ReviewOperationSerializer(serializers.Serializer):
    job_cd = serializers.CharField(help_text="A job code the ERP's routings know (BI_ROUTING_VIEW.JOB_CD).")
    res_cd = serializers.CharField(help_text="A work centre the ERP's routings know (BI_ROUTING_VIEW.RES_CD).")
    inside_flag = serializers.CharField(help_text="IN (in-house) or OUT (outsourced).")
    setup_minutes = serializers.FloatField(help_text="Setup minutes, 0 or more.")
    run_minutes_per_unit = serializers.FloatField(help_text="Run minutes per unit, 0 or more.")


class ReviewRequestSerializer(serializers.Serializer):
    item_cd = serializers.CharField(help_text="An item of the item master.")
    decision = serializers.ChoiceField(choices=["accepted", "edited", "rejected"])
    # Checked by RoutingReview.record (known codes, times ≥ 0), which reports `operations.<i>.<field>`.
    operations = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        allow_empty=True,
        default=list,
        help_text="The decided routing in order (required when edited): job_cd, res_cd, inside_flag, setup_minutes, run_minutes_per_unit.",
    )
    comment = serializers.CharField(required=False, allow_blank=True, default="")
    model_version = serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        default=None,
        help_text="Whose prediction is reviewed; default the active version.",
    )


class DecidedOperationSerializer(serializers.Serializer):
    proc_seq = serializers.IntegerField()
    job_cd = serializers.CharField()
    job_nm = serializers.CharField(allow_null=True, allow_blank=True)
    res_cd = serializers.CharField(allow_null=True)
    inside_flag = serializers.CharField(allow_null=True)
    setup_minutes = serializers.FloatField(allow_null=True)
    run_minutes_per_unit = serializers.FloatField(allow_null=True)


class DecidedRoutingSerializer(serializers.Serializer):
    signature = serializers.ListField(child=serializers.CharField())
    operations = DecidedOperationSerializer(many=True)


class RoutingReviewSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    item_cd = serializers.CharField()
    model_version = serializers.CharField(source="model_version.label")
    decision = serializers.CharField()
    predicted = RoutingSerializer()
    decided = DecidedRoutingSerializer(allow_null=True)
    comment = serializers.CharField()
    decided_by = serializers.CharField(source="decided_by.username", allow_null=True, default=None)
    decided_at = serializers.DateTimeField()


class RoutingReviewPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = RoutingReviewSerializer(many=True)
