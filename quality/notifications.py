"""Alerts and events that reach people: mail and webhooks (Slack-compatible), delivered on the cluster with retries.

What is announced, once each:
- an alert opened (not again while an alert on the same metric and level stays open: that is an update),
- an alert resolved (once the last open alert on that metric and level resolves),
- a training job failed,
- a model version activated, auto-deployed or rolled back.

Channels: `NotificationChannel` rows (admin) plus the settings `ALERT_EMAILS` (one mail channel)
and `ALERT_WEBHOOK_URL` (comma-separated: one webhook channel each), which are never stored, so
their tokens stay in the environment. Each message to each channel is a `NotificationDelivery`
row, created in the transaction that made the event and handed to the cluster when it commits.
A failed attempt is retried with exponential backoff (NOTIFY_RETRY_BACKOFF × 2ⁿ, at most
NOTIFY_MAX_ATTEMPTS attempts), is logged, and never fails what caused it. Inside
`deliver_inline()` (`run_quality_cycle --sync`) deliveries are sent in this process before the
block ends.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

logger = logging.getLogger(__name__)

_inline: contextvars.ContextVar[list | None] = contextvars.ContextVar("notifications_inline", default=None)
# In-process retries (deliver_inline) wait at most this long between attempts: a command must not hang for minutes.
INLINE_BACKOFF_CAP = 2.0
# A pending delivery whose task should have run this long ago was lost (cluster killed): the housekeeping sends it again.
LOST_AFTER = timedelta(minutes=10)


# -- channels -------------------------------------------------------------------------------


def parse_targets(kind: str, target: str) -> list[str]:
    """The addresses or URLs of a channel; ValueError saying which one is wrong."""
    values = [v.strip() for v in (target or "").split(",") if v.strip()]
    if not values:
        raise ValueError("Give at least one address or URL.")
    for value in values:
        if kind == "mail":
            try:
                validate_email(value)
            except ValidationError:
                raise ValueError(f"{value!r} is not a mail address.")
        else:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"{mask('webhook', value)!r} is not an http(s) URL.")
    return values


def mask(kind: str, target: str) -> str:
    """A destination fit for lists and logs: mail addresses as they are, a webhook URL without credentials, path or query."""
    if kind == "mail":
        return target
    parts = urlsplit(target)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    rest = "/…" if (parts.path.strip("/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{rest}"


class _SettingsChannel:
    """A channel from the settings: same interface as NotificationChannel for `wants`, never stored."""

    pk = None

    def __init__(self, key: str, kind: str, target: str):
        self.key, self.kind, self.target = key, kind, target
        self.name = f"settings {key}"

    def wants(self, event: str, level: str) -> bool:
        from .models import NotificationChannel

        rank = NotificationChannel.LEVEL_RANK
        return rank[level] >= rank.get(settings.ALERT_MIN_LEVEL, 1)


def settings_channels() -> list[_SettingsChannel]:
    channels = []
    if settings.ALERT_EMAILS:
        channels.append(_SettingsChannel("ALERT_EMAILS", "mail", ",".join(settings.ALERT_EMAILS)))
    for index, url in enumerate(settings.ALERT_WEBHOOK_URL):
        channels.append(_SettingsChannel(f"ALERT_WEBHOOK_URL[{index}]", "webhook", url))
    return channels


def _resolve_target(delivery) -> str | None:
    if delivery.channel_id is not None:
        return delivery.channel.target
    for channel in settings_channels():
        if channel.key == delivery.settings_channel:
            return channel.target
    return None


# -- events ---------------------------------------------------------------------------------


def _link(url_name: str, pk) -> str:
    return settings.SITE_URL.rstrip("/") + reverse(url_name, args=[pk])


def notify(event: str, level: str, text: str, fields: dict, alert=None) -> list[int]:
    """Create a delivery per interested channel; they are sent when the current transaction commits. Never raises."""
    from .models import NotificationChannel, NotificationDelivery

    try:
        channels = [*NotificationChannel.objects.filter(enabled=True), *settings_channels()]
        payload = {"text": text, "event": event, "level": level, **fields}
        subject = text.splitlines()[0][:300]
        ids = []
        for channel in channels:
            if not channel.wants(event, level):
                continue
            delivery = NotificationDelivery.objects.create(
                channel=channel if channel.pk else None,
                settings_channel=getattr(channel, "key", ""),
                channel_name=channel.name[:140],
                kind=channel.kind,
                destination=", ".join(mask(channel.kind, t) for t in channel.target.split(","))[:300],
                event=event,
                level=level,
                subject=subject,
                payload=payload,
                alert=alert,
            )
            ids.append(delivery.pk)
    except Exception:  # announcing an event must never break the event itself
        logger.exception("Could not record the notifications of %s", event)
        return []
    if ids:
        transaction.on_commit(lambda: dispatch(ids))
    return ids


def _same_condition_open(alert):
    from .models import QualityAlert

    return QualityAlert.objects.open().filter(metric=alert.metric, level=alert.level).exclude(pk=alert.pk)


def _alert_fields(alert) -> dict:
    version = None
    if alert.cycle_id is not None and alert.cycle.model_version_id is not None:
        version = alert.cycle.model_version.label
    else:
        from registry.models import ModelVersion

        active = ModelVersion.objects.get_active()
        version = active.label if active else None
    return {
        "code": alert.error_code,
        "metric": alert.metric,
        "value": alert.value,
        "threshold": alert.threshold,
        "model_version": version,
        "alert": alert.pk,
        "link": _link("admin:quality_qualityalert_change", alert.pk),
    }


def alert_opened(alert) -> None:
    """Announce a new alert, unless the same condition is already open (then it is an update, not news)."""
    try:
        if _same_condition_open(alert).filter(created_at__lte=alert.created_at).exists():
            return
        fields = _alert_fields(alert)
    except Exception:
        logger.exception("Could not announce alert %s", alert.pk)
        return
    notify("alert_opened", alert.level, f"[{alert.level.upper()}] Routing ML alert: {alert.message}", fields, alert=alert)


def alert_resolved(alert) -> None:
    """Announce a resolved alert once its condition is over (no other alert on that metric and level still open)."""
    try:
        if _same_condition_open(alert).exists():
            return
        fields = _alert_fields(alert)
    except Exception:
        logger.exception("Could not announce alert %s", alert.pk)
        return
    reason = f" ({alert.resolution})" if alert.resolution else ""
    notify("alert_resolved", alert.level, f"[RESOLVED] Routing ML alert: {alert.message}{reason}", fields, alert=alert)


def on_job_failed(sender, job, **kwargs) -> None:
    from registry.models import ModelVersion

    active = ModelVersion.objects.get_active()
    first_line = (job.error or "").strip().splitlines()[0] if job.error else "no reason recorded"
    notify(
        "training_failed",
        "critical",
        f"[CRITICAL] Routing ML training job {job.pk} ({job.label}) failed: {first_line}",
        {"code": job.error_code, "metric": "training", "value": None, "threshold": None, "model_version": active.label if active else None,
         "training_job": job.pk, "link": _link("admin:training_trainingjob_change", job.pk)},
    )


def on_deployment(sender, instance, created, **kwargs) -> None:
    if not created:
        return
    event = instance
    level = "warning" if event.kind == "rollback" else "info"
    verb = {"activate": "activated", "rollback": "rolled back to", "auto_deploy": "auto-deployed"}.get(event.kind, event.kind)
    was = f" (was {event.from_version.label})" if event.from_version_id else ""
    by = f" by {event.performed_by}" if event.performed_by_id else ""
    why = f": {event.reason}" if event.reason else ""
    notify(
        "version_deployed",
        level,
        f"[{level.upper()}] Routing ML model version {verb} {event.to_version.label}{was}{by}{why}",
        {"code": None, "metric": "deployment", "value": None, "threshold": None, "model_version": event.to_version.label,
         "kind": event.kind, "link": _link("admin:registry_modelversion_change", event.to_version_id)},
    )


# -- delivery -------------------------------------------------------------------------------


@contextmanager
def deliver_inline():
    """Within this block, deliveries are sent by this process when their transaction commits (with retries), not queued."""
    token = _inline.set([])
    try:
        yield
    finally:
        _inline.reset(token)


def dispatch(ids: list[int]) -> None:
    if _inline.get() is not None:
        for pk in ids:
            _deliver(pk, inline=True)
        return
    from django_q.tasks import async_task

    for pk in ids:
        try:
            async_task("quality.notifications.deliver_task", pk, group="notifications", task_name=f"notify-{pk}")
        except Exception:  # the broker is down: the housekeeping sends it later
            logger.exception("Could not queue notification delivery %s; the housekeeping will retry it", pk)


def deliver_task(delivery_id: int) -> str:
    """The cluster's entry point: one attempt; a failure schedules the next one."""
    return _deliver(delivery_id, inline=False)


