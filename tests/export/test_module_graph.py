"""The architecture a safetensors export describes (gantrix.module_graph): a module torch.fx
cannot see through is an error naming the formats that can hold it; a file whose graph
names anything but tensor operators is refused when loaded."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import gantrix
from gantrix import Trainer
from gantrix import safetensors_io
from gantrix.errors import GantrixError
from gantrix.export import export, export_trainer

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


class ScaledByWidth(nn.Module):
    """A generator fx cannot trace (Python's max of a traced size), TorchScript can."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, z):
        return self.net(z) * (2.0 / max(z.shape[1], 1))


def test_a_module_fx_cannot_trace_names_the_formats_that_can(tmp_path):
    trainer = Trainer(["nonsaturating"], "ring8", generator=ScaledByWidth(), latent_dim=4,
                      steps=1, batch_size=8, progress=False).fit()
    with pytest.raises(GantrixError, match="safetensors cannot hold this generator "
                       r"\(ScaledByWidth\).*torchscript, onnx"):
        export_trainer(trainer, tmp_path / "g.safetensors")
    assert not (tmp_path / "g.safetensors").exists()
    export_trainer(trainer, tmp_path / "g.pt", format="torchscript")
    z = torch.randn(9, 4)
    with torch.no_grad():
        expected = trainer.sampler.eval()(z) * trainer.data.scale
    torch.testing.assert_close(torch.jit.load(str(tmp_path / "g.pt"))(z), expected)


def _tampered(tmp_path, trained, change):
    out = tmp_path / "g.safetensors"
    export(trained("ring8"), out)
    tensors, meta = safetensors_io.load(out)
    data = json.loads(meta["gantrix"])
    change(data["architecture"])
    safetensors_io.save(out, tensors, {"gantrix": json.dumps(data)})
    return out


@pytest.mark.parametrize("change", [
    lambda a: a["nodes"].insert(1, ["s", "call_function", ["torch", "save"], [{"node": "z"}, "x"], {}]),
    lambda a: a["nodes"].insert(1, ["s", "call_method", "numpy", [{"node": "z"}], {}]),
    lambda a: a["nodes"].insert(1, ["s", "call_function", ["builtins", "getattr"],
                                    [{"node": "z"}, "__class__"], {}]),
    lambda a: a["nodes"].insert(1, ["s", "call_function", ["os", "system"], ["true"], {}]),
    lambda a: a["nodes"].__setitem__(0, ["z", "placeholder", "z):\n import os\n(", [], {}]),
    lambda a: a["layers"].__setitem__("module.net.0", ["Module", {}]),
], ids=["torch.save", "numpy", "dunder", "os.system", "injected-code", "unknown-layer"])
def test_a_graph_naming_anything_else_is_refused(trained, tmp_path, change):
    out = _tampered(tmp_path, trained, change)
    with pytest.raises(GantrixError, match="is not a generator gantrix exported"):
        gantrix.load_generator(out)
