"""OpenAPI: our JWT authentication class is documented as simplejwt's bearer scheme (drf-spectacular extension)."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme


class RoutingJWTScheme(SimpleJWTScheme):
    target_class = "routing_ml.tokens.JWTAuthentication"


# Every operation may answer these with the one error body; which ones depends on the operation.
ERROR_DESCRIPTIONS = {
    "400": "Invalid request (a field, the JSON itself, or a bad query parameter); details name what is wrong.",
    "401": "No or invalid credentials (JWT or session).",
    "403": "Authenticated, but without the permission this operation needs.",
    "404": "No such record.",
    "409": "The record's state does not allow it (e.g. a quality cycle already queued or running).",
    "413": "Request body too large.",
    "429": "Too many requests (throttled, or a locked-out login); see Retry-After.",
}
ERROR_BODY = {
    "type": "object",
    "description": "The one error body of the API.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "integer", "description": "The HTTP status, or a runbook code (1002, 1003, 1004, 3001, 3002, 4090)."},
                "message": {"type": "string"},
                "details": {"nullable": True, "description": "What is wrong, when there is more to say (e.g. field errors)."},
            },
            "required": ["code", "message", "details"],
        }
    },
    "required": ["error"],
}
UNSAFE = {"post", "put", "patch", "delete"}


def add_error_responses(result, generator, request, public):
    """drf-spectacular post-processing hook: document the error responses of every operation with the error body schema."""
    result.setdefault("components", {}).setdefault("schemas", {})["RoutingMLError"] = ERROR_BODY
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/RoutingMLError"}}}
    for path, operations in result.get("paths", {}).items():
        public_endpoint = path.startswith("/api/v1/auth/")
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            codes = ["400", "429"]
            codes += ["401"] if public_endpoint else ["401", "403"]
            if "{" in path:
                codes.append("404")
            if method in UNSAFE:
                codes += ["413", "409"] if not public_endpoint else ["413"]
            responses = operation.setdefault("responses", {})
            for code in codes:
                responses.setdefault(code, {"description": ERROR_DESCRIPTIONS[code], "content": reference})
    return result
