"""Checksums of the files a model version is made of (its bundle, and its neighbour table beside it)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundle_digest(bundle_dir: str | Path) -> str:
    """sha256 of a bundle's manifest.json: the manifest holds every other file's sha256, so this pins them all."""
    return hashlib.sha256((Path(bundle_dir) / MANIFEST).read_bytes()).hexdigest()


def fsync(path: Path) -> None:
    """Flush a file's (or a directory's entries') data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
