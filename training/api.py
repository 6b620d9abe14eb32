"""Training jobs over HTTP: list, start, read, cancel."""

from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from routing_ml.api import require_perm

from .models import TrainingJob
from .serializers import TrainingJobSerializer, TrainingRequestSerializer


class TrainingJobFilter(filters.FilterSet):
    class Meta:
        model = TrainingJob
        fields = ["status", "trigger"]


class TrainingJobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = TrainingJob.objects.select_related("model_version", "requested_by")
    serializer_class = TrainingJobSerializer
    filterset_class = TrainingJobFilter

    def get_permissions(self):
        if self.action in ("create", "cancel", "destroy"):
            perm = "training.add_trainingjob" if self.action == "create" else "training.cancel_trainingjob"
            return [require_perm(perm)()]
        return [require_perm("training.view_trainingjob")()]

    @extend_schema(request=TrainingRequestSerializer, responses={202: TrainingJobSerializer})
    def create(self, request):
        """Queue a training job (429 with code 1003 when the queue is full)."""
        serializer = TrainingRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        job = TrainingJob.enqueue(
            parameters=serializer.to_parameters(), trigger=TrainingJob.Trigger.API, by=request.user, label=serializer.validated_data.get("label")
        )
        return Response(TrainingJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=TrainingJobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a queued job at once, or a running one at its next stage boundary."""
        job = self.get_object()
        job.cancel(by=request.user)
        return Response(TrainingJobSerializer(job).data)

    @extend_schema(responses={200: TrainingJobSerializer})
    def destroy(self, request, pk=None):
        """Same as cancel: jobs are records and are never deleted."""
        return self.cancel(request, pk)
