"""Model versions: activation, rollback, integrity, the cross-process loader, housekeeping, API and commands."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import close_old_connections, connection
from django.test.utils import CaptureQueriesContext

from registry.loader import ModelLoader, loader
from registry.models import DeploymentEvent, ModelVersion, manifest_digest
from routing_ml.errors import ArtifactError, InvalidTransition, NoActiveModel
from training.models import TrainingJob

from .cluster import ROOT, cluster_env

# Database-facing: run again on PostgreSQL by `make test` (see the Makefile).
pytestmark = pytest.mark.postgres


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


def test_loader_refuses_a_bundle_whose_manifest_is_not_the_registered_one(two_versions):
    """Every file matches the bundle's own manifest, but that manifest is not the one registered for the version."""
    v1, v2 = two_versions
    assert loader.active()[0] == "v1"
    shutil.rmtree(v2.artifact_dir)
    shutil.copytree(v1.artifact_dir, v2.artifact_dir)  # a consistent bundle, just not v2's
    assert manifest_digest(v2.artifact_dir) != v2.manifest_sha256
    ModelVersion.objects.filter(pk=v1.pk).update(is_active=False)
    ModelVersion.objects.filter(pk=v2.pk).update(is_active=True)
    label, model = loader.active()
    assert label == "v1" and model is not None
    assert "differs from the registered" in loader.last_error
    with pytest.raises(ArtifactError, match="differs from the registered"):
        loader.get("v2")
    fresh_process = ModelLoader()
    # Nothing of its own to keep serving: it falls back to the newest ready version that verifies, never the swapped bundle.
    assert fresh_process.active()[0] == "v1"
    assert "differs from the registered" in fresh_process.last_error


def test_cleanup_models_archives_old_inactive_versions_but_never_the_active(two_versions, django_capture_on_commit_callbacks):
    v1, v2 = two_versions
    v3 = train("v3")
    with django_capture_on_commit_callbacks(execute=True):
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


def test_cleanup_models_keeps_the_version_a_rollback_returns_to(two_versions, django_capture_on_commit_callbacks):
    v1, v2 = two_versions
    v2.activate(reason="newer")  # v1 is now what a rollback returns to
    train("v3")
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("cleanup_models", keep=0, stdout=out)
    statuses = dict(ModelVersion.objects.values_list("label", "status"))
    assert statuses == {"v1": "ready", "v2": "ready", "v3": "archived"}
    assert "Archived 1 version(s): v3" in out.getvalue() and v1.artifact_dir.exists()
    event = ModelVersion.rollback(reason="after cleanup")
    assert (event.from_version.label, event.to_version.label) == ("v2", "v1")
    assert ModelVersion.objects.get_active() == v1


class DiskCrash(Exception):
    """Stands in for the process dying while it deletes a bundle."""


def test_archive_marks_the_version_archived_before_deleting_its_files(two_versions, monkeypatch, django_capture_on_commit_callbacks):
    _, v2 = two_versions
    files_before = len(list(v2.artifact_dir.iterdir()))

    def crash_after_one_file(path, *args, **kwargs):
        next(Path(path).glob("*.npy")).unlink()
        raise DiskCrash(path)

    monkeypatch.setattr(shutil, "rmtree", crash_after_one_file)
    with pytest.raises(DiskCrash), django_capture_on_commit_callbacks(execute=True):
        call_command("cleanup_models", keep=0, stdout=io.StringIO())
    v2.refresh_from_db()
    assert v2.status == ModelVersion.Status.ARCHIVED
    assert len(list(v2.artifact_dir.iterdir())) == files_before - 1  # half-deleted, but no longer offered as ready
    with pytest.raises(InvalidTransition, match="only a ready version"):
        v2.activate()
    monkeypatch.undo()
    with django_capture_on_commit_callbacks(execute=True):
        v2.archive()  # archiving again removes what the crash left behind
    assert not v2.artifact_dir.exists()


