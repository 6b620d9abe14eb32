"""The admin as ML admins use it: start training, cancel, activate/roll back, acknowledge, read-only records, dashboards."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from django.urls import reverse

from quality.cycle import run_cycle
from quality.models import QualityAlert, QualitySettings
from registry.models import ModelVersion
from training.models import TrainingJob


@pytest.fixture
def two_versions(db):
    call_command("seed_demo_erp", items=300, seed=51, stdout=io.StringIO())
    for label, activate in (("a1", True), ("a2", False)):
        call_command("train", sync=True, label=label, candidates="baseline", activate=activate, stdout=io.StringIO(), stderr=io.StringIO())


@pytest.mark.parametrize(
    "url",
    [
        "admin:training_trainingjob_changelist",
        "admin:registry_modelversion_changelist",
        "admin:registry_deploymentevent_changelist",
        "admin:quality_qualitycycle_changelist",
        "admin:quality_qualityalert_changelist",
        "admin:erp_item_changelist",
        "admin:erp_routingoperation_changelist",
        "admin:erp_workresult_changelist",
        "admin:index",
    ],
)
def test_admin_pages_open_for_ml_admins(ml_admin_client, url):
    assert ml_admin_client.get(reverse(url)).status_code == 200


def test_start_training_form_queues_a_job_with_the_chosen_candidates(ml_admin_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        response = ml_admin_client.post(reverse("admin:training_trainingjob_start"), {"candidates": ["mlp"], "label": "from-admin", "activate": "on"})
    job = TrainingJob.objects.get(label="from-admin")
    assert response.status_code == 302 and response["Location"] == reverse("admin:training_trainingjob_change", args=[job.pk])
    assert job.parameters["candidates"] == ["baseline", "mlp"] and job.parameters["activate"] is True
    assert job.requested_by is not None and job.trigger == "manual"


def test_start_training_form_shows_queue_full_error(ml_admin_client):
    for i in range(3):
        TrainingJob.enqueue(label=f"busy{i}", run_inline=True)
    response = ml_admin_client.post(reverse("admin:training_trainingjob_start"), {"candidates": ["baseline"]})
    assert response.status_code == 200
    assert "1003" in response.content.decode() and TrainingJob.objects.count() == 3


def test_training_job_list_shows_progress_and_is_read_only(ml_admin_client):
    job = TrainingJob.enqueue(label="shown", run_inline=True)
    job.start()
    job.beat(42, "embedding items")
    page = ml_admin_client.get(reverse("admin:training_trainingjob_changelist")).content.decode()
    assert 'aria-valuenow="42"' in page and "Start training" in page
    detail = ml_admin_client.get(reverse("admin:training_trainingjob_change", args=[job.pk])).content.decode()
    assert "job-log" in detail and "window.location.reload" in detail
    assert ml_admin_client.get(reverse("admin:training_trainingjob_add")).status_code == 403


def test_cancel_action_cancels_a_queued_job(ml_admin_client):
    job = TrainingJob.enqueue(label="to-cancel", run_inline=True)
    ml_admin_client.post(reverse("admin:training_trainingjob_changelist"), {"action": "cancel_jobs", "_selected_action": [job.pk]})
    job.refresh_from_db()
    assert job.status == "cancelled"


def test_activate_action_and_rollback_button(ml_admin_client, two_versions):
    a2 = ModelVersion.objects.get(label="a2")
    ml_admin_client.post(reverse("admin:registry_modelversion_changelist"), {"action": "activate_version", "_selected_action": [a2.pk]})
    assert ModelVersion.objects.get_active().label == "a2"
    # Rolling back needs no ticked row: it is a button on the versions page naming its target.
    page = ml_admin_client.get(reverse("admin:registry_modelversion_changelist")).content.decode()
    assert 'id="rollback"' in page and "Roll back to a1" in page and "rollback_active" not in page
    response = ml_admin_client.post(reverse("admin:registry_modelversion_rollback"))
    assert response.status_code == 302
    assert ModelVersion.objects.get_active().label == "a1"


def test_planner_cannot_roll_back(client, planner, two_versions):
    client.force_login(planner)
    assert client.post(reverse("admin:registry_modelversion_rollback")).status_code in (302, 403)
    assert ModelVersion.objects.get_active().label == "a1"


def test_running_job_page_has_a_cancel_button_that_cancels(ml_admin_client):
    job = TrainingJob.enqueue(label="running-one", run_inline=True)
    job.start()
    page = ml_admin_client.get(reverse("admin:training_trainingjob_change", args=[job.pk])).content.decode()
    assert 'id="cancel-job"' in page and reverse("admin:training_trainingjob_cancel", args=[job.pk]) in page
    response = ml_admin_client.post(reverse("admin:training_trainingjob_cancel", args=[job.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("admin:training_trainingjob_change", args=[job.pk])
    job.refresh_from_db()
    assert job.status == "running" and job.cancel_requested  # a running job stops at its next stage boundary
    job.mark_cancelled()
    assert 'id="cancel-job"' not in ml_admin_client.get(reverse("admin:training_trainingjob_change", args=[job.pk])).content.decode()


def test_start_training_form_is_styled_and_leaves_feature_weights_empty(ml_admin_client):
    page = ml_admin_client.get(reverse("admin:training_trainingjob_start")).content.decode()
    assert "admin/css/forms.css" in page and 'class="flex-container"' in page
    textarea = page[page.index('name="feature_weights"') :]
    assert textarea[textarea.index(">") + 1 : textarea.index("</textarea>")].strip() == ""


def test_job_parameters_count_a_long_list_of_gate_items(ml_admin_client):
    items = [f"ITEM-{i:04d}" for i in range(500)]
    job = TrainingJob.enqueue(label="retrain", parameters={"gate": True, "gate_items": items}, run_inline=True)
    page = ml_admin_client.get(reverse("admin:training_trainingjob_change", args=[job.pk])).content.decode()
    assert "500 items: ITEM-0000, ITEM-0001, ITEM-0002, ITEM-0003, ITEM-0004, …" in page
    assert "ITEM-0499" not in page


def test_cycle_page_shows_metrics_and_part_types_as_tables_without_long_floats(ml_admin_client):
    from quality.models import QualityCycle

    cycle = QualityCycle.objects.create(
        status="succeeded", sample_strategy="random", sample_size=10, items_evaluated=10,
        metrics={"mae": 1.2345678901234567, "process_match": 0.8765432109876543, "items_evaluated": 10.0},
        metrics_by_part_type={"SLEEVE": {"mae": 2.3456789012345678, "items_evaluated": 6}, "GLAND": {"mae": 0.5, "items_evaluated": 4}},
        drift={"OUTDIAMETER": 0.123456789},
    )  # fmt: skip
    page = ml_admin_client.get(reverse("admin:quality_qualitycycle_change", args=[cycle.pk])).content.decode()
    assert '<tr><th>mae</th><td class="num">1.235</td></tr>' in page and '<td class="num">0.8765</td>' in page
    assert "<tr><th>GLAND</th>" in page and '<td class="num">2.346</td>' in page
    assert not re.search(r"\d\.\d{8,}", page)


def test_version_page_compares_with_the_active_version_and_lists_candidates(ml_admin_client, two_versions):
    a2 = ModelVersion.objects.get(label="a2")
    page = ml_admin_client.get(reverse("admin:registry_modelversion_change", args=[a2.pk])).content.decode()
    assert "active: a1" in page and "process_match" in page and "baseline ✓" in page


def test_training_job_page_shows_candidate_scores_as_a_table(ml_admin_client, two_versions):
    from training.models import TrainingJob

    job = TrainingJob.objects.get(model_version__label="a1")
    page = ml_admin_client.get(reverse("admin:training_trainingjob_change", args=[job.pk])).content.decode()
    trim_mae = job.candidate_scores["baseline"]["trim_mae"]
    assert "<strong>baseline ✓</strong>" in page and f'<td class="num">{trim_mae:.4f}</td>' in page


def test_planner_cannot_activate_from_the_admin(client, planner, two_versions):
    planner.is_staff = True
    planner.save()
    client.force_login(planner)
    a2 = ModelVersion.objects.get(label="a2")
    client.post(reverse("admin:registry_modelversion_changelist"), {"action": "activate_version", "_selected_action": [a2.pk]})
    assert ModelVersion.objects.get_active().label == "a1"


def test_acknowledge_action_and_dashboards(ml_admin_client, two_versions):
    cfg = QualitySettings.current()
    cfg.mae_warning, cfg.mae_critical, cfg.auto_retrain = 0.0, 0.01, False
    cfg.save()
    run_cycle(sample_size=20)
    alert = QualityAlert.objects.get(level="critical")
    ml_admin_client.post(reverse("admin:quality_qualityalert_changelist"), {"action": "acknowledge_alerts", "_selected_action": [alert.pk]})
    alert.refresh_from_db()
    assert alert.status == "acknowledged"
    overview = ml_admin_client.get("/quality/").content.decode()
    assert "a1" in overview and "critical" in overview and "Plotly.newPlot" in overview
    assert "Plotly.newPlot" in ml_admin_client.get("/quality/history/").content.decode()
    compare = ml_admin_client.get("/quality/compare/?a=a1&b=a2").content.decode()
    assert "a1" in compare and "a2" in compare and "Plotly.newPlot" in compare


def test_settings_admin_redirects_to_the_one_row_and_validates(ml_admin_client, db):
    response = ml_admin_client.get(reverse("admin:quality_qualitysettings_changelist"))
    assert response.status_code == 302
    form = ml_admin_client.get(response["Location"])
    assert form.status_code == 200


def test_dashboards_need_the_dashboard_permission(client, outsider, planner):
    client.force_login(outsider)
    assert client.get("/quality/").status_code == 403
    client.force_login(planner)
    assert client.get("/quality/").status_code == 200


def _settings_form(**changes) -> dict:
    """The settings change form as the browser posts it: every field, checkboxes present only when ticked."""
    from django.forms.models import model_to_dict

    data = {**model_to_dict(QualitySettings.current(), exclude=["id"]), **changes}
    return {name: ("on" if value is True else value) for name, value in data.items() if value is not False}


def test_settings_admin_refuses_invalid_values_with_one_error_per_field_and_saves_nothing(ml_admin_client):
    from django_q.models import Schedule

    url = reverse("admin:quality_qualitysettings_change", args=[QualitySettings.current().pk])
    history_before = QualitySettings.history.count()
    response = ml_admin_client.post(url, _settings_form(sample_size=5, mae_warning=20, mae_critical=10, schedule_cron="every night"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"sample_size", "mae_warning", "schedule_cron"}
    assert all(len(messages) == 1 for messages in errors.values()), errors
    assert "'every night' is not a valid cron expression" in errors["schedule_cron"][0]
    cfg = QualitySettings.current()
    assert (cfg.sample_size, cfg.mae_warning, cfg.schedule_cron) == (500, 5.0, "0 2 * * *")
    assert QualitySettings.history.count() == history_before
    assert Schedule.objects.get(name="quality-cycle").cron == "0 2 * * *"


def test_settings_admin_saves_valid_values_with_the_user_in_the_history(ml_admin_client, ml_admin):
    from django_q.models import Schedule

    url = reverse("admin:quality_qualitysettings_change", args=[QualitySettings.current().pk])
    response = ml_admin_client.post(url, _settings_form(mae_warning=4, mae_critical=8, sample_size=300, schedule_cron="15 1 * * *", auto_deploy=False))
    assert response.status_code == 302
    cfg = QualitySettings.current()
    assert (cfg.mae_warning, cfg.mae_critical, cfg.sample_size, cfg.schedule_cron, cfg.auto_deploy) == (4, 8, 300, "15 1 * * *", False)
    latest = QualitySettings.history.order_by("-history_date", "-history_id").first()
    assert latest.history_user == ml_admin and latest.mae_critical == 8 and latest.sample_size == 300
    assert Schedule.objects.get(name="quality-cycle").cron == "15 1 * * *"
