"""Liveness and readiness: /health (all checks) and /health/db.

Overall status: `unhealthy` (HTTP 503) when the database or the ERP source cannot be read, or
when a version is active but this process can serve no model;
`degraded` when something works but needs attention (no active model yet, no worker seen, no
recent backup, the active model's files fail the housekeeping's check);
`healthy` otherwise. Anonymous callers from another machine get the status only; signed-in
users (session or JWT) and callers on this machine get every check's details.
"""

from __future__ import annotations

import ipaddress
import time
from datetime import timedelta

from django.conf import settings
from django.db import connections, router
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .errors import ErrorCode

OK, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
# The cluster runs housekeeping every minute; a few missed beats mean no worker is alive.
WORKER_SILENCE = timedelta(minutes=5)


def _timed(check):
    start = time.perf_counter()
    try:
        result = check()
    except Exception as exc:  # a health check reports failures, it never raises them
        result = {"status": UNHEALTHY, "error": f"{type(exc).__name__}: {exc}", "code": int(ErrorCode.DATABASE_UNAVAILABLE)}
    result["latency_ms"] = round((time.perf_counter() - start) * 1000, 2)
    return result


def check_database() -> dict:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"status": OK, "vendor": connections["default"].vendor}


def check_erp() -> dict:
    from erp.models import Item

    alias = router.db_for_read(Item) or "default"
    exists = Item.objects.using(alias).exists()
    if not exists:
        return {"status": DEGRADED, "alias": alias, "message": "The ERP item master is empty: import or seed ERP data."}
    return {"status": OK, "alias": alias}


def check_model() -> dict:
    from registry.loader import loader
    from registry.models import ModelVersion

    active = ModelVersion.objects.get_active()
    if active is None:
        return {"status": DEGRADED, "active_version": None, "message": "No model version is active yet: train and activate one."}
    loader.refresh()
    served = loader.served_label()
    if served != active.label and loader.last_error:
        # This process cannot load the version the database says is active: it keeps serving what it
        # had (degraded), or, having nothing, cannot answer any prediction (unhealthy, 503).
        return {
            "status": UNHEALTHY if served is None else DEGRADED,
            "active_version": active.label,
            "served_by_this_process": served,
            "message": loader.last_error if served is None else f"Serving {served} instead: {loader.last_error}",
            "code": 1002,
        }
    # The housekeeping verifies the active bundle's every checksum each minute; too slow for a probe, so read its verdict.
    from quality.models import QualityAlert

    failing = QualityAlert.objects.open().filter(cycle=None, metric="model_load").order_by("-created_at").first()
    if failing is not None:
        return {
            "status": DEGRADED,
            "active_version": active.label,
            "served_by_this_process": served,
            "message": failing.message,
            "code": int(ErrorCode.MODEL_LOAD_FAILED),
            "since": failing.created_at.isoformat(),
        }
    from training.engine.neighbors import scan_kind

    # Informational: the numpy search and a version without its neighbour table give the same answers, only slower.
    return {
        "status": OK,
        "active_version": active.label,
        "served_by_this_process": served,
        "neighbour_search": scan_kind(),
        "known_items_from": loader.neighbour_table(),
    }


def check_resources() -> dict:
    """Free disk under MODEL_ROOT and BACKUP_ROOT (2001) and memory in use (2002), measured now."""
    from .resources import check_disk, check_memory

    conditions = [*check_disk(), check_memory()]
    result = {
        "status": OK if all(c.ok for c in conditions) else DEGRADED,
        "disk": {c.metric.split(":", 1)[1]: {**c.details, "status": OK if c.ok else DEGRADED} for c in conditions[:-1]},
        "memory": {**conditions[-1].details, "status": OK if conditions[-1].ok else DEGRADED},
    }
    problems = [c for c in conditions if not c.ok]
    if problems:
        result["code"] = problems[0].code
        result["message"] = " ".join(f"[{c.code}] {c.message}" for c in problems)
    return result