def backoff(attempt: int) -> float:
    """Seconds before attempt `attempt + 1`."""
    return float(settings.NOTIFY_RETRY_BACKOFF) * (2 ** max(attempt - 1, 0))


def _deliver(delivery_id: int, inline: bool) -> str:
    from .models import NotificationDelivery

    delivery = NotificationDelivery.objects.select_related("channel").filter(pk=delivery_id).first()
    if delivery is None or not delivery.claim():
        return "nothing to do"
    while True:
        try:
            _send(delivery)
        except Exception as exc:
            error = _describe(exc, delivery)
            attempt = delivery.attempts + 1
            more = attempt < settings.NOTIFY_MAX_ATTEMPTS
            wait = backoff(attempt)
            logger.warning(
                "Notification %s (%s) to %s failed, attempt %s of %s: %s", delivery.pk, delivery.event, delivery.destination,
                attempt, settings.NOTIFY_MAX_ATTEMPTS, error,
            )
            if not more:
                delivery.mark_attempt_failed(error, retry_at=None)
                return "failed"
            if inline:
                delivery.mark_attempt_failed(error, retry_at=timezone.now())
                time.sleep(min(wait, INLINE_BACKOFF_CAP))
                if not delivery.claim():
                    return "taken over"
                continue
            retry_at = timezone.now() + timedelta(seconds=wait)
            delivery.mark_attempt_failed(error, retry_at=retry_at)
            _schedule_retry(delivery.pk, retry_at)
            return "retry scheduled"
        delivery.mark_sent()
        return "sent"


