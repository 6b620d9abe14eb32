from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .models import QualityAlert, QualityCycle, QualitySettings


class QualitySettingsSerializer(serializers.ModelSerializer):
    class Meta:
        model = QualitySettings
        exclude = ["id"]
        read_only_fields = ["updated_at"]

    def validate(self, attrs):
        # The model's clean() holds the cross-field rules (warning vs critical, cron); run it on the merged values.
        instance = self.instance or QualitySettings()
        candidate = QualitySettings(**{**{f.name: getattr(instance, f.name) for f in QualitySettings._meta.concrete_fields}, **attrs})
        try:
            candidate.clean()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict)
        return attrs


class QualityAlertSerializer(serializers.ModelSerializer):
    acknowledged_by = serializers.StringRelatedField(allow_null=True)
    resolved_by = serializers.StringRelatedField(allow_null=True)

    class Meta:
        model = QualityAlert
        fields = ["id", "cycle", "last_cycle", "level", "metric", "part_type", "value", "threshold", "error_code", "message", "status", "created_at",
                  "last_seen_at", "count", "acknowledged_by", "acknowledged_at", "resolved_by", "resolved_at", "resolution"]


class QualityCycleSerializer(serializers.ModelSerializer):
    model_version = serializers.SlugRelatedField(slug_field="label", read_only=True, allow_null=True)
    alerts = serializers.SerializerMethodField(help_text="Alerts this cycle raised or found still breached.")
    report_url = serializers.SerializerMethodField(help_text="The cycle's JSON report (authenticated download), or null.")

    @extend_schema_field(QualityAlertSerializer(many=True))
    def get_alerts(self, cycle):
        return QualityAlertSerializer(cycle.seen_alerts(), many=True).data

    @extend_schema_field({"type": "string", "format": "uri", "nullable": True})
    def get_report_url(self, cycle) -> str | None:
        url = cycle.report_url()
        request = self.context.get("request")
        return request.build_absolute_uri(url) if url and request is not None else url

    class Meta:
        model = QualityCycle
        fields = ["id", "status", "trigger", "model_version", "sample_strategy", "sample_size", "items_sampled", "items_evaluated",
                  "items_without_actuals", "items_failed", "metrics", "metrics_by_part_type", "drift", "retraining_job", "retraining_decision",
                  "error", "started_at", "heartbeat_at", "finished_at", "duration_seconds", "report_url", "alerts"]


class QualityCycleDetailSerializer(QualityCycleSerializer):
    class Meta(QualityCycleSerializer.Meta):
        fields = [*QualityCycleSerializer.Meta.fields, "report"]


class CycleRequestSerializer(serializers.Serializer):
    sample_size = serializers.IntegerField(required=False, min_value=10, max_value=10000)
    strategy = serializers.ChoiceField(choices=QualitySettings.Strategy.choices, required=False)
    sync = serializers.BooleanField(required=False, default=False, help_text="Wait for the result instead of queueing it.")
