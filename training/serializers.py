from rest_framework import serializers

from .models import CANDIDATES, DEFAULT_CANDIDATES, TrainingJob


class TrainingJobSerializer(serializers.ModelSerializer):
    model_version = serializers.SlugRelatedField(slug_field="label", read_only=True, allow_null=True)
    requested_by = serializers.StringRelatedField(allow_null=True)
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = TrainingJob
        fields = [
            "id", "label", "status", "trigger", "parameters", "progress", "stage", "heartbeat_at", "error", "error_code",
            "cancel_requested", "candidate_scores", "selected_estimator", "gate", "model_version", "requested_by",
            "created_at", "started_at", "finished_at", "duration_seconds", "log",
        ]
        read_only_fields = fields


class TrainingRequestSerializer(serializers.Serializer):
    """What a caller may ask for when starting a job."""

    label = serializers.SlugField(required=False, max_length=100)
    candidates = serializers.ListField(child=serializers.ChoiceField(choices=CANDIDATES), required=False, allow_empty=False)
    sample_size = serializers.IntegerField(required=False, min_value=20, max_value=10_000_000)
    seed = serializers.IntegerField(required=False, default=0, min_value=0, max_value=2**32 - 1)
    min_improvement_pct = serializers.FloatField(required=False, min_value=0, max_value=100)
    max_embedding_width = serializers.IntegerField(
        required=False, min_value=16, max_value=4096,
        help_text="Widest item embedding the settings search may choose (default 256): 32 for the fastest answers.",
    )
    until = serializers.DateField(required=False)
    activate = serializers.BooleanField(required=False, default=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    feature_weights = serializers.JSONField(
        required=False,
        help_text='Similarity weight per item attribute (ERP column name), e.g. {"OUTDIAMETER": 2.0, "DRAW_NO": 0.5}; '
        "0 switches a feature off. Unlisted features keep their defaults.",
    )

    def validate_feature_weights(self, value):
        from training.engine import check_feature_weights

        try:
            return check_feature_weights(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc))

    def validate_candidates(self, value):
        return value if "baseline" in value else ["baseline", *value]

    def to_parameters(self) -> dict:
        data = dict(self.validated_data)
        data.pop("label", None)
        if "until" in data:
            data["until"] = data["until"].isoformat()
        data.setdefault("candidates", list(DEFAULT_CANDIDATES))
        return data
