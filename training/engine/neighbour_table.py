"""Every known item's nearest neighbours, worked out once per model version and read from a file after.

A model version never changes, and neither do the neighbours of an item it knows (one named by
its code, which is answered from the embedding the model stored for it): the search's answer
for such an item is the same every time it is asked. The table holds, for every known item, the
`k` neighbours and similarities that `NeighborIndex.search` returns for it with the item itself
excluded, so serving it is a row look-up (~1 µs an item) where the search costs ~0.14 ms.

It is derived data, kept beside the bundle (`DIRECTORY` inside the bundle's directory, which the
bundle's manifest and checks ignore) and built after the bundle, in the background: a version
serves by searching until its table is there, and by searching again for anything the table
does not cover (items described by their attributes, a larger top_k, self-inclusion). A table is
bound to its bundle by the bundle's manifest digest and to its own files by their sha256, and it
is written into a temporary directory renamed into place, so a half-written or foreign table is
never read.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .config import BundleError
from .files import fsync, sha256_file
from .neighbors import one_blas_thread

if TYPE_CHECKING:
    from .model import RoutingModel

DIRECTORY = "derived"  # inside a bundle's directory: not a bundle file, never in its manifest
NAME = "neighbour-table"
FORMAT = 1
# Known items per search call while building: large enough for the scan's batching, small enough
# that two threads keep both cores busy to the end.
BUILD_BLOCK = 4096
_HEADER = "table.json"
_ARRAYS = ("rows", "sims")
_DTYPES = {"rows": np.dtype(np.int32), "sims": np.dtype(np.float32)}
# The code whose answers a table holds: a table built before any of it changed (an upgrade) is refused
# and built again, rather than serving known items the old code's answers and everything else the new.
_SEARCH_SOURCES = ("neighbors.py", "_leafscan.pyx", "neighbour_table.py")


class TableError(BundleError):
    """A neighbour table that cannot be used (missing, half-written, corrupt or another bundle's)."""


@dataclass(frozen=True)
class NeighbourTable:
    """`rows[p]` / `sims[p]`: the k best index rows and similarities of known item p (`known_codes` order), best first."""

    rows: np.ndarray  # (known items, k) int32 caller rows of the neighbour index
    sims: np.ndarray  # (known items, k) float32, as the search returns them
    bundle: str  # sha256 of the bundle's manifest.json

    @property
    def k(self) -> int:
        return int(self.rows.shape[1])


def build(
    model: RoutingModel, bundle: str, k: int | None = None, threads: int = 2, progress: Callable[[int, int], None] | None = None
) -> NeighbourTable:
    """The table of every known item of `model` (k: the model's top_k by default).

    Each block of items is one `search` call, exactly what serving would make: a query's answer
    does not depend on the other queries of its call. The compiled scan releases the GIL, so
    `threads` blocks run at once. Raises TableError where no table can serve (an index too small
    for k neighbours beside the item itself).
    """
    k = int(k or model.config.top_k)
    n_known = len(model.known_codes)
    if k < 1 or k > model.neighbors.n_items - 1:
        raise TableError(f"no neighbour table for k={k}: the index holds {model.neighbors.n_items} items")
    rows = np.empty((n_known, k), dtype=np.int32)
    sims = np.empty((n_known, k), dtype=np.float32)
    starts = list(range(0, n_known, BUILD_BLOCK))
    done, lock = [0], threading.Lock()

    def one(start: int) -> None:
        positions = np.arange(start, min(n_known, start + BUILD_BLOCK))
        found_rows, found_sims = model.neighbors.search(model.stored_embeddings(positions), k, model.known_index_row[positions])
        rows[positions], sims[positions] = found_rows, found_sims
        with lock:
            done[0] += positions.size
            if progress is not None:
                progress(done[0], n_known)

    if threads > 1 and len(starts) > 1:
        # BLAS limits are process-wide: one held around both threads' lives (each search's own limit,
        # entered and left per call, would otherwise hand the other thread a multi-threaded BLAS).
        with one_blas_thread(), ThreadPoolExecutor(max_workers=threads, thread_name_prefix="neighbour-table") as pool:
            list(pool.map(one, starts))
    else:
        for start in starts:
            one(start)
    return NeighbourTable(rows=rows, sims=sims, bundle=bundle)


@functools.cache
def search_fingerprint() -> str:
    """sha256 of the search's source files and numpy's version: what a table's answers depend on besides its bundle."""
    digest = hashlib.sha256(np.__version__.encode())
    for name in _SEARCH_SOURCES:
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()


def table_dir(bundle_dir: str | Path) -> Path:
    return Path(bundle_dir) / DIRECTORY / NAME


def save(table: NeighbourTable, bundle_dir: str | Path) -> Path:
    """Write the table beside the bundle: into a temporary directory, then renamed into place (replacing an older one)."""
    parent = Path(bundle_dir) / DIRECTORY
    parent.mkdir(exist_ok=True)  # not parents: a bundle deleted meanwhile is not brought back as a stray directory
    work = Path(tempfile.mkdtemp(prefix=f".{NAME}-", dir=parent))
    try:
        files = {}
        for name in _ARRAYS:
            path = work / f"{name}.npy"
            np.save(path, np.ascontiguousarray(getattr(table, name)), allow_pickle=False)
            files[path.name] = sha256_file(path)
        header = {
            "format": FORMAT,
            "bundle": table.bundle,
            "search": search_fingerprint(),
            "k": table.k,
            "items": int(table.rows.shape[0]),
            "files": files,
        }
        (work / _HEADER).write_text(json.dumps(header, indent=2))
        for path in work.iterdir():
            fsync(path)
        final = table_dir(bundle_dir)
        if final.exists():
            old = parent / f".{NAME}-old-{os.getpid()}"
            final.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        work.rename(final)
        fsync(parent)
        return final
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def load(bundle_dir: str | Path, bundle: str, n_known: int, mmap: bool = True) -> NeighbourTable:
    """The table beside a bundle, after checking it belongs to it (manifest digest, items) and its files' sha256."""
    directory = table_dir(bundle_dir)
    try:
        header = json.loads((directory / _HEADER).read_text())
    except FileNotFoundError:
        raise TableError(f"no neighbour table in {directory.parent}") from None
    except (OSError, ValueError) as exc:
        raise TableError(f"neighbour table {directory}: unreadable header ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise TableError(
            f"neighbour table {directory}: format {header.get('format') if isinstance(header, dict) else None!r} is not {FORMAT}"
        )
    if header.get("bundle") != bundle:
        raise TableError(f"neighbour table {directory}: made for another bundle")
    if header.get("search") != search_fingerprint():
        raise TableError(f"neighbour table {directory}: made by another version of the neighbour search")
    if header.get("items") != n_known:
        raise TableError(f"neighbour table {directory}: {header.get('items')} items, the model knows {n_known}")
    files = header.get("files")
    if not isinstance(files, dict) or set(files) != {f"{a}.npy" for a in _ARRAYS}:
        raise TableError(f"neighbour table {directory}: its header does not list {', '.join(f'{a}.npy' for a in _ARRAYS)}")
    arrays = {}
    for name in _ARRAYS:
        path = directory / f"{name}.npy"
        if not path.is_file() or sha256_file(path) != files[path.name]:
            raise TableError(f"neighbour table {directory}: {path.name} is missing or corrupt")
        try:
            arrays[name] = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False).view(np.ndarray)
        except (OSError, ValueError) as exc:
            raise TableError(f"neighbour table {directory}: {path.name} cannot be read ({exc})") from exc
        if arrays[name].dtype != _DTYPES[name]:
            raise TableError(f"neighbour table {directory}: {path.name} holds {arrays[name].dtype}, not {_DTYPES[name]}")
    rows, sims = arrays["rows"], arrays["sims"]
    if rows.ndim != 2 or rows.shape != sims.shape or rows.shape[0] != n_known or rows.shape[1] != header.get("k"):
        raise TableError(f"neighbour table {directory}: arrays of shape {rows.shape} / {sims.shape} do not match its header")
    return NeighbourTable(rows=rows, sims=sims, bundle=bundle)


def remove_leftovers(bundle_dir: str | Path) -> list[str]:
    """Remove the temporary directories of builds that died before renaming theirs into place (call it holding the build lock)."""
    parent = Path(bundle_dir) / DIRECTORY
    removed = []
    for path in parent.glob(f".{NAME}-*") if parent.is_dir() else ():
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def stamp(bundle_dir: str | Path) -> tuple | None:
    """(size, mtime) of the table's files: a cheap fingerprint that any rewrite changes (None: no table)."""
    directory = table_dir(bundle_dir)
    try:
        return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in directory.iterdir() if p.is_file()))
    except OSError:
        return None
