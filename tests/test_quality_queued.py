"""Quality cycles handed to the cluster: the admin button, the API without `sync`, the command without --sync, the schedule.

Each entry point must put one task on the django-q2 broker with the right function and
arguments; the test then does what a worker does with it (import the function by its dotted
path, call it with those arguments) and checks the cycle it records.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils.module_loading import import_string
from django_q.models import OrmQ, Schedule
from django_q.tasks import async_task

from quality.models import QualityCycle, QualitySettings
from tests.fixtures_model import *  # noqa: F403  (demo_erp, trained_model)


def queued_tasks() -> list[dict]:
    """The task packages waiting on the ORM broker, oldest first."""
    return [row.task for row in OrmQ.objects.order_by("pk")]


def work_off(task: dict):
    """What a qcluster worker does with a package: import the function by its path and call it."""
    return import_string(task["func"])(*task["args"], **task["kwargs"])


def test_admin_run_button_queues_a_cycle_run_as_the_ml_admin(client, ml_admin, trained_model):
    client.force_login(ml_admin)
    changelist = reverse("admin:quality_qualitycycle_changelist")
    assert "Run a quality cycle now" in client.get(changelist).content.decode()

    response = client.post(reverse("admin:quality_qualitycycle_run"), follow=True)
    assert response.redirect_chain == [(changelist, 302)]
    queued = QualityCycle.objects.get()
    assert f"Quality cycle {queued.pk} queued" in response.content.decode()
    (task,) = queued_tasks()
    assert (task["func"], task["args"], task["kwargs"], task["group"]) == (
        "quality.tasks.run_cycle_task", ("manual", ml_admin.pk, None, None), {"cycle_id": queued.pk}, "quality"
    )
    assert (queued.status, queued.requested_by) == ("queued", ml_admin)

    summary = work_off(task)
    cycle = QualityCycle.objects.get()
    assert (cycle.status, cycle.trigger, cycle.requested_by, cycle.model_version) == ("succeeded", "manual", ml_admin, trained_model)
    assert cycle.items_evaluated > 0 and summary["items_evaluated"] == cycle.items_evaluated


def test_admin_run_button_queues_nothing_for_a_planner_or_a_get(client, planner, ml_admin, db):
    planner.is_staff = True
    planner.save()
    client.force_login(planner)
    client.post(reverse("admin:quality_qualitycycle_run"))
    client.force_login(ml_admin)
    client.get(reverse("admin:quality_qualitycycle_run"))
    assert queued_tasks() == []


def test_api_without_sync_answers_202_and_queues_the_cycle(admin_api, ml_admin, trained_model):
    response = admin_api.post("/api/v1/quality/cycles/", {"sample_size": 20, "strategy": "random"}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["task_id"]
    (task,) = queued_tasks()
    assert task["id"] == body["task_id"]
    assert (task["func"], task["args"], task["kwargs"]) == ("quality.tasks.run_cycle_task", ("api", ml_admin.pk, 20, "random"), {"cycle_id": body["cycle"]})
    assert QualityCycle.objects.get().status == "queued"

    work_off(task)
    cycle = QualityCycle.objects.get()
    assert (cycle.status, cycle.trigger, cycle.requested_by) == ("succeeded", "api", ml_admin)
    assert (cycle.sample_size, cycle.sample_strategy, cycle.items_sampled) == (20, "random", 20)
    assert admin_api.get(f"/api/v1/quality/cycles/{cycle.pk}/").json()["items_evaluated"] == cycle.items_evaluated


def test_command_without_sync_enqueues_and_runs_nothing_itself(trained_model):
    out = io.StringIO()
    call_command("run_quality_cycle", sample_size=20, stdout=out)
    (task,) = queued_tasks()
    queued = QualityCycle.objects.get()
    assert out.getvalue().strip() == f"Quality cycle {queued.pk} queued as task {task['id']}."
    assert (task["func"], task["args"], task["kwargs"]) == ("quality.tasks.run_cycle_task", ("manual", None, 20, None), {"cycle_id": queued.pk})
    assert queued.status == "queued"

    work_off(task)
    cycle = QualityCycle.objects.get()
    assert (cycle.status, cycle.trigger, cycle.requested_by, cycle.sample_size) == ("succeeded", "manual", None, 20)


def test_the_schedule_runs_a_cycle_with_the_settings_sampling(trained_model):
    cfg = QualitySettings.current()
    cfg.sample_size, cfg.sample_strategy = 25, "random"
    cfg.save()
    schedule = Schedule.objects.get(name="quality-cycle")
    assert schedule.func == "quality.tasks.scheduled_cycle"

    summary = async_task(schedule.func, sync=True)  # django-q2 runs it by its dotted path, as the scheduler would
    cycle = QualityCycle.objects.get()
    assert summary is not None
    assert (cycle.status, cycle.trigger, cycle.sample_size, cycle.sample_strategy, cycle.items_sampled) == ("succeeded", "schedule", 25, "random", 25)
    assert cycle.model_version == trained_model and cycle.items_evaluated == 25


@pytest.mark.django_db
def test_the_schedule_task_records_a_failed_cycle_without_an_active_model():
    from quality.tasks import scheduled_cycle

    summary = scheduled_cycle()
    cycle = QualityCycle.objects.get(pk=summary["cycle"])
    assert (summary["status"], cycle.trigger) == ("failed", "schedule")
    assert "No model version is active" in summary["error"] and summary["alerts"] == ["critical:items_evaluated"]
