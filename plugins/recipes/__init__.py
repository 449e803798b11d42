"""The built-in recipes: each ``*.toml`` file beside this module is one paper's full setup,
registered under its file name (``wgan-gp.toml`` → ``wgan-gp``)."""
from __future__ import annotations

from pathlib import Path

from gantrix import hookimpl


@hookimpl
def gantrix_register_recipes(register):
    for path in sorted(Path(__file__).parent.glob("*.toml")):
        register(path.stem, path)