def test_models_list_query_count_does_not_grow_with_the_number_of_versions(planner_api):
    def add_versions(labels):
        for label in labels:
            version = ModelVersion.objects.create(label=label, status=ModelVersion.Status.READY, artifact_path=label)
            TrainingJob.objects.create(label=label, status=TrainingJob.Status.SUCCEEDED, model_version=version)
            TrainingJob.objects.create(label=label, status=TrainingJob.Status.FAILED, model_version=version)

    def list_versions():
        with CaptureQueriesContext(connection) as queries:
            response = planner_api.get("/api/v1/models/")
        assert response.status_code == 200
        return response.json()["results"], len(queries)

    add_versions(["q1", "q2"])
    list_versions()  # warm the per-user permission cache
    few, few_queries = list_versions()
    add_versions([f"q{i}" for i in range(3, 11)])
    many, many_queries = list_versions()
    assert (len(few), len(many)) == (2, 10)
    assert many_queries == few_queries
    newest_job = {v.label: max(v.training_jobs.values_list("pk", flat=True)) for v in ModelVersion.objects.all()}
    assert {v["label"]: v["training_job"] for v in many} == newest_job


def test_a_compared_version_archived_since_it_was_cached_is_no_longer_served(two_versions, django_capture_on_commit_callbacks):
    from routing_ml.errors import ModelNotFound

    _, v2 = two_versions
    assert loader.get("v2")[0] == "v2"  # loaded for a comparison and kept in the process cache
    with django_capture_on_commit_callbacks(execute=True):
        v2.archive()
    with pytest.raises(ModelNotFound) as caught:
        loader.get("v2")
    assert caught.value.http_status == 409 and "archived" in caught.value.message


@pytest.mark.django_db(transaction=True)
def test_concurrent_activations_record_the_version_each_replaced(monkeypatch):
    """Two connections activate at once; the second waits for the first's lock and must record *its* version as from_version.

    On PostgreSQL the second's locking read, woken by the first's commit, re-checks the old active
    row, finds it no longer active and returns nothing: without a fresh read it recorded no from_version.
    """
    call_command("seed_demo_erp", items=300, seed=33, stdout=io.StringIO())
    a, b, c = train("p-a", activate=True), train("p-b"), train("p-c")
    holding = threading.Event()
    real_create = DeploymentEvent.objects.create

    def create_slowly(**fields):
        if threading.current_thread().name == "first":
            holding.set()  # inside the transaction, after its locking read of the active row
            threading.Event().wait(1.0)
        return real_create(**fields)

    monkeypatch.setattr(DeploymentEvent.objects, "create", create_slowly)
    errors = []

    def activate(version):
        try:
            version.activate(reason="concurrent")
        except Exception as exc:
            errors.append(exc)
        finally:
            close_old_connections()

    first = threading.Thread(target=activate, args=(b,), name="first")
    second = threading.Thread(target=activate, args=(c,), name="second")
    first.start()
    assert holding.wait(30)
    second.start()
    first.join(60)
    second.join(60)
    assert errors == []
    events = [(e.from_version_id, e.to_version_id) for e in DeploymentEvent.objects.order_by("pk")]
    assert events == [(None, a.pk), (a.pk, b.pk), (b.pk, c.pk)]
    assert ModelVersion.objects.get_active() == c


def test_bundle_files_are_read_only_once_written(two_versions):
    v1, _ = two_versions
    modes = {p.name: p.stat().st_mode & 0o777 for p in v1.artifact_dir.iterdir()}
    assert modes and all(mode & 0o222 == 0 for mode in modes.values()), modes


def test_a_served_bundle_changed_on_disk_falls_back_to_a_version_that_verifies(two_versions, client):
    v1, v2 = two_versions
    v2.activate(reason="newer")
    assert loader.active()[0] == "v2"
    victim = corrupt(v2)  # after load: the arrays are memory-mapped, so without a re-check this would be served
    label, _ = loader.active()
    assert label == "v1"
    assert victim.name in loader.last_error and loader.failed_label == "v2"
    model = client.get("/health").json()["checks"]["model"]
    assert (model["status"], model["active_version"], model["served_by_this_process"]) == ("degraded", "v2", "v1")
    assert model["message"].startswith("Serving v1 instead: ") and victim.name in model["message"]
    from quality.models import QualityAlert

    alert = QualityAlert.objects.get(metric="model_files")
    assert (alert.level, alert.status, alert.error_code, alert.cycle) == ("critical", "open", 1002, None)
    assert "v2" in alert.message and victim.name in alert.message and "Now serving: v1" in alert.message


