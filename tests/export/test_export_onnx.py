"""gantrix export --format onnx (the onnx extra): onnxruntime gives the PyTorch generator's
outputs within float tolerance; without the onnx package, a clear error."""
from __future__ import annotations

import sys

import pytest
import torch

import gantrix
from gantrix import Trainer
from gantrix.export import read_metadata


@pytest.mark.parametrize("name", ["ring8", "digits-cgan", "mnist-dcgan-ema"])
def test_onnxruntime_gives_what_gantrix_sample_gives(trained, cli, tmp_path, name):
    pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install "
                        "'gantrix[onnx]')")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip "
                              "install 'gantrix[onnx]')")
    run = trained(name)
    out = tmp_path / "g.onnx"
    result = cli("export", run, "--out", out)
    assert result.exit_code == 0, result.output
    trainer = Trainer.load(run)
    n, seed = 11, 6  # another batch size than the export traced
    labels = torch.arange(n) % 10 if trainer.conditional else None
    expected = trainer.sample(n, labels, seed=seed)
    if trainer.data.is_image:
        expected = (expected.clamp(-1, 1) + 1) / 2
    z = torch.randn(n, trainer.spec.latent_dim, generator=torch.Generator().manual_seed(seed))
    feed = {"z": z.numpy()}
    if labels is not None:
        feed["labels"] = labels.numpy()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sorted(i.name for i in session.get_inputs()) == sorted(feed)
    (x,) = session.run(["x"], feed)
    torch.testing.assert_close(torch.from_numpy(x), expected, rtol=1e-4, atol=1e-5)
    meta = read_metadata(out)
    assert meta["tricks"] == trainer.composition.specs() and meta["latent_dim"] == z.shape[1]


def test_without_the_onnx_package_a_clear_error(trained, cli, user_error, tmp_path,
                                                 monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as where the extra is not installed
    user_error(cli("export", trained("ring8"), "--out", tmp_path / "g.onnx"),
               "pip install 'gantrix[onnx]'", "safetensors, torchscript")
    assert not (tmp_path / "g.onnx").exists()
    with pytest.raises(gantrix.GantrixError, match="onnx package"):
        read_metadata(tmp_path / "g.onnx")
