from rest_framework import serializers

from .models import DeploymentEvent, ModelVersion


class DeploymentEventSerializer(serializers.ModelSerializer):
    from_version = serializers.SlugRelatedField(slug_field="label", read_only=True)
    to_version = serializers.SlugRelatedField(slug_field="label", read_only=True)
    performed_by = serializers.StringRelatedField(allow_null=True)

    class Meta:
        model = DeploymentEvent
        fields = ["id", "kind", "from_version", "to_version", "performed_by", "reason", "details", "created_at"]


class ModelVersionSerializer(serializers.ModelSerializer):
    training_job = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "label", "status", "is_active", "metrics", "selected_estimator", "candidate_scores", "total_samples", "unique_items",
            "unique_processes", "dataset_stats", "training_duration_seconds", "training_cutoff", "parameters", "description", "tags",
            "created_at", "activated_at", "manifest_sha256", "training_job",
        ]

    def get_training_job(self, version) -> int | None:
        # Pick the newest in Python: ordering the related manager would bypass the view's
        # prefetch_related("training_jobs") and cost one query per version.
        return max((job.pk for job in version.training_jobs.all()), default=None)


class ModelVersionDetailSerializer(ModelVersionSerializer):
    deployment_events = DeploymentEventSerializer(many=True, read_only=True)

    class Meta(ModelVersionSerializer.Meta):
        fields = [*ModelVersionSerializer.Meta.fields, "deployment_events"]


class DeploymentRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")