def test_the_periodic_rehash_runs_beside_requests_and_refuses_a_change_that_kept_size_and_time(two_versions, settings, monkeypatch):
    v1, v2 = two_versions
    v2.activate(reason="newer")
    assert loader.active()[0] == "v2"
    # Flip a byte but keep the file's size and time: only the full re-hash can see it.
    victim = sorted(v2.artifact_dir.glob("*.npy"))[0]
    before = victim.stat()
    victim.chmod(0o644)
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    victim.chmod(before.st_mode & 0o777)
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))
    settings.MODEL_VERIFY_INTERVAL = 0.001
    hashing, release = threading.Event(), threading.Event()
    real_verify = ModelVersion.verify_artifacts

    def slow_verify(version):
        hashing.set()
        assert release.wait(30)
        return real_verify(version)

    monkeypatch.setattr(ModelVersion, "verify_artifacts", slow_verify)
    time.sleep(0.01)
    assert loader.active()[0] == "v2"  # starts the re-hash and answers without waiting for it
    assert hashing.wait(30) and loader.verifying()
    assert loader.active()[0] == "v2"  # still answering while the hash runs; no second re-hash is started
    release.set()
    loader.wait_for_verification(30)
    settings.MODEL_VERIFY_INTERVAL = 600
    label, _ = loader.active()
    assert label == "v1" and loader.failed_label == "v2" and victim.name in loader.last_error
    from quality.models import QualityAlert

    assert QualityAlert.objects.filter(metric="model_files", status="open").count() == 1


def test_a_rehash_verdict_about_files_replaced_meanwhile_is_dropped(two_versions, settings, monkeypatch):
    """The re-hash read the old files (say, mid-restore); the files it judged are gone: the new ones are verified afresh."""
    v1, v2 = two_versions
    v2.activate(reason="newer")
    assert loader.active()[0] == "v2"
    settings.MODEL_VERIFY_INTERVAL = 0.001
    hashing, release = threading.Event(), threading.Event()
    real_verify = ModelVersion.verify_artifacts

    def verify(version):
        if threading.current_thread().name == "bundle-verify":
            hashing.set()
            assert release.wait(30)
            raise ArtifactError("Model version v2 cannot be served: a file did not match (as it was then)")
        return real_verify(version)

    monkeypatch.setattr(ModelVersion, "verify_artifacts", verify)
    time.sleep(0.01)
    loader.active()
    assert hashing.wait(30)
    victim = sorted(v2.artifact_dir.glob("*.npy"))[0]
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 10**9))  # rewritten, same valid content
    release.set()
    loader.wait_for_verification(30)
    settings.MODEL_VERIFY_INTERVAL = 600
    assert loader.active()[0] == "v2" and loader.last_error is None


def test_a_failing_periodic_rehash_is_reported_and_the_bundle_kept(two_versions, settings, monkeypatch, caplog):
    v1, _ = two_versions
    assert loader.active()[0] == "v1"
    settings.MODEL_VERIFY_INTERVAL = 0.001

    def broken(version):
        raise OSError("disk went away")

    monkeypatch.setattr(ModelVersion, "verify_artifacts", broken)
    time.sleep(0.01)
    loader.active()
    loader.wait_for_verification(30)
    assert loader.active()[0] == "v1" and loader.last_error is None
    assert "Could not re-verify the files of model version v1" in caplog.text


def test_the_admin_shows_a_version_whose_files_fail_verification(two_versions, ml_admin_client):
    v1, v2 = two_versions
    (v2.artifact_dir / "manifest.json").unlink()
    page = ml_admin_client.get("/admin/registry/modelversion/").content.decode()
    assert page.count("fail verification") == 1 and "manifest.json is missing" in page


def test_a_process_whose_only_bundle_changed_serves_nothing_and_says_why(two_versions, client, planner_api):
    v1, v2 = two_versions
    assert loader.active()[0] == "v1"
    ModelVersion.objects.filter(pk=v2.pk).update(status="archived")
    victim = corrupt(v1)
    with pytest.raises(NoActiveModel, match=victim.name):
        loader.active()
    response = client.get("/health")
    assert response.status_code == 503 and response.json()["checks"]["model"]["status"] == "unhealthy"
    error = planner_api.post("/api/v1/predictions/", {"item_codes": ["X"]}, format="json")
    assert error.status_code == 503 and error.json()["error"]["code"] == 1002 and victim.name in error.json()["error"]["message"]
