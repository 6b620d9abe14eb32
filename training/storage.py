"""Where trained bundles go: MODEL_ROOT must be writable before a job spends minutes computing one."""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.conf import settings


class ModelRootNotWritable(OSError):
    """MODEL_ROOT cannot be created or written: a training job fails at once with this (code 1004)."""


def check_model_root_writable() -> Path:
    """Create MODEL_ROOT if needed and write (then remove) a probe file in it; ModelRootNotWritable naming the reason otherwise."""
    root = Path(settings.MODEL_ROOT)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise ModelRootNotWritable(
            f"MODEL_ROOT {root} is not writable ({exc.strerror or exc}); nothing was computed. "
            "Fix the directory or its permissions (or set MODEL_ROOT) and start the job again."
        ) from exc
    return root


def make_read_only(directory: Path) -> None:
    """Drop the write bits of a finished bundle's files: served arrays are memory-mapped, so an edit in place must not be easy."""
    for path in Path(directory).iterdir():
        if path.is_file():
            path.chmod(path.stat().st_mode & 0o555)
