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
    """simplejwt's authentication, also refusing tokens issued before the user's last password change.

    Every API request reads the user and then (for the permission check) the user's permissions.
    Both are read here with two plain SQL statements instead of three ORM queries, whose
    compilation cost more than the one-item prediction they guarded: the user row as simplejwt
    reads it, and the permissions into the very caches Django's ModelBackend fills on first use
    (`_user_perm_cache`, `_group_perm_cache`, `_perm_cache`), so `has_perm` answers as before, from
    the database, on every request (nothing is cached across requests: a deactivation, password
    change or permission change takes effect on the next request, as before).
    """

    def get_user(self, validated_token):
        from django.utils.translation import gettext_lazy as _
        from rest_framework_simplejwt.settings import api_settings

        user = None
        user_id = validated_token.get(api_settings.USER_ID_CLAIM)
        if user_id is not None and not api_settings.CHECK_REVOKE_TOKEN:
            user = _load_user(self.user_model, api_settings.USER_ID_FIELD, user_id)
            if user is not None and api_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
                raise AuthenticationFailed(_("User is inactive"), code="user_inactive")
        if user is None:
            user = super().get_user(validated_token)  # simplejwt's own path and errors (no claim, no such user)
        try:
            check_password_version(user, validated_token)
        except AuthenticationFailed as exc:
            raise InvalidToken(exc.detail) from exc
        _load_permissions(user)
        return user


def _load_user(user_model, id_field: str, user_id):
    """The user whose `id_field` is `user_id`, read with one plain SELECT (None if there is none)."""
    from django.db import connections, router

    meta = user_model._meta
    try:
        field = meta.get_field(id_field)
    except Exception:
        return None
    alias = router.db_for_read(user_model) or "default"
    connection = connections[alias]
    qn = connection.ops.quote_name
    columns = [f.column for f in meta.concrete_fields]
    try:
        value = field.get_db_prep_value(field.to_python(user_id), connection)
    except Exception:
        return None
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(qn(c) for c in columns)} FROM {qn(meta.db_table)} WHERE {qn(field.column)} = %s", [value])
        row = cursor.fetchone()
    if row is None:
        return None
    converters = connection.ops.get_db_converters
    values = []
    for f, raw in zip(meta.concrete_fields, row, strict=True):
        expression = f.get_col(meta.db_table)
        for converter in [*converters(expression), *expression.get_db_converters(connection)]:
            raw = converter(raw, expression, connection)
        values.append(raw)
    return user_model.from_db(alias, [f.attname for f in meta.concrete_fields], values)


def _load_permissions(user) -> None:
    """Fill ModelBackend's permission caches of `user` with one SELECT (what its two lazy queries would read)."""
    if not user.is_active or user.is_superuser:
        return  # inactive: no permission; superuser: has_perm answers True without reading them
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType
    from django.db import connections, router

    user_model = type(user)
    perm_rel, group_rel = user_model._meta.get_field("user_permissions"), user_model._meta.get_field("groups")
    group_perm_rel = group_rel.related_model._meta.get_field("permissions")
    alias = router.db_for_read(Permission) or "default"
    connection = connections[alias]
    qn = connection.ops.quote_name
    up, ug, gp = perm_rel.remote_field.through._meta, group_rel.remote_field.through._meta, group_perm_rel.remote_field.through._meta
    up_user, up_perm = perm_rel.m2m_column_name(), perm_rel.m2m_reverse_name()
    ug_user, ug_group = group_rel.m2m_column_name(), group_rel.m2m_reverse_name()
    gp_group, gp_perm = group_perm_rel.m2m_column_name(), group_perm_rel.m2m_reverse_name()
    p, ct = qn(Permission._meta.db_table), qn(ContentType._meta.db_table)
    named = f"SELECT %s, {ct}.{qn('app_label')}, {p}.{qn('codename')} FROM {p} INNER JOIN {ct} ON {ct}.{qn('id')} = {p}.{qn('content_type_id')} "
    sql = (
        named + f"INNER JOIN {qn(up.db_table)} up ON up.{qn(up_perm)} = {p}.{qn('id')} WHERE up.{qn(up_user)} = %s"
        " UNION ALL " + named + f"INNER JOIN {qn(gp.db_table)} gp ON gp.{qn(gp_perm)} = {p}.{qn('id')} "
        f"INNER JOIN {qn(ug.db_table)} ug ON ug.{qn(ug_group)} = gp.{qn(gp_group)} WHERE ug.{qn(ug_user)} = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, ["user", user.pk, "group", user.pk])
        rows = cursor.fetchall()
    user._user_perm_cache = {f"{app}.{codename}" for source, app, codename in rows if source == "user"}
    user._group_perm_cache = {f"{app}.{codename}" for source, app, codename in rows if source == "group"}
    user._perm_cache = user._user_perm_cache | user._group_perm_cache
