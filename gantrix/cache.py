"""Where gantrix keeps what it computes once and reuses: the scoring classifiers and the
prepared image folders. Nothing in it is precious; a missing or damaged entry is rebuilt."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$GANTRIX_CACHE``, else ``$XDG_CACHE_HOME/gantrix``, else ``~/.cache/gantrix``."""
    if os.environ.get("GANTRIX_CACHE"):
        return Path(os.environ["GANTRIX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gantrix"
