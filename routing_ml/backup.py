"""Backup, verification and restore of a whole installation: database, model bundles, quality reports.

A backup is one directory `BACKUP_ROOT/backup-<UTC time>/`:

    database.sqlite3 | database.pgdump   the application database (SQLite online backup API / pg_dump custom format)
    models/<label>/…                     every non-archived model version's bundle
    quality_reports/cycle_<n>.json       the quality cycles' reports
    manifest.json                        sha256 of every file above, app version, migration state, created_at

It is written to a hidden temporary directory and renamed into place, so a directory named
`backup-*` is always complete. `verify` checks every file against the manifest (and that no
file was added); `restore` verifies first and touches nothing when anything is wrong.

Consistency: the database is snapshotted first (one read transaction), then the bundles of the
versions that snapshot knows are copied. Bundles never change after they are renamed into
place, so the copies match the snapshot; a version archived between the two steps has lost its
files and is recorded under `missing_bundles` in the manifest (it cannot be active: the active
version cannot be archived).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db import connections

from erp.changes import TRIGGER_PREFIX

logger = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
PREFIX = "backup-"
SQLITE_FILE = "database.sqlite3"
PG_FILE = "database.pgdump"
MODELS_DIR = "models"
REPORTS_DIR = "quality_reports"
CHUNK = 1 << 20


class BackupError(Exception):
    """A backup that cannot be made, verified or restored; the message names the file and what to do."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def backup_root() -> Path:
    return Path(settings.BACKUP_ROOT)


def _db_settings(alias: str = "default") -> dict:
    return connections[alias].settings_dict


def _vendor(alias: str = "default") -> str:
    return connections[alias].vendor


def _pg_command_env(db: dict) -> tuple[list[str], dict]:
    """Connection arguments for pg_dump / pg_restore; the password travels in the environment, never on the command line."""
    args = ["--host", db.get("HOST") or "localhost", "--port", str(db.get("PORT") or 5432), "--username", db.get("USER") or "postgres"]
    env = dict(os.environ)
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = str(db["PASSWORD"])
    return args, env


def _run(command: list[str], env: dict, what: str) -> None:
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise BackupError(f"{what} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}")


# -- backup ---------------------------------------------------------------------------------


def _snapshot_database(target_dir: Path) -> str:
    """Write the database snapshot into target_dir; return its file name."""
    db = _db_settings()
    vendor = _vendor()
    if vendor == "sqlite":
        target = target_dir / SQLITE_FILE
        source = sqlite3.connect(db["NAME"], timeout=60)
        try:
            dest = sqlite3.connect(target)
            try:
                # One step (pages=-1): the whole database under one read lock, a consistent snapshot even while others write (WAL).
                source.backup(dest)
                # A single self-contained file: no -wal/-shm beside it.
                dest.execute("PRAGMA journal_mode=DELETE")
            finally:
                dest.close()
        finally:
            source.close()
        return SQLITE_FILE
    if vendor == "postgresql":
        args, env = _pg_command_env(db)
        _run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges", *args, "--file", str(target_dir / PG_FILE), db["NAME"]], env, "pg_dump")
        return PG_FILE
    raise BackupError(f"Backing up a {vendor} database is not supported: use the database's own backup tools and back up MODEL_ROOT beside it.")


def _versions_to_copy() -> list[tuple[str, str]]:
    from registry.models import ModelVersion

    return list(ModelVersion.objects.exclude(status=ModelVersion.Status.ARCHIVED).order_by("pk").values_list("label", "artifact_path"))


def _migration_state() -> list[list[str]]:
    from django.db.migrations.recorder import MigrationRecorder

    return [[app, name] for app, name in MigrationRecorder(connections["default"]).migration_qs.order_by("app", "name").values_list("app", "name")]


def _copy_tree(source: Path, target: Path) -> None:
    # A bundle's derived data (its neighbour table) is left out: the cluster builds it again from the bundle after a restore.
    from training.engine.neighbour_table import DIRECTORY

    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.tmp", DIRECTORY))


def _file_digests(root: Path) -> dict[str, str]:
    top = root / MANIFEST
    return {path.relative_to(root).as_posix(): sha256_file(path) for path in sorted(root.rglob("*")) if path.is_file() and path != top}


def list_backups(root: Path | None = None) -> list[Path]:
    """Complete backups under root, oldest first (their names sort by time)."""
    root = Path(root) if root is not None else backup_root()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / MANIFEST).is_file())


