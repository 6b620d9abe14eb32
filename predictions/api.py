"""`POST /api/v1/predictions/`: predicted routings for item codes or new items' attributes."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from routing_ml.api import require_perm
from routing_ml.tokens import JWTAuthentication

from . import metrics
from .serializers import ErrorBodySerializer, PredictionBatchSerializer, PredictionRequestSerializer
from .service import BatchTooLarge, predict_items

CHANNEL = "api"


def _check_batch_size(data) -> None:
    """Refuse an oversized batch before validating each of its entries."""
    if not hasattr(data, "get"):
        return
    sizes = [len(v) for v in (data.get("item_codes"), data.get("items")) if isinstance(v, list)]
    requested, limit = sum(sizes), settings.PREDICTION_BATCH_LIMIT
    if requested > limit:
        raise BatchTooLarge(
            f"At most {limit} items per request; this one has {requested}. Split it into several requests.",
            details={"limit": limit, "requested": requested},
        )


class PredictionView(APIView):
    # JWT first: an anonymous caller gets 401 with a WWW-Authenticate header (Session alone would answer 403).
    authentication_classes = [JWTAuthentication, SessionAuthentication]
    permission_classes = [require_perm("registry.predict")]

    @extend_schema(
        operation_id="predictions_create",
        summary="Predict routings",
        description=(
            "Predict the routing (operations, work centres, setup and run minutes per unit with their p10/p90 spread and "
            "time source), its confidence, the alternatives and the similar items it came from, for items of the item master "
            "(`item_codes`) or new items described by their attributes (`items`). Results come back in input order: codes "
            "first, then new items. Each item is `ok` or `error` on its own (an unknown code is an error 1002 for that item "
            f"only). At most PREDICTION_BATCH_LIMIT ({settings.PREDICTION_BATCH_LIMIT}) items per request. "
            "Needs the permission registry.predict (planners, ML admins); integrations authenticate with a JWT "
            "(`POST /api/v1/auth/token/`)."
        ),
        request=PredictionRequestSerializer,
        responses={
            200: PredictionBatchSerializer,
            400: OpenApiResponse(ErrorBodySerializer, description="Invalid request or more items than the batch limit."),
            401: OpenApiResponse(ErrorBodySerializer, description="No or invalid credentials."),
            403: OpenApiResponse(ErrorBodySerializer, description="Missing permission registry.predict."),
            404: OpenApiResponse(ErrorBodySerializer, description="model_version does not exist (code 1002)."),
            503: OpenApiResponse(ErrorBodySerializer, description="No model version is active (code 1002)."),
        },
        examples=[
            OpenApiExample("Known items", value={"item_codes": ["SLV-000123", "GLD-004711"], "top_k": 20}, request_only=True),
            OpenApiExample(
                "A new item",
                value={
                    "items": [{"PART_TYPE": "SLEEVE", "ITEM_MATERIAL": "SUS316", "OUTDIAMETER": 80, "INDIAMETER": 60, "OUTTHICKNESS": 25}]
                },
                request_only=True,
            ),
        ],
        tags=["predictions"],
    )
    def post(self, request):
        try:
            _check_batch_size(request.data)
            body = PredictionRequestSerializer(data=request.data)
            if not body.is_valid():
                raise ValidationError(body.errors)
        except Exception:
            metrics.record_rejected(CHANNEL)
            raise
        data = body.validated_data
        batch = predict_items(
            item_codes=data["item_codes"],
            items=data["items"],
            top_k=data["top_k"],
            model_version=data["model_version"],
            include_context=data["include_context"],
            channel=CHANNEL,
        )
        return Response(batch.as_dict())
