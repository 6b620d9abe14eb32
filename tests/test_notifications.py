"""Alerts and events reach people: mail to a local SMTP server and webhooks to a local HTTP receiver, end to end."""

from __future__ import annotations

import io
import json
import logging
import socket

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from quality.models import NotificationChannel, NotificationDelivery, QualityAlert, QualityCycle, QualitySettings
from quality.notifications import deliver_task
from registry.models import ModelVersion
from tests.fixtures_model import *  # noqa: F401,F403
from tests.fixtures_model import _trained_bundle, register_bundle
from tests.receivers import SMTPReceiver, WebhookReceiver
from training.models import TrainingJob

# Database-facing: run again on PostgreSQL by `make test`. Transactional: deliveries leave when their transaction commits.
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

TOKEN = "T0KEN-s3cr3t-abc123"


@pytest.fixture
def smtp(settings):
    with SMTPReceiver() as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.ALERT_EMAILS = ["ops@example.com", "planning-lead@example.com"]
        yield server


@pytest.fixture
def webhook(settings):
    with WebhookReceiver() as server:
        settings.ALERT_WEBHOOK_URL = [server.url(f"/services/{TOKEN}")]
        yield server


@pytest.fixture
def thresholds(trained_model):
    """Only MAE can breach: over 0 is a warning, over `mae_critical` critical. No retraining (nothing to run it here)."""
    cfg = QualitySettings.current()
    cfg.mae_warning, cfg.mae_critical = 0.0, 0.001
    cfg.process_match_warning = cfg.process_match_critical = 0.0
    cfg.cv_max, cfg.sample_count_min, cfg.drift_psi_threshold = 1e9, 0, 1e9
    cfg.auto_retrain = False
    cfg.save()
    return cfg


def cycle() -> QualityCycle:
    out = io.StringIO()
    call_command("run_quality_cycle", sync=True, json=True, sample_size=20, stdout=out)
    return QualityCycle.objects.get(pk=json.loads(out.getvalue().strip().splitlines()[-1])["cycle"])


def test_sync_cycle_mails_and_posts_its_alert_before_it_returns(thresholds, smtp, webhook, settings):
    first = cycle()
    alert = QualityAlert.objects.get(cycle=first)
    assert (alert.level, alert.metric, alert.error_code) == ("critical", "mae", 3001)

    assert len(smtp.messages) == 1
    mail = smtp.messages[0]
    assert sorted(mail["to"]) == ["ops@example.com", "planning-lead@example.com"]
    assert mail["message"]["Subject"].startswith("[CRITICAL] Routing ML alert: MAE")
    assert f"/admin/quality/qualityalert/{alert.pk}/change/" in mail["message"].get_content()

    assert len(webhook.received) == 1
    body = webhook.received[0]["json"]
    assert webhook.received[0]["path"] == f"/services/{TOKEN}"
    assert body["text"].startswith("[CRITICAL] Routing ML alert: MAE")
    assert body["level"] == "critical" and body["code"] == 3001 and body["metric"] == "mae"
    assert body["value"] == pytest.approx(alert.value) and body["threshold"] == 0.001
    assert body["model_version"] == "demo-v1"
    assert body["link"] == f"{settings.SITE_URL}/admin/quality/qualityalert/{alert.pk}/change/"
    assert list(NotificationDelivery.objects.values_list("status", "attempts")) == [("sent", 1), ("sent", 1)]


def test_an_open_alert_is_announced_once_and_its_resolution_once(thresholds, smtp, webhook):
    cycle()
    cycle()  # the same breach again: the open alert is updated (count 2), no news
    assert QualityAlert.objects.open().count() == 1 and QualityAlert.objects.open().get().count == 2
    assert len(webhook.received) == 1 and len(smtp.messages) == 1
    open_alert = QualityAlert.objects.open().first()
    open_alert.acknowledge()  # acknowledging is an update too
    assert len(webhook.received) == 1

    thresholds.mae_warning, thresholds.mae_critical = 1000.0, 1000.0
    thresholds.save()
    cycle()
    assert QualityAlert.objects.open().count() == 0
    texts = [r["json"]["text"] for r in webhook.received]
    assert len(texts) == 2 and texts[1].startswith("[RESOLVED] Routing ML alert: MAE") and "back inside the threshold" in texts[1]
    assert len(smtp.messages) == 2