def prune(root: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups; return the deleted paths."""
    if keep < 1:
        raise BackupError("--keep must be at least 1: a backup run must not delete the backup it just made.")
    backups = list_backups(root)
    doomed = backups[:-keep]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def create_backup(to: Path | None = None, keep: int | None = None) -> Path:
    """Make a complete, checksummed backup under `to` (default BACKUP_ROOT); keep the newest `keep`. Returns its path."""
    root = Path(to) if to is not None else backup_root()
    root.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    name = f"{PREFIX}{now:%Y%m%d-%H%M%S-%f}"
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        database_file = _snapshot_database(work)
        models_dir = work / MODELS_DIR
        models_dir.mkdir()
        copied, missing = [], []
        for label, artifact_path in _versions_to_copy():
            source = Path(settings.MODEL_ROOT) / (artifact_path or label)
            if not (source / "manifest.json").is_file():
                missing.append(label)
                logger.warning("Backup: model version %s has no bundle at %s; it is listed under missing_bundles.", label, source)
                continue
            _copy_tree(source, models_dir / (artifact_path or label))
            copied.append(label)
        reports = Path(settings.QUALITY_REPORT_ROOT)
        (work / REPORTS_DIR).mkdir()
        if reports.is_dir():
            for report in sorted(reports.glob("*.json")):
                shutil.copy2(report, work / REPORTS_DIR / report.name)
        manifest = {
            "format": FORMAT,
            "app_version": settings.VERSION,
            "created_at": now.isoformat(),
            "database": {"vendor": _vendor(), "file": database_file},
            "migrations": _migration_state(),
            "model_versions": copied,
            "missing_bundles": missing,
            "files": _file_digests(work),
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=1))
        final = root / name
        work.rename(final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if keep is not None:
        prune(root, keep)
    return final


# -- verify ---------------------------------------------------------------------------------


def read_manifest(path: Path) -> dict:
    path = Path(path)
    if not path.is_dir():
        raise BackupError(f"{path} is not a backup directory.")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(f"{path / MANIFEST} is missing: this is not a complete backup.")
    except ValueError as exc:
        raise BackupError(f"{path / MANIFEST} is not valid JSON ({exc}): the backup was damaged.")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict) or "database" not in manifest:
        raise BackupError(f"{path / MANIFEST} lacks its file list or database entry: the backup was damaged.")
    return manifest


def verify_backup(path: Path) -> dict:
    """Check every file of a backup against its manifest; return the manifest or raise BackupError naming the first bad file."""
    path = Path(path)
    manifest = read_manifest(path)
    files: dict[str, str] = manifest["files"]
    if manifest["database"].get("file") not in files:
        raise BackupError(f"{path / str(manifest['database'].get('file'))}: the database snapshot is not in the manifest.")
    for relative, expected in sorted(files.items()):
        target = path / relative
        if not target.is_file():
            raise BackupError(f"{target} is missing: the backup is incomplete.")
        if sha256_file(target) != expected:
            raise BackupError(f"{target} does not match its checksum in the manifest: the file was changed or damaged.")
    present = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file() and p != path / MANIFEST}
    extra = sorted(present - set(files))
    if extra:
        raise BackupError(f"{path / extra[0]} is not in the manifest: the backup was tampered with ({len(extra)} unlisted file(s)).")
    return manifest


# -- restore --------------------------------------------------------------------------------


@dataclass
class RestoreResult:
    manifest: dict
    database: str
    model_versions: list[str]
    reports: int


def target_contents() -> list[str]:
    """What the configured database and MODEL_ROOT already hold (empty list: safe to restore into)."""
    found = []
    connection = connections["default"]
    tables = set(connection.introspection.table_names())
    if "registry_modelversion" in tables:
        from django.contrib.auth import get_user_model

        from erp.models import Item
        from quality.models import QualityCycle
        from registry.models import ModelVersion
        from training.models import TrainingJob

        # With a real ERP attached, Item lives in the ERP, not in the database being restored.
        models = (ModelVersion, TrainingJob, QualityCycle, get_user_model()) + (() if settings.ERP_EXTERNAL else (Item,))
        for model in models:
            if model._meta.db_table in tables and model.objects.exists():
                found.append(f"database table {model._meta.db_table} has rows")
    root = Path(settings.MODEL_ROOT)
    if root.is_dir() and any(p.name != "erp_snapshot" for p in root.iterdir()):  # the ERP snapshot is a cache
        found.append(f"MODEL_ROOT {root} is not empty")
    return found


def _restore_sqlite(source: Path) -> None:
    db = _db_settings()
    connections.close_all()
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dest = sqlite3.connect(db["NAME"], timeout=60)
        try:
            # The backup API replaces the target page by page under its write lock: readers see the old or the new database.
            src.backup(dest)
            dest.execute("PRAGMA journal_mode=WAL")
        finally:
            dest.close()
    finally:
        src.close()


def _restore_postgresql(source: Path) -> None:
    db = _db_settings()
    connections.close_all()
    args, env = _pg_command_env(db)
    with connections["default"].cursor() as cursor:
        # pg_restore --clean drops only what the dump holds; drop every table first so the result is exactly the backup.
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        tables = [row[0] for row in cursor.fetchall()]
        if tables:
            cursor.execute("DROP TABLE " + ", ".join(connections["default"].ops.quote_name(t) for t in tables) + " CASCADE")
        # The functions of the ERP change-counting triggers (erp.changes) are not tables, and the dump creates them again.
        cursor.execute("SELECT proname FROM pg_proc WHERE pronamespace = to_regnamespace(current_schema()) AND left(proname, %s) = %s", [len(TRIGGER_PREFIX), TRIGGER_PREFIX])
        for (name,) in cursor.fetchall():
            cursor.execute(f"DROP FUNCTION IF EXISTS {connections['default'].ops.quote_name(name)}() CASCADE")
    connections.close_all()
    _run(["pg_restore", "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error", *args, "--dbname", db["NAME"], str(source)],
         env, "pg_restore")


def _replace_dir(source: Path, target: Path) -> None:
    """Put a copy of `source` at `target`, replacing what is there; the new copy is complete before the swap."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".restore-{target.name}-", dir=target.parent))
    shutil.rmtree(staging)
    shutil.copytree(source, staging)
    old = None
    if target.exists():
        old = target.with_name(f".restore-old-{target.name}-{os.getpid()}")
        target.rename(old)
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def restore_backup(path: Path, force: bool = False) -> RestoreResult:
    """Verify the backup, then restore it into DATABASE_URL, MODEL_ROOT and QUALITY_REPORT_ROOT.

    Nothing is touched when a file is missing or altered, or when the target holds data and
    `force` is not given.
    """
    path = Path(path).resolve()
    manifest = verify_backup(path)
    vendor = manifest["database"]["vendor"]
    if vendor != _vendor():
        raise BackupError(f"The backup holds a {vendor} database but DATABASE_URL points at {_vendor()}: restore it into a {vendor} database.")
    if not force:
        contents = target_contents()
        if contents:
            raise BackupError("The target is not empty (" + "; ".join(contents) + "). Restore with --force to replace it.")
    database_file = path / manifest["database"]["file"]
    if vendor == "sqlite":
        _restore_sqlite(database_file)
    elif vendor == "postgresql":
        _restore_postgresql(database_file)
    else:
        raise BackupError(f"Restoring a {vendor} database is not supported.")

    model_root = Path(settings.MODEL_ROOT)
    model_root.mkdir(parents=True, exist_ok=True)
    restored = []
    models_dir = path / MODELS_DIR
    if models_dir.is_dir():
        for bundle in sorted(p for p in models_dir.iterdir() if p.is_dir()):
            _replace_dir(bundle, model_root / bundle.name)
            restored.append(bundle.name)

    report_root = Path(settings.QUALITY_REPORT_ROOT)
    report_root.mkdir(parents=True, exist_ok=True)
    reports = sorted((path / REPORTS_DIR).glob("*.json")) if (path / REPORTS_DIR).is_dir() else []
    for report in reports:
        staging = report_root / f".{report.name}.restore"
        shutil.copy2(report, staging)
        staging.replace(report_root / report.name)
    _repoint_reports(report_root)

    from registry.loader import loader

    loader.clear()
    return RestoreResult(manifest=manifest, database=vendor, model_versions=restored, reports=len(reports))


def _repoint_reports(report_root: Path) -> None:
    """Cycles record their report's absolute path; after a restore onto another QUALITY_REPORT_ROOT, point them at the restored files."""
    from quality.models import QualityCycle

    for pk, old in QualityCycle.objects.exclude(report_path="").values_list("pk", "report_path"):
        new = str(report_root / Path(old).name)
        if new != old:
            QualityCycle.objects.filter(pk=pk).update(report_path=new)


# -- age ------------------------------------------------------------------------------------


def latest_backup(root: Path | None = None) -> tuple[Path, datetime] | None:
    """The newest complete backup and when it was made, or None."""
    for path in reversed(list_backups(root)):
        try:
            created = datetime.fromisoformat(json.loads((path / MANIFEST).read_text())["created_at"])
        except (OSError, ValueError, KeyError):
            continue
        return path, created
    return None
