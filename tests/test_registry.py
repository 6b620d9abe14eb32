"""Model versions: activation, rollback, integrity, the cross-process loader, housekeeping, API and commands."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import close_old_connections

from registry.loader import ModelLoader, loader
from registry.models import DeploymentEvent, ModelVersion
from routing_ml.errors import ArtifactError

from .cluster import ROOT, cluster_env


def train(label: str, activate: bool = False) -> ModelVersion:
    call_command("train", sync=True, label=label, candidates="baseline", activate=activate, stdout=io.StringIO(), stderr=io.StringIO())
    return ModelVersion.objects.get(label=label)


@pytest.fixture
def two_versions(db):
    call_command("seed_demo_erp", items=300, seed=31, stdout=io.StringIO())
    v1 = train("v1", activate=True)
    v2 = train("v2")
    return v1, v2


def corrupt(version: ModelVersion) -> Path:
    victim = sorted(p for p in version.artifact_dir.glob("*.npy"))[0]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    return victim


def test_activate_then_rollback_restores_previous_version(two_versions, ml_admin):
    v1, v2 = two_versions
    event = v2.activate(by=ml_admin, reason="better MAE")
    assert (event.kind, event.from_version, event.to_version, event.performed_by) == ("activate", v1, v2, ml_admin)
    assert ModelVersion.objects.get_active() == v2
    back = ModelVersion.rollback(by=ml_admin, reason="planners complained")
    assert (back.kind, back.from_version, back.to_version) == ("rollback", v2, v1)
    assert list(ModelVersion.objects.active()) == [v1]
    assert DeploymentEvent.objects.count() == 3  # v1's own activation, v2, rollback


def test_rollback_without_history_is_refused(db):
    with pytest.raises(Exception, match="no active model version"):
        ModelVersion.rollback()


def test_database_refuses_two_active_versions(two_versions):
    from django.db import IntegrityError, transaction

    _, v2 = two_versions
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=v2.pk).update(is_active=True)


@pytest.mark.django_db(transaction=True)
def test_two_activations_at_once_leave_exactly_one_active_version():
    call_command("seed_demo_erp", items=300, seed=32, stdout=io.StringIO())
    versions = [train(f"c{i}") for i in range(4)]
    barrier = threading.Barrier(len(versions))
    outcomes = []

    def activate(version):
        try:
            barrier.wait()
            version.activate(reason="race")
            outcomes.append("ok")
        except Exception as exc:  # the loser of a race is told to try again
            outcomes.append(type(exc).__name__)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=activate, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ModelVersion.objects.active().count() == 1
    assert outcomes.count("ok") >= 1
    assert DeploymentEvent.objects.count() == outcomes.count("ok")


def test_corrupted_artifact_is_refused_and_old_version_keeps_serving(two_versions):
    v1, v2 = two_versions
    assert loader.active()[0] == "v1"
    victim = corrupt(v2)
    with pytest.raises(ArtifactError) as caught:
        v2.activate(reason="try")
    assert caught.value.code == 1002 and victim.name in caught.value.message
    assert ModelVersion.objects.get_active() == v1
    # Even if the database is made to point at the broken version, a process keeps its working bundle.
    ModelVersion.objects.filter(pk=v1.pk).update(is_active=False)
    ModelVersion.objects.filter(pk=v2.pk).update(is_active=True)
    label, model = loader.active()
    assert label == "v1" and model is not None
    assert "corrupt" in loader.last_error


def test_missing_artifacts_are_refused(two_versions):
    _, v2 = two_versions
    (v2.artifact_dir / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="manifest.json is missing"):
        v2.activate()


def test_loader_follows_an_activation_made_elsewhere(two_versions, settings):
    v1, v2 = two_versions
    settings.MODEL_RELOAD_INTERVAL = 0
    other_process = ModelLoader()
    assert other_process.active()[0] == "v1"
    v2.activate(reason="switch")
    assert other_process.active()[0] == "v2"


@pytest.mark.django_db(transaction=True)
def test_activation_by_another_process_is_served_within_seconds():
    """A real second process (the `activate` command) switches the version this process serves."""
    call_command("seed_demo_erp", items=300, seed=33, stdout=io.StringIO())
    train("p1", activate=True)
    train("p2")
    served = ModelLoader()
    assert served.active()[0] == "p1"
    result = subprocess.run([sys.executable, "manage.py", "activate", "p2", "--reason", "from another process"], cwd=ROOT, env=cluster_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    import time

    from django.conf import settings

    time.sleep(settings.MODEL_RELOAD_INTERVAL + 0.1)
    assert served.active()[0] == "p2"


def test_activate_and_rollback_commands(two_versions):
    out = io.StringIO()
    call_command("activate", "v2", stdout=out)
    assert "Active model version: v2" in out.getvalue()
    call_command("rollback", stdout=out)
    assert ModelVersion.objects.get_active().label == "v1"
    with pytest.raises(CommandError, match="1002"):
        call_command("activate", "nope")


def test_cleanup_models_archives_old_inactive_versions_but_never_the_active(two_versions):
    v1, v2 = two_versions
    v3 = train("v3")
    call_command("cleanup_models", keep=1, stdout=io.StringIO())
    statuses = dict(ModelVersion.objects.values_list("label", "status"))
    assert statuses == {"v1": "ready", "v2": "archived", "v3": "ready"}
    assert not v2.artifact_dir.exists() and v1.artifact_dir.exists() and v3.artifact_dir.exists()
    with pytest.raises(Exception, match="only a ready version"):
        ModelVersion.objects.get(label="v2").activate()


def test_models_api_lists_reads_activates_and_rolls_back(two_versions, admin_api, planner_api):
    listing = planner_api.get("/api/v1/models/").json()
    assert [v["label"] for v in listing["results"]] == ["v2", "v1"]
    detail = planner_api.get("/api/v1/models/v1/").json()
    assert detail["is_active"] and detail["metrics"]["process_match"] > 0 and detail["deployment_events"]
    assert planner_api.post("/api/v1/models/v2/activate/", {}, format="json").status_code == 403
    assert planner_api.post("/api/v1/models/rollback/", {}, format="json").status_code == 403
    activated = admin_api.post("/api/v1/models/v2/activate/", {"reason": "api"}, format="json")
    assert activated.status_code == 200 and activated.json()["to_version"] == "v2"
    rolled = admin_api.post("/api/v1/models/rollback/", {}, format="json").json()
    assert (rolled["from_version"], rolled["to_version"], rolled["kind"]) == ("v2", "v1", "rollback")


def test_activating_a_corrupt_version_over_api_is_a_1002_error(two_versions, admin_api):
    _, v2 = two_versions
    corrupt(v2)
    response = admin_api.post("/api/v1/models/v2/activate/", {}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == 1002
