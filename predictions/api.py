"""`POST /api/v1/predictions/`: predicted routings; `/api/v1/reviews/`: planners' decisions on them."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from routing_ml.api import require_perm
from routing_ml.csv_export import SafeDictWriter
from routing_ml.renderers import ORJSONRenderer
from routing_ml.serving import pause_gc, resume_gc
from routing_ml.tokens import JWTAuthentication

from . import metrics
from .models import RoutingReview
from .reviews import decided_routing_rows, record_review
from .serializers import (
    ErrorBodySerializer,
    PredictionBatchSerializer,
    PredictionRequestSerializer,
    ReviewRequestSerializer,
    RoutingReviewPageSerializer,
    RoutingReviewSerializer,
)
from .service import ERP_ROUTING_COLUMNS, BatchTooLarge, clean_item_codes, log_served, predict_items

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


def _plain_request(data) -> dict | None:
    """The validated request when it is plainly valid JSON, else None (then PredictionRequestSerializer decides).

    What PredictionRequestSerializer would return for the common request (lists of strings or
    objects, an int top_k in range, a bool include_context, a string model_version), at a small
    fraction of its cost: on a one-item request the serializer's field machinery cost more
    than the model. Anything it would coerce or refuse (numbers as codes, "true" as a bool, a
    missing list) is left to the serializer, so error bodies stay exactly its own.
    """
    if type(data) is not dict:
        return None
    codes, items = data.get("item_codes", []), data.get("items", [])
    top_k, model_version = data.get("top_k"), data.get("model_version")
    include_context = data.get("include_context", True)
    if type(codes) is not list or type(items) is not list or type(include_context) is not bool:
        return None
    if top_k is not None and (type(top_k) is not int or not 1 <= top_k <= 50):
        return None
    if model_version is not None and type(model_version) is not str:
        return None
    if any(code is not None and type(code) is not str for code in codes) or any(type(item) is not dict for item in items):
        return None
    codes = clean_item_codes(codes)  # trims and drops blank entries, as the serializer's CharField + validate_item_codes
    if not codes and not items:
        return None
    return {
        "item_codes": codes,
        "items": [dict(item) for item in items],
        "top_k": top_k,
        "model_version": (model_version or "").strip() or None,
        "include_context": include_context,
    }


class PredictionView(APIView):
    # JWT first: an anonymous caller gets 401 with a WWW-Authenticate header (Session alone would answer 403).
    authentication_classes = [JWTAuthentication, SessionAuthentication]
    # orjson for the answer (megabytes for a 1,000-item batch); the browsable API stays for people.
    renderer_classes = [ORJSONRenderer, BrowsableAPIRenderer]
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
        # No cyclic GC from here until the answer is sent: a batch's ~100,000 dicts and lists are all alive
        # until then, and every collection would walk them (and the whole heap) for nothing.
        paused = pause_gc()
        try:
            response = self._predict(request)
        except BaseException:
            if paused:
                resume_gc()
            raise
        if paused:
            response._resource_closers.append(resume_gc)  # closers run in order: this one last
        return response

    def _predict(self, request):
        try:
            _check_batch_size(request.data)
            data = _plain_request(request.data)
            if data is None:  # anything unusual: the serializer decides, with its exact error messages
                body = PredictionRequestSerializer(data=request.data)
                if not body.is_valid():
                    raise ValidationError(body.errors)
                data = body.validated_data
        except Exception:
            metrics.record_rejected(CHANNEL)
            raise
        batch = predict_items(
            item_codes=data["item_codes"],
            items=data["items"],
            top_k=data["top_k"],
            model_version=data["model_version"],
            include_context=data["include_context"],
            channel=CHANNEL,
            log=False,
        )
        response = Response(batch.as_dict())
        # Work the caller need not wait for runs when the WSGI server closes the response, i.e. once the
        # answer is on its way: the log of served predictions (planner agreement), one INSERT and its
        # commit. (A large answer's memory is then freed and handed back by routing_ml.wsgi.)
        if CHANNEL in settings.PREDICTION_LOG_CHANNELS:
            response._resource_closers.append(lambda: log_served(batch, CHANNEL))
        return response


# --------------------------------------------------------------------------------------------
# Planners' reviews
# --------------------------------------------------------------------------------------------


def _since(value: str | None):
    """`since` as an aware datetime: an ISO date (midnight, local time) or date-time; 400 otherwise."""
    if not value:
        return None
    from django.utils import timezone
    from django.utils.dateparse import parse_date, parse_datetime

    try:
        when = parse_datetime(value)
        if when is None:
            day = parse_date(value)
            if day is None:
                raise ValueError(value)
            from datetime import datetime, time

            when = datetime.combine(day, time.min)
    except ValueError:
        raise ValidationError(
            {"since": [f"{value!r} is not an ISO date or date-time (e.g. 2025-03-01 or 2025-03-01T08:00:00Z)."]}
        ) from None
    return timezone.make_aware(when) if timezone.is_naive(when) else when


class ReviewListView(APIView):
    """`POST /api/v1/reviews/` records a decision; `GET` lists them, newest first."""

    authentication_classes = [JWTAuthentication, SessionAuthentication]

    def get_permissions(self):
        if self.request.method == "POST":
            return [require_perm("predictions.add_routingreview")()]
        return [require_perm("predictions.view_routingreview")()]

    @extend_schema(
        operation_id="reviews_list",
        summary="List planners' reviews",
        parameters=[
            OpenApiParameter("item_cd", str, description="Only this item's reviews."),
            OpenApiParameter("decision", str, enum=["accepted", "edited", "rejected"]),
            OpenApiParameter("since", str, description="Only reviews decided at or after this ISO date or date-time."),
            OpenApiParameter("current", bool, description="true: only each item's latest decision."),
            OpenApiParameter("limit", int, description="Page size (default 50)."),
            OpenApiParameter("offset", int),
        ],
        responses={200: RoutingReviewPageSerializer, 400: ErrorBodySerializer},
        tags=["reviews"],
    )
    def get(self, request):
        reviews = RoutingReview.objects.select_related("model_version", "decided_by")
        params = request.query_params
        if params.get("current", "").lower() in ("1", "true", "yes"):
            reviews = reviews.latest_per_item()
        if params.get("item_cd"):
            reviews = reviews.filter(item_cd=params["item_cd"].strip())
        if params.get("decision"):
            if params["decision"] not in RoutingReview.Decision.values:
                raise ValidationError({"decision": [f"must be one of {', '.join(RoutingReview.Decision.values)}."]})
            reviews = reviews.filter(decision=params["decision"])
        since = _since(params.get("since"))
        if since is not None:
            reviews = reviews.since(since)
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(reviews, request, view=self)
        return paginator.get_paginated_response(RoutingReviewSerializer(page, many=True).data)

    @extend_schema(
        operation_id="reviews_create",
        summary="Record a planner's decision on a predicted routing",
        description=(
            "accepted: the predicted routing becomes the decided one; edited: `operations` (in order) is the decided routing, "
            "each with a job and work centre the ERP's routings know and times ≥ 0; rejected: no routing, say why in `comment`. "
            "The routing as predicted is that of `model_version` (default: the active one). History is kept: the latest "
            "decision per item is the current one."
        ),
        request=ReviewRequestSerializer,
        responses={
            201: RoutingReviewSerializer,
            400: OpenApiResponse(ErrorBodySerializer, description="Invalid decision, unknown item, job or work centre, negative time."),
            404: OpenApiResponse(ErrorBodySerializer, description="model_version does not exist (code 1002)."),
            503: OpenApiResponse(ErrorBodySerializer, description="No model version is active (code 1002)."),
        },
        examples=[
            OpenApiExample(
                "Edited",
                value={
                    "item_cd": "SLV-000123",
                    "decision": "edited",
                    "operations": [
                        {"job_cd": "TURN", "res_cd": "L-01", "inside_flag": "IN", "setup_minutes": 30, "run_minutes_per_unit": 2.5},
                        {"job_cd": "HEAT", "res_cd": "OUT-HT", "inside_flag": "OUT", "setup_minutes": 0, "run_minutes_per_unit": 1.2},
                    ],
                    "comment": "Heat treatment is outsourced for this size.",
                },
                request_only=True,
            )
        ],
        tags=["reviews"],
    )
    def post(self, request):
        body = ReviewRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            review = record_review(
                item_cd=data["item_cd"],
                decision=data["decision"],
                operations=data["operations"],
                comment=data["comment"],
                model_version=data["model_version"] or None,
                by=request.user,
            )
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict) from None
        return Response(RoutingReviewSerializer(review).data, status=201)


class ReviewExportView(APIView):
    """`GET /api/v1/reviews/export.csv`: each item's current decided routing (accepted or edited) in BI_ROUTING_VIEW's layout."""

    authentication_classes = [JWTAuthentication, SessionAuthentication]
    permission_classes = [require_perm("predictions.view_routingreview")]

    @extend_schema(
        operation_id="reviews_export_csv",
        summary="Decided routings as a CSV file for the ERP",
        description="Rows in BI_ROUTING_VIEW's column order (the layout `import_erp --routings` reads): one per operation of each "
        "item whose latest decision is accepted or edited. Filters: item_cd, since.",
        parameters=[OpenApiParameter("item_cd", str), OpenApiParameter("since", str)],
        responses={(200, "text/csv"): str},
        tags=["reviews"],
    )
    def get(self, request):
        reviews = RoutingReview.objects.latest_per_item().decided_routings().order_by("item_cd")
        if request.query_params.get("item_cd"):
            reviews = reviews.filter(item_cd=request.query_params["item_cd"].strip())
        since = _since(request.query_params.get("since"))
        if since is not None:
            reviews = reviews.since(since)
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="decided-routings-{timezone.localtime():%Y%m%d-%H%M}.csv"'
        writer = SafeDictWriter(response, fieldnames=ERP_ROUTING_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(decided_routing_rows(reviews))
        return response
