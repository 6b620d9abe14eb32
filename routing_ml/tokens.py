"""The JWT authentication class: simplejwt's, also refusing tokens issued before the user's last password change.

Apart from routing_ml.auth (views, serializers): DRF imports this while its own views module loads.
"""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from rest_framework_simplejwt import authentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken

PASSWORD_CLAIM = "pwv"


def password_version(user) -> str:
    """A short keyed digest of the user's current password hash (never the hash itself)."""
    return hmac.new(settings.SECRET_KEY.encode(), f"{user.pk}:{user.password}".encode(), hashlib.sha256).hexdigest()[:16]


def check_password_version(user, token) -> None:
    if token.get(PASSWORD_CLAIM) != password_version(user):
        raise AuthenticationFailed("This token was issued before the password changed; obtain a new one.", code="password_changed")


class JWTAuthentication(authentication.JWTAuthentication):
    """simplejwt's authentication, also refusing tokens issued before the user's last password change."""

    def get_user(self, validated_token):
        user = super().get_user(validated_token)
        try:
            check_password_version(user, validated_token)
        except AuthenticationFailed as exc:
            raise InvalidToken(exc.detail) from exc
        return user
