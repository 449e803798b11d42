"""Shared fixtures of the training tests: the CLI, tiny runs, a private cache folder."""
from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from gantrix.cli import train as train_cli



@pytest.fixture(scope="session")
def tiny():
    """Options of a tiny, fast 2-D run: 20 steps of 32 samples, pictures and checkpoints
    every 10 steps."""
    return ["--data", "ring8", "--steps", "20", "--batch-size", "32", "--sample-every", "10",
            "--checkpoint-every", "10", "--quiet"]


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """The digit classifier is cached in a test folder, never in the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANTRIX_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session")
def app():
    """A bare typer app with only the training commands, as `register` adds them."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def root():
        """gantrix (test app)"""

    train_cli.register(app)
    return app


@pytest.fixture
def cli(app):
    """``cli(*args)`` runs a command and returns the result (stderr kept apart)."""
    runner = CliRunner()

    def run(*args):
        return runner.invoke(app, [str(a) for a in args])

    return run
