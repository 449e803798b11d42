"""Checkpoints and other run files, written so that a crash never leaves a broken one.

Every file goes to a temporary name in the same folder, is flushed to disk (fsync), then
renamed over the old one (`os.replace`, atomic on POSIX): a run killed at any moment leaves
either the previous file or the new one. Checkpoints hold only tensors and plain containers
(RNG states are tensors), so they load with ``torch.load(weights_only=True)``, which runs no
code from the file.
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import GantrixError

FORMAT = "gantrix-checkpoint"
VERSION = 1


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save ``state`` (tensors and plain containers) with the format marker, atomically."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **state}, buffer)
    write_atomic(Path(path), buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint`, or raise a `GantrixError` that says
    why it is unusable (missing, truncated, not a gantrix checkpoint, a newer format)."""
    path = Path(path)
    if not path.is_file():
        raise GantrixError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise GantrixError(f"{path} is corrupt or not a checkpoint (cannot be loaded safely: "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise GantrixError(f"{path} is not a gantrix checkpoint")
    if state.get("version") != VERSION:
        raise GantrixError(f"{path} is a gantrix checkpoint of format version "
                           f"{state.get('version')!r}; this gantrix reads version {VERSION}")
    return state
