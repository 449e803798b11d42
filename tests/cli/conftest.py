"""Fixtures for the CLI tests: ``gantrix(*args)`` runs a fresh app through typer's CliRunner;
``add_tricks`` puts test-local tricks in the catalogue; ``install`` installs a distribution
for real (a ``*.dist-info`` with ``entry_points.txt`` on ``sys.path``)."""
from __future__ import annotations

import sys
import textwrap

import pytest
from typer.testing import CliRunner

from gantrix import registry
from gantrix.cli.app import create_app


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: installs a package with pip and runs subprocesses (~20 s)")


@pytest.fixture
def gantrix():
    """Run ``gantrix ARGS...`` in-process; returns typer's Result (stdout, stderr, exit_code)."""
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(create_app(), list(args))

    return run


@pytest.fixture
def add_tricks(monkeypatch):
    def add(*classes):
        tricks = registry.catalogue().tricks
        for cls in classes:
            monkeypatch.setattr(cls, "plugin", "tests")
            monkeypatch.setitem(tricks, cls.name, cls)

    return add


@pytest.fixture
def install(tmp_path, monkeypatch):
    """``install(dist, {module: source}, {entry point: module})``; the registry is reloaded."""
    monkeypatch.delenv("GANTRIX_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("GANTRIX_DISABLE_PLUGINS", raising=False)
    modules: list[str] = []

    def install(dist: str, sources: dict[str, str], entry_points: dict[str, str]) -> None:
        root = tmp_path / f"site-{dist}"
        info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir(parents=True)
        for module, source in sources.items():
            (root / f"{module}.py").write_text(textwrap.dedent(source))
            modules.append(module)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[gantrix]\n{lines}")
        monkeypatch.syspath_prepend(str(root))
        registry.reset()

    yield install
    for module in modules:
        sys.modules.pop(module, None)
    registry.reset()


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
