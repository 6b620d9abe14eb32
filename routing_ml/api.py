"""API plumbing shared by every app: the one error body, the API root, role permissions."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFieldsSent
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import RoutingMLError

logger = logging.getLogger(__name__)

# Codes for errors that are not the runbooks' own: the HTTP status doubles as the code.
_DRF_MESSAGES = {
    status.HTTP_400_BAD_REQUEST: "The request is invalid.",
    status.HTTP_401_UNAUTHORIZED: "Authentication credentials were not provided or are invalid.",
    status.HTTP_403_FORBIDDEN: "You do not have permission to perform this action.",
    status.HTTP_404_NOT_FOUND: "Not found.",
    status.HTTP_405_METHOD_NOT_ALLOWED: "Method not allowed.",
    status.HTTP_413_REQUEST_ENTITY_TOO_LARGE: "The request body is too large.",
    status.HTTP_429_TOO_MANY_REQUESTS: "Too many requests.",
}


def error_body(code: int, message: str, details=None) -> dict:
    return {"error": {"code": code, "message": message, "details": details}}


def lockout_response() -> Response:
    """django-axes locked this username out from this address (AXES_FAILURE_LIMIT failures): 429 until the cool-off ends."""
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    message = f"Too many failed logins for this username from this address: locked for {seconds // 60} minutes."
    return Response(error_body(429, message, {"retry_after_seconds": seconds}), status=429, headers={"Retry-After": str(seconds)})


def too_large_body() -> dict:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return error_body(413, f"The request body is larger than {limit:,} bytes; split the request.", {"limit_bytes": limit})


def exception_handler(exc, context):
    """Every API error, whatever raised it, leaves as `{"error": {"code", "message", "details"}}`."""
    if isinstance(exc, RoutingMLError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.http_status)
    if isinstance(exc, RequestDataTooBig):
        return Response(too_large_body(), status=413)

    if isinstance(exc, TooManyFieldsSent):
        return Response(error_body(400, str(exc), None), status=400)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("Unhandled API error", exc_info=exc)
        return Response(error_body(500, "Internal server error.", None), status=500)
    data = response.data
    if isinstance(exc, exceptions.ValidationError):
        message, details = "The request is invalid.", data
    elif isinstance(data, dict) and set(data) <= {"detail", "code", "messages"} and "detail" in data:
        message, details = str(data["detail"]), ({"messages": data["messages"]} if "messages" in data else None)
    else:
        message, details = _DRF_MESSAGES.get(response.status_code, "Error."), data
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        details = {"retry_after_seconds": int(exc.wait)}
    response.data = error_body(response.status_code, message, details)
    return response


def json_error_view(status_code: int, message: str):
    """Django-level handlers (handler400/404/500) so API paths never answer with an HTML page."""

    def view(request, exception=None):
        if isinstance(exception, RequestDataTooBig):
            # Raised while reading the body (e.g. by the CSRF check), before any view: still a 413.
            body = too_large_body()
            if request.path.startswith("/api/"):
                return JsonResponse(body, status=413)
            from django.http import HttpResponse

            return HttpResponse(body["error"]["message"], status=413, content_type="text/plain; charset=utf-8")
        if request.path.startswith("/api/"):
            return JsonResponse(error_body(status_code, message), status=status_code)
        from django.views import defaults

        if status_code == 404:
            return defaults.page_not_found(request, exception)
        if status_code == 400:
            return defaults.bad_request(request, exception)
        return defaults.server_error(request)

    return view


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: a JSON 403 under /api/ (a browser session without the token), Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(403, f"CSRF check failed: {reason}", None), status=403)
    from django.views.csrf import csrf_failure as default

    return default(request, reason=reason)


@csrf_exempt  # an unsafe method on an unknown path is a 404, not a CSRF failure page
def api_not_found(request, rest: str = ""):
    """Any path under /api/ that matches no endpoint: the JSON error body, whatever DEBUG says.

    (handler404 only answers when DEBUG is off; with DEBUG on Django would send its HTML page.)
    """
    from django.urls import Resolver404, resolve

    details = {"path": request.path}
    if not request.path.endswith("/"):
        try:
            match = resolve(request.path + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not api_not_found:
            details["did_you_mean"] = request.path + "/"
    return JsonResponse(error_body(404, f"No API endpoint at {request.path}.", details), status=404)


def require_perm(perm: str):
    """A DRF permission class for one Django permission: `permission_classes = [require_perm("registry.activate_modelversion")]`."""

    class _Perm(BasePermission):
        message = f"This action needs the permission {perm}."

        def has_permission(self, request, view):
            return bool(request.user and request.user.is_authenticated and request.user.has_perm(perm))

    _Perm.__name__ = f"Requires_{perm.replace('.', '_')}"
    return _Perm


@extend_schema(exclude=True)
@api_view(["GET"])
@permission_classes([AllowAny])
def api_root(request, format=None):
    """Where everything lives."""
    return Response(
        {
            "token": reverse("token_obtain_pair", request=request, format=format),
            "schema": reverse("schema", request=request, format=format),
            "docs": reverse("swagger-ui", request=request, format=format),
            "health": request.build_absolute_uri("/health"),
        }
    )
