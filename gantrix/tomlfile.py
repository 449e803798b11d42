"""Reading the TOML files users and plugins write (recipes, ``--config``, a run's
config.toml), with errors that name the file."""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from .errors import GantrixError


def load_toml(path: Path) -> dict[str, Any]:
    """The table in the TOML file at ``path``; `GantrixError` naming the file when it is
    missing or not valid TOML."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise GantrixError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise GantrixError(f"{path} is not valid TOML: {exc}") from None
