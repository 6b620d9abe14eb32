"""Model versions in the admin: history is readable, but never a way around activation and rollback."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.urls import reverse

from registry.models import DeploymentEvent, ModelVersion


@pytest.fixture
def two_versions(db):
    """r1 active (served), r2 ready."""
    call_command("seed_demo_erp", items=300, seed=52, stdout=io.StringIO())
    for label, activate in (("r1", True), ("r2", False)):
        call_command("train", sync=True, label=label, candidates="baseline", activate=activate, stdout=io.StringIO(), stderr=io.StringIO())
    return ModelVersion.objects.get(label="r1"), ModelVersion.objects.get(label="r2")


def history_form_url(version: ModelVersion, record) -> str:
    return reverse("admin:registry_modelversion_simple_history", args=[version.pk, record.history_id])


def inline_management_form(version: ModelVersion) -> dict:
    """The deployment-history inline's management form, which every change-form POST carries."""
    events = version.deployment_events.count()
    return {"deployment_events-TOTAL_FORMS": events, "deployment_events-INITIAL_FORMS": events,
            "deployment_events-MIN_NUM_FORMS": 0, "deployment_events-MAX_NUM_FORMS": 1000}


def revert(client, version: ModelVersion, record):
    """What the history page's Revert button posts (the editable fields of the old record)."""
    return client.post(history_form_url(version, record), {"description": record.description, "tags": "[]", "_save": "Revert"})


def test_version_history_is_viewable_without_a_revert_button(ml_admin_client, two_versions):
    r1, _ = two_versions
    history = ml_admin_client.get(reverse("admin:registry_modelversion_history", args=[r1.pk]))
    assert history.status_code == 200 and r1.history.count() >= 1
    record = ml_admin_client.get(history_form_url(r1, r1.history.earliest()))
    assert record.status_code == 200
    page = record.content.decode()
    assert "View r1" in page and 'value="Revert"' not in page


def test_reverting_the_served_version_from_history_is_refused_and_it_stays_active(ml_admin_client, two_versions):
    r1, _ = two_versions
    inactive_record = r1.history.filter(is_active=False).latest("history_date")
    events = DeploymentEvent.objects.count()
    response = revert(ml_admin_client, r1, inactive_record)
    assert response.status_code == 403
    assert ModelVersion.objects.get_active() == r1
    assert DeploymentEvent.objects.count() == events


def test_reverting_an_archived_version_from_history_is_refused_and_it_stays_archived(ml_admin_client, two_versions, django_capture_on_commit_callbacks):
    _, r2 = two_versions
    with django_capture_on_commit_callbacks(execute=True):
        r2.archive()
    ready_record = r2.history.filter(status=ModelVersion.Status.READY).latest("history_date")
    response = revert(ml_admin_client, r2, ready_record)
    assert response.status_code == 403
    r2.refresh_from_db()
    assert r2.status == ModelVersion.Status.ARCHIVED and not r2.artifact_dir.exists()


def test_reverting_to_a_record_from_its_active_days_is_refused_and_one_version_stays_active(ml_admin_client, two_versions, ml_admin):
    """Editing the served version's description records it as active; reverting to that later would make two active rows."""
    r1, r2 = two_versions
    edited = ml_admin_client.post(reverse("admin:registry_modelversion_change", args=[r1.pk]), {"description": "served in May", "tags": "[]", **inline_management_form(r1)})
    assert edited.status_code == 302
    active_record = r1.history.filter(is_active=True).latest("history_date")
    r2.activate(by=ml_admin, reason="newer")
    response = revert(ml_admin_client, r1, active_record)
    assert response.status_code == 403
    assert list(ModelVersion.objects.active()) == [r2]


def test_editing_a_description_does_not_undo_an_activation_made_meanwhile(ml_admin_client, two_versions, monkeypatch):
    from registry.admin import ModelVersionAdmin

    r1, r2 = two_versions
    real_get_form = ModelVersionAdmin.get_form

    def form_whose_object_goes_stale(self, request, obj=None, change=False, **kwargs):
        base = real_get_form(self, request, obj, change, **kwargs)

        class Form(base):
            def clean(self):
                # The form's object was read while r2 was inactive; another request activates r2 now.
                ModelVersion.objects.get(pk=self.instance.pk).activate(reason="activated in another request")
                return super().clean()

        return Form

    monkeypatch.setattr(ModelVersionAdmin, "get_form", form_whose_object_goes_stale)
    form = {"description": "tuned for sleeves", "tags": "[]", **inline_management_form(r2)}
    response = ml_admin_client.post(reverse("admin:registry_modelversion_change", args=[r2.pk]), form)
    assert response.status_code == 302
    r2.refresh_from_db()
    assert r2.is_active and r2.description == "tuned for sleeves"
    assert list(ModelVersion.objects.filter(is_active=True)) == [r2]


def test_version_page_and_api_show_the_settings_search_and_the_routing_candidates(ml_admin_client, db, planner_api):
    call_command("seed_demo_erp", items=1200, seed=53, stdout=io.StringIO())
    call_command("train", sync=True, label="r1", candidates="baseline", stdout=io.StringIO(), stderr=io.StringIO())
    r1 = ModelVersion.objects.get(label="r1")
    search = r1.metrics["search"]
    chosen = search["chosen"]
    page = ml_admin_client.get(reverse("admin:registry_modelversion_change", args=[r1.pk])).content.decode()
    assert "Settings search" in page
    # Every trial is a row of the table, and the chosen values are named.
    assert page.count("<tr>") >= len(search["trials"])
    assert f"k = {chosen['k']}, weighting {chosen['weighting']}" in page
    assert "Routing candidates" in page and "vote" in page
    # The metrics table shows numbers only (the search is a table of its own, not a JSON blob).
    assert "{&#x27;chosen&#x27;" not in page and "'trials'" not in page
    detail = planner_api.get(f"/api/v1/models/{r1.label}/").json()
    assert detail["metrics"]["search"]["chosen"]["k"] == chosen["k"]
    assert len(detail["metrics"]["search"]["trials"]) == len(search["trials"]) >= 8
    assert detail["metrics"]["selected_routing"] in ("vote", "classifier")
