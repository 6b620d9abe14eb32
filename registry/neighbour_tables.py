"""A model version's neighbour table (training.engine.neighbour_table): built once beside its bundle, off the request path.

The cluster's every-minute task builds the active version's table when it is missing or unusable
(`ensure`), and `manage.py neighbour_table` does it on demand. Every process's loader attaches a
table when it appears (registry.loader). Until then, and for whatever a table does not cover, the
version answers by searching: the same answers, slower.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import contextmanager

from django.conf import settings

from training.engine import neighbour_table as engine_table
from training.engine.config import BundleError
from training.engine.files import bundle_digest

logger = logging.getLogger(__name__)

_LOCK = ".neighbour-table.lock"


def enabled() -> bool:
    return settings.NEIGHBOUR_TABLE


def load_for(version, model) -> engine_table.NeighbourTable:
    """The version's table for `model`, checked against the manifest `model` was loaded from and its own checksums;
    TableError if unusable."""
    bundle = getattr(model, "bundle_digest", None) or _digest(version)
    return engine_table.load(version.artifact_dir, bundle, len(model.known_codes))


def state(version) -> str:
    """ "ready", "absent" or "unusable: <why>", for the command (the files' checksums included)."""
    if engine_table.stamp(version.artifact_dir) is None:
        return "absent"
    try:
        engine_table.load(version.artifact_dir, _digest(version), int(version.read_manifest().get("items_known", -1)))
    except (BundleError, OSError) as exc:
        return f"unusable: {exc}"
    return "ready"


def ensure(version, *, force: bool = False, threads: int | None = None, wait: bool = False) -> dict:
    """Build `version`'s table unless a usable one is there (`force`: build anyway) or another process is building
    it (`wait`: wait for that build, then look again).

    Returns {"status": "built" | "present" | "busy" | "disabled" | "skipped", ...}; "skipped" names why where the
    version cannot have one (not ready, or an index too small for its k neighbours). Raises RoutingMLError
    (ModelNotFound, ArtifactError) where its bundle cannot be served.
    """
    if not enabled():
        return {"status": "disabled", "label": version.label}
    if version.status != version.Status.READY:
        return {"status": "skipped", "label": version.label, "reason": f"the version is {version.status}"}
    with _build_lock(version, wait=wait) as held:
        if not held:
            return {"status": "busy", "label": version.label}
        from .loader import loader

        _, model = loader.get(version.label)  # the process's cached bundle (a cluster worker holds the active one anyway)
        if model.neighbors.n_items - 1 < model.config.top_k:
            reason = f"{model.neighbors.n_items} indexed items are too few for {model.config.top_k} neighbours besides the item"
            return {"status": "skipped", "label": version.label, "reason": reason}
        if not force:
            try:
                load_for(version, model)
                return {"status": "present", "label": version.label}
            except BundleError:
                pass  # absent or unusable: built again below
        engine_table.remove_leftovers(version.artifact_dir)  # of a build killed mid-write: no other build runs now
        started = time.monotonic()
        bundle = model.bundle_digest or _digest(version)
        table = engine_table.build(model, bundle, threads=threads or settings.NEIGHBOUR_TABLE_THREADS)
        engine_table.save(table, version.artifact_dir)
        seconds = time.monotonic() - started
        logger.info("Neighbour table of %s: %d items x %d neighbours in %.1f s", version.label, table.rows.shape[0], table.k, seconds)
        return {"status": "built", "label": version.label, "items": int(table.rows.shape[0]), "k": table.k, "seconds": round(seconds, 2)}


@contextmanager
def _build_lock(version, wait: bool = False):
    """An exclusive lock per bundle, non-blocking unless `wait` (yields False when another process holds it). The
    kernel drops it when its holder dies, so a killed build blocks nothing."""
    directory = version.artifact_dir / engine_table.DIRECTORY
    directory.mkdir(exist_ok=True)  # not parents: a bundle deleted meanwhile is not brought back as a stray directory
    fd = os.open(directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _digest(version) -> str:
    return version.manifest_sha256 or bundle_digest(version.artifact_dir)
