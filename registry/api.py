"""Model versions over HTTP: list, read, activate, roll back."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from routing_ml.api import require_perm

from .models import ModelVersion
from .serializers import DeploymentEventSerializer, DeploymentRequestSerializer, ModelVersionDetailSerializer, ModelVersionSerializer


class ModelVersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = ModelVersion.objects.prefetch_related("training_jobs")
    lookup_field = "label"
    lookup_value_regex = "[-a-zA-Z0-9_]+"
    filterset_fields = ["status", "is_active"]

    def get_serializer_class(self):
        return ModelVersionDetailSerializer if self.action == "retrieve" else ModelVersionSerializer

    def get_permissions(self):
        if self.action in ("activate", "rollback"):
            return [require_perm("registry.activate_modelversion")()]
        return [require_perm("registry.view_modelversion")()]

    @extend_schema(request=DeploymentRequestSerializer, responses=DeploymentEventSerializer)
    @action(detail=True, methods=["post"])
    def activate(self, request, label=None):
        """Activate this version (refused with 1002 when its files are missing or corrupt)."""
        body = DeploymentRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        event = self.get_object().activate(by=request.user, reason=body.validated_data["reason"])
        return Response(DeploymentEventSerializer(event).data)

    @extend_schema(request=DeploymentRequestSerializer, responses=DeploymentEventSerializer)
    @action(detail=False, methods=["post"])
    def rollback(self, request):
        """Re-activate the version that was active before the current one."""
        body = DeploymentRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        event = ModelVersion.rollback(by=request.user, reason=body.validated_data["reason"])
        return Response(DeploymentEventSerializer(event).data)
