"""What a run folder holds, as file name → SHA-256 of its bytes, for tests that check a
refused command left a folder untouched.

Digests, not bytes: a failing `==` on megabytes of checkpoint makes pytest diff them, and
with `CI` set it does not truncate that diff; it ran for over an hour in CI once."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path


def digests(folder: Path, skip: Callable[[str], bool] = lambda name: False,
            mtimes: bool = False) -> dict[str, str]:
    """Each plain file of ``folder`` but those ``skip`` names; with ``mtimes`` the digest
    also changes when a file is rewritten with the same bytes."""
    state = {}
    for path in sorted(folder.iterdir()):
        if skip(path.name) or not path.is_file():
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        state[path.name] = f"{digest} {path.stat().st_mtime_ns}" if mtimes else digest
    return state
