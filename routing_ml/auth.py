"""JWT hardening: tokens die with the password, refresh tokens rotate, and the token endpoints are throttled.

Every token carries `pwv`, a keyed digest of the user's password hash: a password change (or a
reset by an admin) changes the hash, so every access and refresh token issued before it stops
working at once; deactivation is refused by simplejwt's own is_active checks. Refresh tokens rotate
and the used one is blacklisted (ROTATE_REFRESH_TOKENS, BLACKLIST_AFTER_ROTATION).

Throttles: per client address on both endpoints, and per username on the obtain endpoint, in the
`throttle` cache (shared by every process of a host: file-based, or Redis when REDIS_URL is set).
"""

from __future__ import annotations

import hashlib

from django.contrib.auth import get_user_model
from django.core.cache import caches
from rest_framework.throttling import SimpleRateThrottle
from rest_framework_simplejwt import serializers, views
from rest_framework_simplejwt.exceptions import AuthenticationFailed

from .tokens import PASSWORD_CLAIM, check_password_version, password_version


class TokenObtainPairSerializer(serializers.TokenObtainPairSerializer):
    @classmethod
    def get_token(cls, user):
        token = super().get_token(user)
        token[PASSWORD_CLAIM] = password_version(user)
        return token


class TokenRefreshSerializer(serializers.TokenRefreshSerializer):
    def validate(self, attrs):
        from rest_framework_simplejwt.tokens import RefreshToken

        refresh = RefreshToken(attrs["refresh"])
        user = get_user_model().objects.filter(pk=refresh.payload.get("user_id")).first()
        if user is None or not user.is_active:
            raise AuthenticationFailed("No active account found for the given token.", code="no_active_account")
        check_password_version(user, refresh)
        return super().validate(attrs)


class _AuthThrottle(SimpleRateThrottle):
    cache = caches["throttle"]



class TokenAddressThrottle(_AuthThrottle):
    """Token requests per client address (AUTH_THROTTLE_RATE_ADDRESS)."""

    scope = "auth_address"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class TokenUsernameThrottle(_AuthThrottle):
    """Token requests per username, from any address (AUTH_THROTTLE_RATE_USERNAME): slows guessing one account's password."""

    scope = "auth_username"

    def get_cache_key(self, request, view):
        data = request.data  # a body that does not parse fails here, as a 400, and is not counted
        username = data.get("username") if hasattr(data, "get") else None
        if not isinstance(username, str) or not username:
            return None
        digest = hashlib.sha256(username.strip().lower().encode("utf-8", "replace")).hexdigest()[:32]
        return self.cache_format % {"scope": self.scope, "ident": digest}


class TokenObtainPairView(views.TokenObtainPairView):
    throttle_classes = [TokenAddressThrottle, TokenUsernameThrottle]

    def handle_exception(self, exc):
        # django-axes marks a locked-out attempt on the request it was given (this DRF request);
        # Django's authenticate() turns its refusal into "no user", which would read as a plain 401.
        if getattr(self.request, "axes_locked_out", False):
            from .api import lockout_response

            return lockout_response()
        return super().handle_exception(exc)


class TokenRefreshView(views.TokenRefreshView):
    throttle_classes = [TokenAddressThrottle]
