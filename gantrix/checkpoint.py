"""Checkpoints, written so that a crash never leaves a broken one.

They go through the one atomic writer, `gantrix.atomic.write_atomic` (a temporary file,
fsync, then a rename over the old one), which the other run files use too; it stays
importable from here. Checkpoints hold only tensors and plain containers (RNG states are
tensors), so they load with ``torch.load(weights_only=True)``, which runs no code from the
file.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from .atomic import write_atomic
from .errors import GantrixError

__all__ = ["FORMAT", "VERSION", "load_checkpoint", "save_checkpoint", "write_atomic"]

FORMAT = "gantrix-checkpoint"
VERSION = 1


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
