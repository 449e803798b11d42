"""gantrix export --format torchscript: the file loads with torch.jit.load where gantrix
cannot be imported, and one call maps latents (and labels) to what gantrix sample gives, as
images in [0, 1] or points; its metadata is read back."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

import gantrix
from gantrix import Trainer
from gantrix.export import read_metadata

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

#: run where ``import gantrix`` fails (isolated mode: no PYTHONPATH, no user site; the
#: editable install's path hook blocked by name)
ISOLATED = """
import sys
sys.modules["gantrix"] = None
try:
    import gantrix
except ImportError:
    pass
else:
    raise SystemExit("gantrix could be imported")
import json, torch
extra = {{"gantrix.json": ""}}
m = torch.jit.load({path!r}, _extra_files=extra)
z, labels = torch.load({inputs!r})
x = m(z, labels) if labels is not None else m(z)
torch.save((x, json.loads(extra["gantrix.json"])), {result!r})
"""


@pytest.mark.parametrize("name", ["ring8", "digits-cgan", "mnist-dcgan-ema"])
def test_torchscript_runs_without_gantrix(trained, cli, tmp_path, name):
    run = trained(name)
    out = tmp_path / "g.pt"
    result = cli("export", run, "--out", out)  # the format from the suffix
    assert result.exit_code == 0, result.output
    assert "(torchscript)" in result.stdout
    trainer = Trainer.load(run)
    n, seed = 12, 3
    labels = torch.tensor([4, 0, 9]).repeat(4) if trainer.conditional else None
    expected = trainer.sample(n, labels, seed=seed)
    if trainer.data.is_image:
        expected = (expected.clamp(-1, 1) + 1) / 2
    z = torch.randn(n, trainer.spec.latent_dim, generator=torch.Generator().manual_seed(seed))
    torch.save((z, labels), tmp_path / "in.pt")
    code = ISOLATED.format(path=str(out), inputs=str(tmp_path / "in.pt"),
                           result=str(tmp_path / "out.pt"))
    done = subprocess.run([sys.executable, "-I", "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    x, meta = torch.load(tmp_path / "out.pt")
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-6)
    if trainer.data.is_image:
        assert 0 <= x.min() and x.max() <= 1
    assert meta == read_metadata(out)
    assert meta["tricks"] == trainer.composition.specs()
    assert meta["conditional"] is trainer.conditional


def test_torchscript_takes_any_batch_size(trained, tmp_path):
    out = tmp_path / "g.pt"
    gantrix.export.export(trained("digits-cgan"), out, format="torchscript")
    m = torch.jit.load(str(out))
    g = torch.randn(7, read_metadata(out)["latent_dim"])
    assert m(g, torch.arange(7)).shape == (7, 1, 8, 8)
