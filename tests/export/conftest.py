"""Fixtures of the export tests: small trained runs (once per session) and the CLI."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gantrix import Trainer
from gantrix.cli.app import create_app

#: the runs the issue names: ring8, digits conditional (cgan) and not, mnist dcgan with EMA
RUNS = {
    "ring8": (["nonsaturating"], "ring8"),
    "digits": (["nonsaturating"], "digits"),
    "digits-cgan": (["nonsaturating", "cgan"], "digits"),
    "mnist-dcgan-ema": (["nonsaturating", "dcgan", "ema"], "mnist"),
}
SMALL = {"steps": 3, "batch_size": 16, "progress": False, "seed": 7}


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """``trained(name)``: the folder of a small run of `RUNS` (trained on first use)."""
    root = tmp_path_factory.mktemp("runs")
    done = {}

    def get(name: str):
        if name not in done:
            recipe, data = RUNS[name]
            Trainer(recipe, data, out=root / name, **SMALL).fit()
            done[name] = root / name
        return done[name]

    return get


@pytest.fixture
def cli():
    """Run ``gantrix ARGS...`` in-process through typer's CliRunner."""
    runner = CliRunner()
    return lambda *args: runner.invoke(create_app(), [str(a) for a in args])


@pytest.fixture
def user_error():
    """``user_error(result, *fragments)``: exit 2, ``error: ...`` naming every fragment."""

    def check(result, *fragments):
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error: "), result.stderr
        for fragment in fragments:
            assert fragment in result.stderr, result.stderr
        assert "Traceback" not in result.output

    return check
