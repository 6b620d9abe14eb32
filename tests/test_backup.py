"""manage.py backup / verify_backup / restore: a restored installation predicts exactly what it predicted before."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django_q.models import Schedule

from quality.models import QualityCycle
from registry.models import ModelVersion
from routing_ml import backup as backup_module
from routing_ml.schedules import ensure_schedules
from tests.fixtures_model import *  # noqa: F401,F403

# Database-facing: run again on PostgreSQL by `make test` (pg_dump / pg_restore there).
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ITEMS = 8


def run(command: str, *args, **kwargs) -> str:
    out = io.StringIO()
    call_command(command, *args, stdout=out, stderr=io.StringIO(), **kwargs)
    return out.getvalue()


def backup(**kwargs) -> Path:
    return Path(run("backup", **kwargs).strip().splitlines()[-1])


def predictions(api, codes: list[str]) -> list[dict]:
    response = api.post("/api/v1/predictions/", {"item_codes": codes}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["results"]


@pytest.fixture
def installation(trained_model, planner_api):
    """An installation with an active model, one quality cycle and its report; returns the items it predicts."""
    from erp.models import Item

    run("run_quality_cycle", sync=True, sample_size=20)
    assert QualityCycle.objects.count() == 1
    return sorted(Item.objects.order_by("item_cd").values_list("item_cd", flat=True)[:ITEMS])


def wipe_everything() -> None:
    call_command("flush", interactive=False, verbosity=0)
    for path in Path(settings.MODEL_ROOT).iterdir():
        shutil.rmtree(path)
    shutil.rmtree(settings.QUALITY_REPORT_ROOT)


def test_restore_into_a_wiped_installation_predicts_exactly_what_it_predicted_before(installation, planner_api, tmp_path):
    before = predictions(planner_api, installation)
    assert [r["status"] for r in before] == ["ok"] * ITEMS

    path = backup(to=tmp_path / "bk")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["app_version"] == settings.VERSION
    assert ["registry", "0001_initial"] in manifest["migrations"]
    assert manifest["model_versions"] == ["demo-v1"]
    assert manifest["database"]["file"] in manifest["files"]
    bundle_files = [f for f in manifest["files"] if f.startswith("models/demo-v1/")]
    assert "models/demo-v1/manifest.json" in bundle_files and len(bundle_files) > 5
    assert [f for f in manifest["files"] if f.startswith("quality_reports/")] == [f"quality_reports/cycle_{QualityCycle.objects.get().pk}.json"]

    wipe_everything()
    assert not ModelVersion.objects.exists()

    out = run("restore", str(path))
    assert "Restored" in out and "demo-v1" in out
    assert ModelVersion.objects.get_active().label == "demo-v1"
    cycle = QualityCycle.objects.get()
    assert Path(cycle.report_path).is_file()
    assert predictions(planner_api, installation) == before


def test_restore_refuses_a_target_with_data_unless_forced(installation, planner_api, tmp_path):
    before = predictions(planner_api, installation)
    path = backup(to=tmp_path / "bk")
    # The installation moves on after the backup: the model is replaced by another.
    ModelVersion.objects.update(is_active=False)
    shutil.rmtree(Path(settings.MODEL_ROOT) / "demo-v1")

    with pytest.raises(CommandError, match="not empty.*--force"):
        run("restore", str(path))
    assert ModelVersion.objects.get_active() is None  # untouched

    run("restore", str(path), force=True)
    assert ModelVersion.objects.get_active().label == "demo-v1"
    assert predictions(planner_api, installation) == before


def test_a_tampered_backup_is_refused_naming_the_file_and_nothing_is_touched(installation, tmp_path):
    path = backup(to=tmp_path / "bk")
    assert "OK:" in run("verify_backup", str(path))
    victim = next(p for p in sorted((path / "models" / "demo-v1").iterdir()) if p.suffix == ".npy")
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    ModelVersion.objects.filter(label="demo-v1").update(description="changed after the backup")

    with pytest.raises(CommandError, match=f"{victim.name} does not match its checksum"):
        run("verify_backup", str(path))
    with pytest.raises(CommandError, match=f"{victim.name} does not match its checksum"):
        run("restore", str(path), force=True)
    assert ModelVersion.objects.get(label="demo-v1").description == "changed after the backup"


def test_an_incomplete_backup_is_refused_naming_the_missing_file(installation, tmp_path):
    path = backup(to=tmp_path / "bk")
    report = next((path / "quality_reports").iterdir())
    report.unlink()
    with pytest.raises(CommandError, match=f"{report.name} is missing"):
        run("restore", str(path), force=True)
    (path / "quality_reports" / "extra.json").write_text("{}")
    with pytest.raises(CommandError):
        run("verify_backup", str(path))


def test_backup_keeps_the_newest_n(trained_model, tmp_path):
    made = [backup(to=tmp_path / "bk", keep=2) for _ in range(3)]
    assert backup_module.list_backups(tmp_path / "bk") == made[1:]
    assert not made[0].exists()


def test_a_backup_leaves_out_the_neighbour_table_which_the_cluster_builds_again(trained_model, tmp_path):
    from registry.neighbour_tables import ensure

    assert ensure(trained_model)["status"] == "built"
    path = backup(to=tmp_path / "bk")
    copied = next(p for p in path.rglob("manifest.json") if p.parent.name == trained_model.label).parent
    assert (copied / "encoder.joblib").is_file() and not (copied / "derived").exists()
    assert not [name for name in backup_module.verify_backup(path)["files"] if "derived" in name]


def test_health_reports_the_last_backups_age(trained_model, client):
    body = client.get("/health").json()
    assert body["checks"]["backup"]["status"] == "degraded" and body["checks"]["backup"]["last_backup"] is None
    path = backup()
    assert path.parent == Path(settings.BACKUP_ROOT)
    check = client.get("/health").json()["checks"]["backup"]
    assert check["status"] == "healthy" and check["last_backup"] == path.name
    assert 0 <= check["age_hours"] < 0.1


def test_the_daily_backup_is_a_cluster_schedule(trained_model):
    ensure_schedules()
    schedule = Schedule.objects.get(name="backup")
    assert (schedule.func, schedule.schedule_type, schedule.cron) == ("routing_ml.tasks.scheduled_backup", Schedule.CRON, settings.BACKUP_SCHEDULE_CRON)
    from routing_ml.tasks import scheduled_backup

    path = Path(scheduled_backup())
    assert backup_module.list_backups() == [path]
