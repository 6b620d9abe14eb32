"""OpenAPI: our JWT authentication class is documented as simplejwt's bearer scheme (drf-spectacular extension)."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme


class RoutingJWTScheme(SimpleJWTScheme):
    target_class = "routing_ml.tokens.JWTAuthentication"
