"""Reading the TOML files users and plugins write (recipes, ``--config``, a run's
config.toml), with errors that name the file."""
from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any

from .errors import GantrixError


def load_toml(path: Path) -> dict[str, Any]:
    """The table in the TOML file at ``path``; `GantrixError` naming the file when it is
    missing, a folder or any other file that is not a regular one (a FIFO would hang the
    read), unreadable, not UTF-8 text (as TOML must be) or not valid TOML."""
    try:
        # opened without blocking: opening a FIFO for reading waits for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise GantrixError(f"{path} is a folder, not a TOML file")
            if not stat.S_ISREG(mode):
                raise GantrixError(f"{path} is not a regular file, so not a TOML file")
            with os.fdopen(fd, "rb", closefd=False) as f:
                return tomllib.load(f)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise GantrixError(f"config file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise GantrixError(f"{path} is not UTF-8 text (a TOML file must be): byte "
                           f"{exc.object[exc.start:exc.start + 1]!r} at offset {exc.start} "
                           f"cannot be decoded") from None
    except tomllib.TOMLDecodeError as exc:
        raise GantrixError(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise GantrixError(f"cannot read {path}: {exc.strerror or exc}") from None
