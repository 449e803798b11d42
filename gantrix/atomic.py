"""Files written so that a crash never leaves a broken one: the one writer of gantrix.

A file is written under a temporary name in its own folder, flushed to disk (fsync), then
renamed over the old one (`os.replace`, atomic on POSIX), and the folder is synced so that the
rename itself lasts: a process killed at any moment leaves either the previous file or the
new one, never half of it. Checkpoints, run files, plots, metric caches and prepared image
folders all go through here.

This module imports no torch (`gantrix.folder`'s worker processes import it).
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write, which appears at ``path`` complete when the block ends (and
    not at all when it raises): for data written piece by piece, too large to hold at once."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably."""
    with atomic_file(path) as f:
        f.write(data)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename in ``folder`` durable (where the platform allows opening a folder)."""
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
