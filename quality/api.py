"""Quality over HTTP: settings, cycles, the current state, alerts."""

from datetime import timedelta

from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from registry.models import ModelVersion
from routing_ml.api import require_perm
from training.models import TrainingJob

from .models import QualityAlert, QualityCycle, QualitySettings
from .serializers import (
    CycleRequestSerializer,
    QualityAlertSerializer,
    QualityCycleDetailSerializer,
    QualityCycleSerializer,
    QualitySettingsSerializer,
)


class QualitySettingsView(APIView):
    serializer_class = QualitySettingsSerializer

    def get_permissions(self):
        if self.request.method == "PATCH":
            return [require_perm("quality.change_qualitysettings")()]
        return [require_perm("quality.view_qualitysettings")()]

    def get(self, request):
        return Response(QualitySettingsSerializer(QualitySettings.current()).data)

    def patch(self, request):
        """Change some settings (ML admins); every change is kept in the settings' history with who made it."""
        cfg = QualitySettings.current()
        serializer = QualitySettingsSerializer(cfg, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        cfg._history_user = request.user
        cfg = serializer.save()
        return Response(QualitySettingsSerializer(cfg).data)


# The longest window `?days=` may ask for (ten years); more overflowed the date arithmetic.
MAX_DAYS = 3650


class CycleFilter(filters.FilterSet):
    days = filters.NumberFilter(method="within_days", help_text=f"Only cycles started in the last N days (1 to {MAX_DAYS}).")

    class Meta:
        model = QualityCycle
        fields = ["status", "trigger", "days"]

    def within_days(self, queryset, name, value):
        if value is None or not 0 < value <= MAX_DAYS:
            raise ValidationError({"days": f"days must be a number from 1 to {MAX_DAYS}."})
        return queryset.filter(started_at__gte=timezone.now() - timedelta(days=float(value)))


class QualityCycleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = QualityCycle.objects.select_related("model_version").prefetch_related("alerts", "alerts_seen")
    filterset_class = CycleFilter

    def get_serializer_class(self):
        return QualityCycleDetailSerializer if self.action == "retrieve" else QualityCycleSerializer

    def get_permissions(self):
        if self.action == "create":
            return [require_perm("quality.run_qualitycycle")()]
        return [require_perm("quality.view_qualitycycle")()]

    @extend_schema(
        request=CycleRequestSerializer,
        responses={201: QualityCycleDetailSerializer, 202: None, 409: OpenApiResponse(description="A cycle is already queued or running (named in details).")},
    )
    def create(self, request):
        """Run a quality cycle: queued on the cluster (202), or here and now with `"sync": true` (201); 409 while another is queued or running."""
        body = CycleRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        options = {"trigger": QualityCycle.Trigger.API, "by": request.user, "sample_size": data.get("sample_size"), "strategy": data.get("strategy")}
        if data["sync"]:
            from .cycle import run_cycle

            cycle = run_cycle(**options)
            return Response(QualityCycleDetailSerializer(cycle, context={"request": request}).data, status=status.HTTP_201_CREATED)
        cycle, task_id = QualityCycle.enqueue(**options)
        return Response({"task_id": task_id, "status": "queued", "cycle": cycle.pk}, status=status.HTTP_202_ACCEPTED)


class AlertFilter(filters.FilterSet):
    class Meta:
        model = QualityAlert
        fields = ["status", "level", "metric", "cycle"]


class QualityAlertViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = QualityAlert.objects.select_related("acknowledged_by", "resolved_by")
    serializer_class = QualityAlertSerializer
    filterset_class = AlertFilter

    def get_permissions(self):
        if self.action in ("acknowledge", "resolve"):
            return [require_perm("quality.acknowledge_qualityalert")()]
        return [require_perm("quality.view_qualityalert")()]

    @extend_schema(request=None, responses=QualityAlertSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        alert = self.get_object()
        alert.acknowledge(by=request.user)
        return Response(QualityAlertSerializer(alert).data)

    @extend_schema(request=None, responses=QualityAlertSerializer)
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        alert = self.get_object()
        alert.resolve(by=request.user, resolution=str(request.data.get("resolution", "")))
        return Response(QualityAlertSerializer(alert).data)


@extend_schema(responses=None, parameters=[OpenApiParameter("days", int, required=False)])
@api_view(["GET"])
@permission_classes([require_perm("quality.view_dashboard")])
def current(request):
    """The state of quality now: active model, latest cycle against thresholds, open alerts, training queue."""
    cfg = QualitySettings.current()
    latest = QualityCycle.objects.latest_finished()
    active = ModelVersion.objects.get_active()
    open_alerts = QualityAlert.objects.open()
    return Response(
        {
            "active_model": active.label if active else None,
            "latest_cycle": QualityCycleSerializer(latest).data if latest else None,
            "thresholds": {
                "mae": {"warning": cfg.mae_warning, "critical": cfg.mae_critical},
                "process_match": {"warning": cfg.process_match_warning, "critical": cfg.process_match_critical},
                "cv_max": cfg.cv_max,
                "sample_count_min": cfg.sample_count_min,
            },
            "open_alerts": QualityAlertSerializer(open_alerts[:50], many=True).data,
            "open_alert_count": open_alerts.count(),
            "training": {
                "in_flight": TrainingJob.objects.in_flight().count(),
                "queue_capacity": cfg.queue_capacity,
                "auto_retrain": cfg.auto_retrain,
                "auto_deploy": cfg.auto_deploy,
            },
        }
    )