def test_a_failing_webhook_is_retried_with_backoff_and_then_succeeds(thresholds, settings):
    settings.NOTIFY_RETRY_BACKOFF = 0.1
    with WebhookReceiver(fail_first=2) as hook:
        settings.ALERT_WEBHOOK_URL = [hook.url()]
        cycle()
        assert hook.attempts == 3 and len(hook.received) == 1
    delivery = NotificationDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("sent", 3)
    assert "HTTP Error 500" in delivery.last_error


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_undeliverable_alert_is_recorded_and_logged_and_never_fails_the_cycle(thresholds, settings, caplog, ml_admin_client):
    settings.NOTIFY_RETRY_BACKOFF, settings.NOTIFY_MAX_ATTEMPTS = 0.05, 3
    settings.ALERT_WEBHOOK_URL = [f"http://127.0.0.1:{_closed_port()}/hooks/{TOKEN}"]
    with caplog.at_level(logging.WARNING, logger="quality.notifications"):
        done = cycle()
    assert done.status == "succeeded"
    delivery = NotificationDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("failed", 3)
    assert "Connection refused" in delivery.last_error
    assert "attempt 3 of 3" in caplog.text
    # The token is a secret: not in the log, the record or the admin's list.
    assert TOKEN not in caplog.text and TOKEN not in delivery.last_error and TOKEN not in delivery.destination
    page = ml_admin_client.get("/admin/quality/notificationdelivery/")
    assert page.status_code == 200 and b"failed" in page.content and TOKEN.encode() not in page.content


def test_admin_channels_filter_by_level_and_event_and_hide_tokens(thresholds, ml_admin_client):
    with WebhookReceiver() as critical_hook, WebhookReceiver() as warning_hook:
        NotificationChannel.objects.create(name="on-call", kind="webhook", target=critical_hook.url(f"/x/{TOKEN}"), min_level="critical",
                                           on_alert_resolved=False)
        NotificationChannel.objects.create(name="team", kind="webhook", target=warning_hook.url(), min_level="warning", on_alert_opened=False)
        cycle()  # critical MAE alert opened
        assert len(critical_hook.received) == 1 and warning_hook.received == []
        thresholds.mae_critical = 1000.0
        thresholds.save()
        cycle()  # critical resolved, a warning opened
        assert len(critical_hook.received) == 1  # on-call wants no resolutions, and no warnings
        assert [r["json"]["event"] for r in warning_hook.received] == ["alert_resolved"]
    page = ml_admin_client.get("/admin/quality/notificationchannel/")
    assert page.status_code == 200 and b"on-call" in page.content and TOKEN.encode() not in page.content
    assert b"http://127.0.0.1:" in page.content


def test_training_failure_activation_and_rollback_go_through_the_cluster_with_retries(trained_model, settings, tmp_path_factory):
    settings.NOTIFY_RETRY_BACKOFF = 60
    with WebhookReceiver(fail_first=1) as hook:
        settings.ALERT_WEBHOOK_URL = [hook.url()]
        settings.ALERT_MIN_LEVEL = "info"
        job = TrainingJob.enqueue(run_inline=True)
        job.start()
        job.fail("the ERP was unreachable")
        register_bundle(_trained_bundle(tmp_path_factory), "demo-v2").activate(reason="newer")
        ModelVersion.rollback(reason="v2 misbehaves")
        deliveries = list(NotificationDelivery.objects.order_by("pk"))
        assert [(d.event, d.level) for d in deliveries] == [
            ("training_failed", "critical"), ("version_deployed", "info"), ("version_deployed", "warning")]
        # Each was handed to the cluster: the task queue holds one delivery task per message.
        queued = [task for task in (q.task for q in OrmQ.objects.all()) if task["func"] == "quality.notifications.deliver_task"]
        assert sorted(t["args"][0] for t in queued) == [d.pk for d in deliveries]
        for delivery in deliveries:  # what the cluster's workers do with them
            deliver_task(delivery.pk)
        first = NotificationDelivery.objects.get(pk=deliveries[0].pk)
        assert (first.status, first.attempts) == ("pending", 1)  # the receiver failed once: a retry is scheduled
        retry = Schedule.objects.get(func="quality.notifications.deliver_task")
        assert retry.schedule_type == Schedule.ONCE and retry.args == f"({first.pk},)"
        assert retry.next_run == first.next_attempt_at
        assert 55 <= (first.next_attempt_at - timezone.now()).total_seconds() <= 60  # NOTIFY_RETRY_BACKOFF after the first attempt
        deliver_task(first.pk)
    texts = [r["json"]["text"] for r in hook.received]
    assert any(f"training job {job.pk}" in t and "the ERP was unreachable" in t for t in texts)
    assert any("activated demo-v2 (was demo-v1)" in t for t in texts)
    assert any("rolled back to demo-v1 (was demo-v2)" in t for t in texts)
    assert set(NotificationDelivery.objects.values_list("status", flat=True)) == {"sent"}
