"""The third-party example, ``examples/gantrix-softplus-margin``, installed for real with pip
into a temporary folder and used from fresh processes, as a user would."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

EXAMPLE = Path(__file__).parents[2] / "examples" / "gantrix-softplus-margin"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The example installed (no deps, no build isolation: offline) into its own folder."""
    tmp = tmp_path_factory.mktemp("example")
    source = shutil.copytree(EXAMPLE, tmp / "src", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(source)],
                   check=True, capture_output=True, text=True)
    return target


# Runs many CLI invocations in one fresh process (each with a freshly loaded registry under
# its own environment) and prints their results as JSON: a process costs seconds, a call not.
DRIVER = """
import json, os, sys
from typer.testing import CliRunner
from gantrix import registry
from gantrix.cli.app import create_app

results = []
for env, args in json.loads(sys.argv[1]):
    for key in ("GANTRIX_LOAD_PLUGINS", "GANTRIX_DISABLE_PLUGINS"):
        os.environ.pop(key, None)
    os.environ.update(env)
    registry.reset()
    r = CliRunner().invoke(create_app(), args)
    results.append({"code": r.exit_code, "out": r.stdout, "err": r.stderr})
print(json.dumps(results))
"""

OFF = [{"GANTRIX_LOAD_PLUGINS": ""}, {"GANTRIX_DISABLE_PLUGINS": "softplus-margin"},
       {"GANTRIX_DISABLE_PLUGINS": "gantrix-softplus-margin"}]

CALLS = {
    "list": ({}, ["list", "--kind", "loss"]),
    "plugins": ({}, ["plugins"]),
    "check": ({}, ["check", "softplus-margin:margin=0.5", "drift-penalty", "adam"]),
    "check-two-losses": ({}, ["check", "softplus-margin", "wgan"]),
    "demo": ({}, ["margin-demo", "-m", "0", "-m", "1.5", "--batch", "16", "--seed", "3"]),
    **{f"list-off-{i}": (env, ["list"]) for i, env in enumerate(OFF)},
    **{f"demo-off-{i}": (env, ["margin-demo"]) for i, env in enumerate(OFF)},
}


def run(site, *args, code=None):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GANTRIX_")}
    environ["PYTHONPATH"] = str(site)
    command = [sys.executable, *(("-c", code) if code else ("-m", "gantrix.cli")), *args]
    return subprocess.run(command, capture_output=True, text=True, env=environ, timeout=120)


@pytest.fixture(scope="module")
def calls(site):
    result = run(site, json.dumps(list(CALLS.values())), code=DRIVER)
    assert result.returncode == 0, result.stderr
    return dict(zip(CALLS, json.loads(result.stdout.splitlines()[-1])))


def test_listed_with_its_distribution(calls):
    assert calls["list"]["code"] == 0, calls["list"]
    [row] = [line.split() for line in calls["list"]["out"].splitlines() if line.startswith("softplus-margin ")]
    assert row[:3] == ["softplus-margin", "loss", "gantrix-softplus-margin"]
    [row] = [line.split(None, 3) for line in calls["plugins"]["out"].splitlines()
             if line.startswith("softplus-margin ")]
    assert row == ["softplus-margin", "gantrix-softplus-margin", "0.1.0",
                   "register_commands, register_tricks"]


def test_composes_in_check(calls):
    assert calls["check"]["code"] == 0, calls["check"]
    assert calls["check"]["out"].splitlines() == [
        "tricks: softplus-margin:margin=0.5 drift-penalty adam",
        "models: not checked: the model checks need --data (what gantrix train will get: ring8, "
        "digits, an image folder, ...)",
        "ok: 0 errors, 0 warnings, 0 notes"]
    assert calls["check-two-losses"]["code"] == 1


def test_make_gives_the_documented_losses(site):
    code = (
        "import json, torch, gantrix\n"
        "from types import SimpleNamespace\n"
        "r = torch.tensor([[2.0, -1.0], [0.5, 3.0]], dtype=torch.float64)\n"
        "f = torch.tensor([[-2.0, 1.0], [0.0, -0.5]], dtype=torch.float64)\n"
        "m = gantrix.make('softplus-margin', margin=0.75)\n"
        "m0, ns = gantrix.make('softplus-margin', margin=0), gantrix.make('nonsaturating')\n"
        "drift = gantrix.make('drift-penalty', epsilon=0.01)\n"
        "print(json.dumps({'d': m.d_loss(r, f).item(), 'g': m.g_loss(None, f).item(),\n"
        "  'd0': m0.d_loss(r, f).item() - ns.d_loss(r, f).item(),\n"
        "  'g0': m0.g_loss(None, f).item() - ns.g_loss(None, f).item(),\n"
        "  'drift': drift.d_term(SimpleNamespace(real_logits=r)).item(),\n"
        "  'specs': gantrix.Recipe('softplus-margin:0.75', 'drift-penalty').compose().specs()}))\n"
    )
    result = run(site, code=code)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    r = torch.tensor([2.0, -1.0, 0.5, 3.0], dtype=torch.float64)
    f = torch.tensor([-2.0, 1.0, 0.0, -0.5], dtype=torch.float64)
    log1pexp = lambda x: torch.log(1 + torch.exp(x))  # noqa: E731 — softplus written out
    assert got["d"] == pytest.approx((log1pexp(0.75 - r).mean() + log1pexp(0.75 + f).mean()).item(), rel=1e-12)
    assert got["g"] == pytest.approx(log1pexp(0.75 - f).mean().item(), rel=1e-12)
    assert got["d0"] == pytest.approx(0, abs=1e-12) and got["g0"] == pytest.approx(0, abs=1e-12)
    assert got["drift"] == pytest.approx(0.01 * (r ** 2).mean().item(), rel=1e-12)
    assert got["specs"] == ["softplus-margin:margin=0.75", "drift-penalty"]


def test_its_command_runs(calls):
    demo = calls["demo"]
    assert demo["code"] == 0, demo
    rng = torch.Generator().manual_seed(3)
    real, fake = torch.randn(16, generator=rng) + 1, torch.randn(16, generator=rng) - 1
    lines = demo["out"].splitlines()
    assert lines[0].split() == ["margin", "D", "loss", "G", "loss"]
    for line, m in zip(lines[1:], (0.0, 1.5), strict=True):
        margin, d, g = map(float, line.split())
        assert margin == m
        assert d == pytest.approx((F.softplus(m - real).mean() + F.softplus(m + fake).mean()).item(), abs=1e-4)
        assert g == pytest.approx(F.softplus(m - fake).mean().item(), abs=1e-4)


def test_the_console_command_and_its_user_error(site):
    """Through ``python -m gantrix.cli`` itself: a bad margin is a user error, not a traceback."""
    result = run(site, "margin-demo", "-m", "-1")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "error: softplus-margin: parameter 'margin' got -1.0; allowed: finite float in [0, inf)\n"


@pytest.mark.parametrize("i", range(len(OFF)), ids=["=".join(*e.items()) for e in OFF])
def test_switched_off_by_the_environment(calls, i):
    listing = calls[f"list-off-{i}"]
    assert listing["code"] == 0, listing
    assert "softplus-margin" not in listing["out"] and "wgan" in listing["out"]
    assert calls[f"demo-off-{i}"]["code"] == 2  # its command is gone too
