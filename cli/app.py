"""The ``gantrix`` command line: built-in commands, then every plugin's commands.

The CLI only parses, calls the library and prints. A user mistake (`gantrix.GantrixError`)
prints its message and exits with status 2, never a traceback.
"""
from __future__ import annotations

import sys

import typer

from gantrix.errors import GantrixError


def create_app() -> typer.Typer:
    """A fresh app with the built-in commands and every plugin's commands."""
    from gantrix.registry import catalogue

    from . import browse

    app = typer.Typer(
        name="gantrix",
        help="GAN training tricks as composable plugins.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    browse.register(app)
    try:
        from . import train
    except ImportError:  # the training commands are optional until they land
        train = None
    if train is not None:
        train.register(app)
    catalogue().pm.hook.gantrix_register_commands(app=app)
    return app


def main() -> None:
    """Console entry point."""
    try:
        app = create_app()
        app(standalone_mode=True)
    except GantrixError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