def _schedule_retry(delivery_id: int, when) -> None:
    from django_q.models import Schedule
    from django_q.tasks import schedule

    try:
        schedule("quality.notifications.deliver_task", delivery_id, schedule_type=Schedule.ONCE, repeats=-1, next_run=when)
    except Exception:
        logger.exception("Could not schedule the retry of notification %s; the housekeeping will retry it", delivery_id)


def redeliver_lost() -> list[int]:
    """Pending deliveries whose attempt is long overdue (their task was lost): queue them again. Run by the housekeeping."""
    from django.db.models import Q

    from .models import NotificationDelivery

    cutoff = timezone.now() - LOST_AFTER
    lost = list(
        NotificationDelivery.objects.filter(status=NotificationDelivery.Status.PENDING)
        .filter(Q(next_attempt_at__lt=cutoff) | Q(next_attempt_at=None, created_at__lt=cutoff))
        .values_list("pk", flat=True)[:100]
    )
    if lost:
        dispatch(lost)
    return lost


def _describe(exc: Exception, delivery) -> str:
    """The error as text, with any URL of the channel masked (a token in a URL must not reach logs or the admin)."""
    text = f"{type(exc).__name__}: {exc}"
    target = _resolve_target(delivery) or ""
    for value in target.split(","):
        value = value.strip()
        if value and delivery.kind == "webhook":
            text = text.replace(value, mask("webhook", value))
    return text


def _send(delivery) -> None:
    target = _resolve_target(delivery)
    if not target:
        raise RuntimeError(f"channel {delivery.channel_name} no longer exists or has no target")
    if delivery.kind == "mail":
        from django.core.mail import send_mail

        body = delivery.payload.get("text", "") + "\n\n" + "\n".join(
            f"{key}: {value}" for key, value in delivery.payload.items() if key != "text" and value is not None
        )
        send_mail(delivery.subject, body, settings.DEFAULT_FROM_EMAIL, parse_targets("mail", target), fail_silently=False)
        return
    data = json.dumps(delivery.payload, default=str).encode()
    for url in parse_targets("webhook", target):
        request = urllib.request.Request(
            url, data=data, method="POST", headers={"Content-Type": "application/json", "User-Agent": f"routing-ml/{settings.VERSION}"}
        )
        with urllib.request.urlopen(request, timeout=settings.NOTIFY_TIMEOUT) as response:  # noqa: S310 (an operator-configured URL)
            if not 200 <= response.status < 300:
                raise RuntimeError(f"HTTP {response.status}")
