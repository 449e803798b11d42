"""Fixtures for the CLI tests: ``gantrix(*args)`` runs a fresh app through typer's CliRunner;
``user_error`` checks a failure is reported as a user mistake. (``add_tricks`` and ``install``
come from tests/conftest.py.)"""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gantrix.cli.app import create_app


@pytest.fixture
def gantrix():
    """Run ``gantrix ARGS...`` in-process; returns typer's Result (stdout, stderr, exit_code)."""
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(create_app(), list(args))

    return run


@pytest.fixture
def user_error():
    """``user_error(result, *fragments)``: the command failed as a user mistake should: exit
    2, ``error: ...`` on stderr naming every fragment, nothing on stdout, no traceback."""

    def check(result, *fragments):
        assert result.exit_code == 2, result.output
        assert result.stdout == ""
        assert result.stderr.startswith("error: ")
        for fragment in fragments:
            assert fragment in result.stderr
        assert "Traceback" not in result.output

    return check