def check_queue() -> dict:
    from django_q.brokers import get_broker
    from django_q.models import Success

    from training.models import TrainingJob

    broker = get_broker()
    queued = broker.queue_size()
    last = Success.objects.filter(func="training.tasks.housekeeping").order_by("-stopped").values_list("stopped", flat=True).first()
    result = {
        "status": OK,
        "broker": "redis" if settings.REDIS_URL else "orm",
        "queued_tasks": queued,
        "training_jobs_in_flight": TrainingJob.objects.in_flight().count(),
        "last_worker_beat": last.isoformat() if last else None,
    }
    if last is None or timezone.now() - last > WORKER_SILENCE:
        result["status"] = DEGRADED
        result["message"] = "No task worker has been seen in the last 5 minutes: start `python manage.py qcluster`."
    if settings.TRAINING_CLUSTER:
        beat = Success.objects.filter(func="training.tasks.cluster_beat").order_by("-stopped").values_list("stopped", flat=True).first()
        result["training_cluster"] = {
            "name": settings.TRAINING_CLUSTER,
            "queued_tasks": get_broker(settings.TRAINING_CLUSTER).queue_size(),
            "last_worker_beat": beat.isoformat() if beat else None,
        }
        if beat is None or timezone.now() - beat > WORKER_SILENCE:
            result["status"] = DEGRADED
            result["message"] = (
                result.get("message", "") + " No training-cluster worker has been seen in the last 5 minutes: start "
                f"`Q_CLUSTER_NAME={settings.TRAINING_CLUSTER} python manage.py qcluster`."
            ).strip()
    return result


def check_backup() -> dict:
    from .backup import latest_backup

    found = latest_backup()
    max_age = timedelta(hours=settings.BACKUP_MAX_AGE_HOURS)
    if found is None:
        return {
            "status": DEGRADED,
            "last_backup": None,
            "age_hours": None,
            "message": f"No backup under BACKUP_ROOT ({settings.BACKUP_ROOT}) yet: run `manage.py backup` (the cluster runs it daily).",
        }
    path, created = found
    age = timezone.now() - created
    result = {"status": OK, "last_backup": path.name, "created_at": created.isoformat(), "age_hours": round(age.total_seconds() / 3600, 2)}
    if age > max_age:
        result["status"] = DEGRADED
        result["message"] = (
            f"The newest backup is {result['age_hours']:.1f} h old (limit {settings.BACKUP_MAX_AGE_HOURS:g} h): check the backup schedule."
        )
    return result


def _overall(checks: dict) -> str:
    statuses = {c["status"] for c in checks.values()}
    if UNHEALTHY in statuses:
        return UNHEALTHY
    return DEGRADED if DEGRADED in statuses else OK


def is_loopback(request) -> bool:
    """A caller on this machine, not relayed by a proxy (a local reverse proxy would make every caller look local)."""
    if request.META.get("HTTP_X_FORWARDED_FOR") or request.META.get("HTTP_FORWARDED"):
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def _authenticated(request) -> bool:
    if getattr(request, "user", None) is not None and request.user.is_authenticated:
        return True
    if request.headers.get("Authorization", "").startswith("Bearer "):
        from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

        from routing_ml.tokens import JWTAuthentication

        try:
            return JWTAuthentication().authenticate(request) is not None
        except (InvalidToken, TokenError, Exception):
            return False
    return False


def may_see_details(request) -> bool:
    """Check details (versions, queue sizes, error messages) are for signed-in users and callers on this machine."""
    return is_loopback(request) or _authenticated(request)


@never_cache
@require_GET
def health(request):
    """Anonymous callers from elsewhere get {"status"} only; the HTTP status (503 when unhealthy) is the same for all."""
    checks = {"database": _timed(check_database)}
    if checks["database"]["status"] == OK:
        checks["erp"] = _timed(check_erp)
        checks["model"] = _timed(check_model)
        checks["queue"] = _timed(check_queue)
    checks["backup"] = _timed(check_backup)
    checks["resources"] = _timed(check_resources)
    status = _overall(checks)
    body = {"status": status}
    if may_see_details(request):
        body.update({"version": settings.VERSION, "timestamp": timezone.now().isoformat(), "checks": checks})
    return JsonResponse(body, status=503 if status == UNHEALTHY else 200)


@never_cache
@require_GET
def health_db(request):
    result = _timed(check_database)
    body = {"status": result["status"]}
    if may_see_details(request):
        body.update({"database": result, "timestamp": timezone.now().isoformat()})
    return JsonResponse(body, status=503 if result["status"] == UNHEALTHY else 200)
