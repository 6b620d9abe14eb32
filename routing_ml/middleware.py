"""Refuse, before anything reads it, a request no view can handle: a body too large, NUL in the URL."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse, JsonResponse

from .api import error_body, too_large_body


class HostileInputMiddleware:
    """First in MIDDLEWARE: answers 413 for a declared body over the limits and 400 for a NUL in the path or query.

    A body without Content-Length (chunked) is still caught when read: Django raises
    RequestDataTooBig, which the API's exception handler and handler400 turn into the same 413.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        is_api = request.path.startswith("/api/")
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        multipart = request.META.get("CONTENT_TYPE", "").startswith("multipart/")
        limit = settings.UPLOAD_MAX_BYTES if multipart else settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and length > limit:
            body = too_large_body()
            body["error"]["message"] = f"The request body is larger than {limit:,} bytes; split the request."
            body["error"]["details"] = {"limit_bytes": limit}
            if is_api:
                return JsonResponse(body, status=413)
            return HttpResponse(body["error"]["message"], status=413, content_type="text/plain; charset=utf-8")
        raw_query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path or "%00" in raw_query or "\x00" in raw_query:
            message = "The URL must not contain a NUL character (%00)."
            if is_api:
                return JsonResponse(error_body(400, message, None), status=400)
            return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


class PermissionsPolicyMiddleware:
    """Permissions-Policy on every response: no page of ours uses the camera, microphone, location, payment or USB."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        return response
