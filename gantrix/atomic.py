"""Files written so that a crash never leaves a broken one: the one writer of gantrix.

A file is written under a temporary name in its own folder, flushed to disk (fsync), then
renamed over the old one (`os.replace`, atomic on POSIX), and the folder is synced so that the
rename itself lasts: a process killed at any moment leaves either the previous file or the
new one, never half of it. The file gets the permissions any new file gets (0666 less the
umask), not the private 0600 of a temporary file, so that collaborators can read a run. Checkpoints, run files, plots, metric caches and prepared image
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
    prefix, tmp = f".{path.name}.", None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and (exc.filename is None or
                                         Path(exc.filename).name.startswith(prefix)):
            # a full disk names no file, a read-only folder the temporary one: name ``path``
            exc.filename, exc.filename2 = str(path), None
        raise
    fsync_dir(path.parent)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably."""
    with atomic_file(path) as f:
        f.write(data)


def umask() -> int:
    """The process's umask, read without changing it where Linux says it (``os.umask`` sets
    it to read it: for an instant, another thread's new file would get the wrong mode)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
