"""Model versions, their artifacts and the append-only deployment history.

Exactly one version may be active: a partial unique constraint on `is_active` makes the
database refuse a second one, whatever the number of processes activating at once.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from routing_ml.errors import ArtifactError, InvalidTransition, ModelNotFound


def manifest_digest(directory: Path) -> str:
    """sha256 of a bundle's manifest.json: the manifest holds every other file's sha256, so this pins them all."""
    from training.engine.files import bundle_digest

    return bundle_digest(directory)


class ModelVersionQuerySet(models.QuerySet):
    def active(self) -> ModelVersionQuerySet:
        return self.filter(is_active=True)

    def ready(self) -> ModelVersionQuerySet:
        return self.filter(status=ModelVersion.Status.READY)

    def get_active(self) -> ModelVersion | None:
        return self.active().first()


class ModelVersion(models.Model):
    """A trained bundle under MODEL_ROOT/<label>/ and what is known about it."""

    class Status(models.TextChoices):
        REGISTERING = "registering", "registering"
        READY = "ready", "ready"
        FAILED = "failed", "failed"
        ARCHIVED = "archived", "archived"

    label = models.SlugField(max_length=100, unique=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.REGISTERING, db_index=True)
    is_active = models.BooleanField("active", default=False)
    artifact_path = models.CharField(max_length=500, help_text="Directory of the bundle, relative to MODEL_ROOT.")
    manifest_sha256 = models.CharField(max_length=64, blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="Held-out metrics of the selected setup.")
    candidate_scores = models.JSONField(default=dict, blank=True)
    selected_estimator = models.CharField(max_length=30, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    total_samples = models.PositiveIntegerField(default=0)
    unique_items = models.PositiveIntegerField(default=0)
    unique_processes = models.PositiveIntegerField(default=0)
    dataset_stats = models.JSONField(default=dict, blank=True)
    training_duration_seconds = models.FloatField(null=True, blank=True)
    training_cutoff = models.DateTimeField(null=True, blank=True, help_text="Newest work result the model learned from.")
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    history = HistoricalRecords()
    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="registry_one_active_version"),
        ]
        permissions = [
            ("activate_modelversion", "Can activate or roll back model versions"),
            ("predict", "Can request predictions"),
        ]

    def __str__(self) -> str:
        return self.label

    @property
    def artifact_dir(self) -> Path:
        return Path(settings.MODEL_ROOT) / (self.artifact_path or self.label)

    def headline(self, name: str):
        return (self.metrics or {}).get(name)

    def check_manifest(self) -> None:
        """Raise ArtifactError (1002) unless the bundle's manifest.json is the one registered for this version.

        The manifest pins every other file's sha256, so a bundle whose files all match *its own*
        manifest is still refused when that manifest is not the registered one (e.g. a directory
        replaced by another bundle).
        """
        details = {"label": self.label, "path": str(self.artifact_dir)}
        try:
            digest = manifest_digest(self.artifact_dir)
        except OSError:
            raise ArtifactError(f"Model version {self.label} cannot be served: {self.artifact_dir}/manifest.json is missing.", details=details)
        if self.manifest_sha256 and digest != self.manifest_sha256:
            raise ArtifactError(f"Model version {self.label} cannot be served: manifest.json differs from the registered one.", details=details)

    def files_problem(self) -> str | None:
        """A cheap check for lists (no hashing): None when the manifest is the registered one and every file has its recorded size."""
        try:
            self.check_manifest()
        except ArtifactError as exc:
            return exc.message
        for name, entry in (self.read_manifest().get("files") or {}).items():
            path = self.artifact_dir / name
            if not path.is_file():
                return f"{name} is missing"
            if isinstance(entry, dict) and "bytes" in entry and path.stat().st_size != entry["bytes"]:
                return f"{name} has changed size"
        return None

    def verify_artifacts(self) -> dict:
        """Check the manifest against the registered one and every file against the manifest; return the manifest or raise ArtifactError (1002)."""
        from training.engine import BundleError, verify_bundle

        details = {"label": self.label, "path": str(self.artifact_dir)}
        self.check_manifest()
        try:
            return verify_bundle(self.artifact_dir)
        except BundleError as exc:
            raise ArtifactError(f"Model version {self.label} cannot be served: {exc}", details=details) from exc

    def activate(self, by=None, reason: str = "", kind: str | None = None, details: dict | None = None) -> DeploymentEvent:
        """Make this version the one every process serves. Refuses unusable artifacts; the current one stays active."""
        kind = kind or DeploymentEvent.Kind.ACTIVATE
        if self.status != self.Status.READY:
            raise InvalidTransition(f"Model version {self.label} is {self.status}; only a ready version can be activated.")
        self.verify_artifacts()
        try:
            with transaction.atomic():
                previous = self._lock_active()
                if previous is not None and previous.pk == self.pk:
                    raise InvalidTransition(f"Model version {self.label} is already active.")
                ModelVersion.objects.filter(is_active=True).update(is_active=False)
                now = timezone.now()
                updated = ModelVersion.objects.filter(pk=self.pk, status=self.Status.READY).update(is_active=True, activated_at=now)
                if updated != 1:
                    raise InvalidTransition(f"Model version {self.label} is no longer ready.")
                self.is_active, self.activated_at = True, now
                return DeploymentEvent.objects.create(
                    kind=kind, from_version=previous, to_version=self, performed_by=by if getattr(by, "pk", None) else None, reason=reason,
                    details=details or {},
                )
        except IntegrityError as exc:
            # Another process activated a version between our read and write; the database kept exactly one.
            raise InvalidTransition("Another activation happened at the same moment; nothing was changed. Try again.") from exc

    activate.alters_data = True

    @staticmethod
    def _lock_active() -> ModelVersion | None:
        """The active version, row-locked, as committed now (call inside a transaction).

        On PostgreSQL a locking read that waited for a concurrent activation re-checks the row it
        waited for, finds it no longer active and returns nothing, although another version is
        active now. Reading again (a new snapshot) until two reads agree gives the real one, so the
        deployment event records the version this activation replaced.
        """
        previous = ModelVersion.objects.select_for_update().filter(is_active=True).first()
        while True:
            current = ModelVersion.objects.select_for_update().filter(is_active=True).first()
            if current == previous:
                return current
            previous = current

    @classmethod
    def rollback_target(cls, current: ModelVersion | None = None) -> ModelVersion | None:
        """The version a rollback from `current` (default: the active one) would re-activate, or None.

        That is the version `current` replaced the last time it was made active.
        """
        current = current or cls.objects.get_active()
        if current is None:
            return None
        event = (
            DeploymentEvent.objects.filter(to_version=current, from_version__isnull=False)
            .select_related("from_version")
            .order_by("-created_at", "-pk")
            .first()
        )
        return event.from_version if event else None

    @classmethod
    def rollback(cls, by=None, reason: str = "") -> DeploymentEvent:
        """Re-activate the version that was active before the current one."""
        current = cls.objects.get_active()
        if current is None:
            raise ModelNotFound("There is no active model version to roll back from.", http_status=409)
        target = cls.rollback_target(current)
        if target is None:
            raise ModelNotFound(f"Model version {current.label} has no previous version to roll back to.", http_status=409)
        return target.activate(by=by, reason=reason or f"rollback from {current.label}", kind=DeploymentEvent.Kind.ROLLBACK)

    rollback.alters_data = True

    def archive(self) -> None:
        """Mark the version archived, then delete the bundle's files; the record (metrics, history) stays.

        The status is committed before any file goes: a crash while deleting leaves an archived
        version with stray files (archiving it again removes them), never a `ready` one with half
        its bundle. Activation only takes a `ready` version, so none can start once this commits.
        """
        with transaction.atomic():
            current = ModelVersion.objects.select_for_update().get(pk=self.pk)
            if current.is_active:
                raise InvalidTransition(f"Model version {self.label} is active and cannot be archived.")
            current.status = self.Status.ARCHIVED
            current.save(update_fields=["status"])
            directory = current.artifact_dir
            transaction.on_commit(lambda: shutil.rmtree(directory, ignore_errors=True))
        self.status, self.is_active = current.status, current.is_active

    archive.alters_data = True

    def read_manifest(self) -> dict:
        try:
            return json.loads((self.artifact_dir / "manifest.json").read_text())
        except (OSError, ValueError):
            return {}


class DeploymentEvent(models.Model):
    """Append-only record of every change of the active version."""

    class Kind(models.TextChoices):
        ACTIVATE = "activate", "activate"
        ROLLBACK = "rollback", "rollback"
        AUTO_DEPLOY = "auto_deploy", "auto-deploy"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    from_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    to_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="deployment_events")
    performed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.from_version or '—'} → {self.to_version}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise InvalidTransition("Deployment events are append-only.")
        super().save(*args, **kwargs)
