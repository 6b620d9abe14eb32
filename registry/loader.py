"""The in-process cache of model bundles that every web and worker process uses.

Each process re-reads which version is active at most every MODEL_RELOAD_INTERVAL seconds
(one indexed query), so an activation or rollback made anywhere is served within seconds
without a restart. When the new version cannot be loaded the process keeps serving the
bundle it had and logs why.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict
from pathlib import Path

from django.conf import settings

from routing_ml.errors import ArtifactError, ModelNotFound, NoActiveModel

logger = logging.getLogger(__name__)


class ModelLoader:
    # Besides the active bundle, keep a couple of others for `model_version` comparisons.
    MAX_EXTRA = 2

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._active_label: str | None = None
        self._active_model = None
        self._checked_at = float("-inf")
        self._extra: OrderedDict[str, object] = OrderedDict()
        self.last_error: str | None = None
        self.failed_label: str | None = None  # the active version this process could not load
        self._stamp: dict | None = None  # (size, mtime) of each file of the served bundle when it was verified
        self._failed_stamp: dict | None = None  # the same, of the active version that failed (retried only when its files change)
        self._verified_at = float("-inf")
        # The periodic full re-hash runs in this thread, off the request path (~1 s for a 400 MiB bundle);
        # what it finds waits in _found until the next check acts on it.
        self._verifier: threading.Thread | None = None
        # (label, the files' stamp when the re-hash began, why) of a served bundle the re-hash refused
        self._found: tuple[str, dict | None, str] | None = None
        self._generation = 0  # moves whenever what is served changes: a verdict about an older state is dropped
        # The neighbour table files each loaded model was last given (None: none), weak: dropped with the model.
        self._table_stamps: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _load(self, version):
        """Load a version's bundle: its manifest must be the registered one and every file must match it."""
        from training.engine import BundleError, RoutingModel

        version.check_manifest()
        try:
            model = RoutingModel.load(version.artifact_dir, mmap=True)
        except BundleError as exc:
            raise ArtifactError(f"Model version {version.label} cannot be loaded: {exc}", details={"label": version.label}) from exc
        self._attach_table(version, model)
        return model

    def _attach_table(self, version, model) -> None:
        """Serve `model`'s known items from its version's neighbour table if a usable one is there (its stamp is kept
        either way, so the next check looks again only when the table's files change).

        An unusable table (corrupt, half-written, another bundle's) is logged and ignored: the model
        searches instead, with the same answers. The cluster's every-minute task builds it again.
        """
        from training.engine import BundleError
        from training.engine import neighbour_table as engine_table

        from .neighbour_tables import enabled, load_for

        stamp = engine_table.stamp(version.artifact_dir) if enabled() else None
        try:
            model.use_neighbour_table(load_for(version, model) if stamp is not None else None)
        except Exception as exc:  # whatever is wrong with a table, the model still answers by searching
            model.use_neighbour_table(None)
            reason = str(exc) if isinstance(exc, (BundleError, OSError)) else f"{type(exc).__name__}: {exc}"
            logger.warning("Model version %s answers without its neighbour table: %s", version.label, reason)
        self._table_stamps[model] = stamp

    def refresh(self, force: bool = False) -> None:
        """Follow the database's active version; on a load failure keep the current bundle."""
        from .models import ModelVersion

        with self._lock:
            now = time.monotonic()
            if not force and now - self._checked_at < settings.MODEL_RELOAD_INTERVAL:
                return
            self._checked_at = now
            active = ModelVersion.objects.get_active()
            if active is None:
                self._active_label, self._active_model = None, None
                self.last_error = self.failed_label = None
                return
            if active.label == self._active_label:
                self._recheck(active, now)
                self._recheck_table(active)
                return
            if active.label == self.failed_label and _stamp(active.artifact_dir) == self._failed_stamp:
                return  # it failed and its files have not changed since: not worth another full read
            try:
                model = self._load(active)
            except ArtifactError as exc:
                if self._active_model is None:
                    # Nothing to keep serving (a fresh worker, or one that just dropped a broken bundle):
                    # the newest ready version that verifies, rather than answering 503 to everyone.
                    self._fall_back(active, exc.message)
                else:
                    self._fail(active, exc.message)
                return
            logger.info("Now serving model version %s (was %s)", active.label, self._active_label)
            self._serve(active, model)

    def _recheck_table(self, active) -> None:
        """Attach the served version's neighbour table once it appears, and again (checked) whenever its files change."""
        from training.engine import neighbour_table as engine_table

        from .neighbour_tables import enabled

        if not enabled() or self._active_model is None or self._active_label != active.label:
            return
        if engine_table.stamp(active.artifact_dir) != self._table_stamps.get(self._active_model):
            self._attach_table(active, self._active_model)

    def neighbour_table(self) -> str:
        """What this process's served version answers known items from: "table (k=…)" or "search"."""
        model = self._active_model
        table = getattr(model, "neighbour_table", None)
        return f"table (k={table.k})" if table is not None else "search"

    def _serve(self, version, model) -> None:
        self._generation += 1
        self._found = None
        self._active_label, self._active_model = version.label, model
        self._stamp, self._verified_at = _stamp(version.artifact_dir), time.monotonic()
        self.last_error = self.failed_label = self._failed_stamp = None

    def _fail(self, version, reason: str) -> None:
        self.last_error, self.failed_label, self._failed_stamp = reason, version.label, _stamp(version.artifact_dir)
        logger.error("Model version %s cannot be served: %s (serving %s)", version.label, reason, self._active_label)

    def _recheck(self, active, now: float) -> None:
        """Re-verify the served bundle: cheaply (file sizes and times) on every check, fully every MODEL_VERIFY_INTERVAL.

        Its arrays are memory-mapped: a file changed on disk would be served silently. A changed
        size or time is verified at once; the periodic full re-hash (which also catches a change
        that kept both) runs in a background thread, so no request waits for it, and its verdict
        is acted on at the next check. On a mismatch the process falls back to the newest ready
        version it can verify, or serves none.
        """
        if self._found is not None:
            label, stamp, reason = self._found
            self._found = None
            # Only about the files as they still are: a bundle replaced meanwhile is verified afresh below.
            if label == active.label and stamp == self._stamp == _stamp(active.artifact_dir):
                self._refuse(active, reason)
                return
        if _stamp(active.artifact_dir) != self._stamp:
            try:
                active.verify_artifacts()
            except ArtifactError as exc:
                self._refuse(active, exc.message)
                return
            self._stamp, self._verified_at = _stamp(active.artifact_dir), now
            return
        interval = getattr(settings, "MODEL_VERIFY_INTERVAL", 0)
        if interval > 0 and now - self._verified_at >= interval and not self.verifying():
            self._verified_at = now  # the next full check is due an interval after this one started
            self._verifier = threading.Thread(
                target=self._verify_in_background, args=(active, self._stamp, self._generation), name="bundle-verify", daemon=True
            )
            self._verifier.start()

    def _verify_in_background(self, version, stamp: dict | None, generation: int) -> None:
        try:
            version.verify_artifacts()  # reads files only: no database connection in this thread
        except ArtifactError as exc:
            with self._lock:
                if generation == self._generation:  # still serving what was verified
                    self._found = (version.label, stamp, exc.message)
                    self._checked_at = float("-inf")  # the next request acts on it, not one MODEL_RELOAD_INTERVAL later
        except Exception:
            logger.exception("Could not re-verify the files of model version %s", version.label)

    def verifying(self) -> bool:
        """True while a background re-hash of the served bundle runs."""
        return self._verifier is not None and self._verifier.is_alive()

    def wait_for_verification(self, timeout: float | None = None) -> None:
        """Wait for a running background re-hash to finish (tests, and an orderly shutdown)."""
        verifier = self._verifier
        if verifier is not None:
            verifier.join(timeout)

    def _refuse(self, active, reason: str) -> None:
        logger.critical("The files of the served model version %s changed on disk: %s", active.label, reason)
        self._fall_back(active, reason)

    def _fall_back(self, broken, reason: str) -> None:
        from .models import ModelVersion

        self._generation += 1
        self._found = None
        self._active_label, self._active_model = None, None
        self._extra.clear()
        for candidate in ModelVersion.objects.ready().exclude(pk=broken.pk).order_by("-activated_at", "-created_at")[:5]:
            try:
                model = self._load(candidate)
            except ArtifactError:
                continue
            self._active_label, self._active_model = candidate.label, model
            self._stamp, self._verified_at = _stamp(candidate.artifact_dir), time.monotonic()
            break
        self._fail(broken, reason)
        from .signals import bundle_verification_failed

        bundle_verification_failed.send_robust(sender=type(broken), version=broken, reason=reason, served=self._active_label)

    def active(self):
        """(label, model) of the version this process serves; NoActiveModel (1002, HTTP 503) with the real reason when there is none."""
        self.refresh()
        with self._lock:
            if self._active_model is None:
                if self.last_error:
                    # A version is active, but this process could not load it and has nothing older to serve.
                    raise NoActiveModel(
                        f"No model can be served: {self.last_error}", details={"active_version": self.failed_label, "reason": self.last_error}
                    )
                raise NoActiveModel("No model version is active. Train one and activate it (ML admins: Model versions → Activate).")
            return self._active_label, self._active_model

    def get(self, label: str):
        """(label, model) of a named ready version, e.g. to compare it with the active one."""
        from .models import ModelVersion

        self.refresh()
        with self._lock:
            if label == self._active_label and self._active_model is not None:
                return label, self._active_model
        # Checked on every call, cached or not: a version archived since it was cached is no longer served.
        version = ModelVersion.objects.filter(label=label).first()
        if version is None:
            raise ModelNotFound(f"Model version {label!r} does not exist.")
        if version.status != ModelVersion.Status.READY:
            with self._lock:
                self._extra.pop(label, None)
            raise ModelNotFound(f"Model version {label!r} is {version.status}, not ready.", http_status=409)
        with self._lock:
            if label in self._extra:
                self._extra.move_to_end(label)
                return label, self._extra[label]
        model = self._load(version)
        with self._lock:
            self._extra[label] = model
            while len(self._extra) > self.MAX_EXTRA:
                self._extra.popitem(last=False)
        return label, model

    def served_label(self) -> str | None:
        return self._active_label

    def clear(self) -> None:
        with self._lock:
            self._active_label, self._active_model = None, None
            self.last_error = self.failed_label = None
            self._stamp = self._failed_stamp = None
            self._verified_at = float("-inf")
            self._found = None
            self._generation += 1
            self._extra.clear()
            self._checked_at = float("-inf")


def _stamp(directory: Path) -> dict | None:
    """(size, mtime) of every file of a bundle directory: a cheap fingerprint that any rewrite changes."""
    try:
        return {p.name: (st.st_size, st.st_mtime_ns) for p in Path(directory).iterdir() if p.is_file() for st in [p.stat()]}
    except OSError:
        return None


loader = ModelLoader()
