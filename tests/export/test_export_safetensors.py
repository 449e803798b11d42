"""gantrix export --format safetensors and gantrix.load_generator: the rebuilt generator
samples exactly what gantrix sample samples, with the run's metadata, without any trick
plugin; bad input is a clear error."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import gantrix
from gantrix import Trainer
from gantrix.errors import GantrixError
from gantrix.export import read_metadata


@pytest.mark.parametrize("name", ["ring8", "digits", "digits-cgan", "mnist-dcgan-ema"])
def test_loaded_generator_samples_what_gantrix_sample_samples(trained, cli, tmp_path, name):
    run = trained(name)
    out = tmp_path / "g.safetensors"
    result = cli("export", run, "--out", out)
    assert result.exit_code == 0, result.output
    g = gantrix.load_generator(out)
    npy = tmp_path / "s.npy"
    assert cli("sample", run, "--n", 37, "--seed", 5, "--out", npy).exit_code == 0
    assert torch.equal(g.sample(37, seed=5), torch.from_numpy(np.load(npy)))
    trainer = Trainer.load(run)
    if trainer.conditional:
        assert torch.equal(g.sample(9, labels=[3, 1], seed=2), trainer.sample(9, [3, 1], seed=2))
    assert not g.training


def test_metadata_read_back(trained, tmp_path):
    run = trained("mnist-dcgan-ema")
    out = tmp_path / "g.safetensors"
    gantrix.export.export(run, out)
    meta = gantrix.load_generator(out).metadata
    assert meta == read_metadata(out)
    assert meta["latent_dim"] == Trainer.load(run).spec.latent_dim
    assert meta["prior"] == {"name": "normal", "mean": 0.0, "std": 1.0}
    assert meta["shape"] == [1, 32, 32] and meta["kind"] == "image"
    assert meta["range"] == [-1.0, 1.0] and "127.5" in meta["to_pixels"]
    assert meta["tricks"] == ["nonsaturating", "dcgan", "ema"]
    assert meta["averaged"] is True and meta["step"] == 3
    assert meta["gantrix_version"] == gantrix.__version__
    assert meta["conditional"] is False and meta["num_classes"] is None


def test_conditional_metadata_and_uniform_prior(trained, tmp_path):
    meta = gantrix.export.export(trained("digits-cgan"), tmp_path / "c.safetensors")
    assert meta["conditional"] is True and meta["num_classes"] == 10
    assert meta["class_names"] == []  # digits names no classes: indices
    run = tmp_path / "uniform"
    Trainer(["nonsaturating", "uniform-latent:bound=2"], "ring8", out=run, steps=2,
            batch_size=16, progress=False).fit()
    gantrix.export.export(run, tmp_path / "u.safetensors")
    g = gantrix.load_generator(tmp_path / "u.safetensors")
    assert g.metadata["prior"] == {"name": "uniform", "bound": 2.0}
    assert g.metadata["kind"] == "points" and g.metadata["range"] is None
    assert torch.equal(g.sample(600, seed=1), Trainer.load(run).sample(600, seed=1))


def test_no_ema_exports_the_trained_weights(trained, tmp_path):
    run = trained("mnist-dcgan-ema")
    gantrix.export.export(run, tmp_path / "raw.safetensors", ema=False)
    gantrix.export.export(run, tmp_path / "ema.safetensors")
    raw = gantrix.load_generator(tmp_path / "raw.safetensors")
    assert raw.metadata["averaged"] is False
    z = torch.randn(3, raw.metadata["latent_dim"], generator=torch.Generator().manual_seed(0))
    trainer = Trainer.load(run)
    with torch.no_grad():
        assert torch.equal(raw(z), trainer.models.generator.eval()(z).float())
        assert not torch.equal(raw(z), gantrix.load_generator(tmp_path / "ema.safetensors")(z))


def test_loads_where_no_trick_plugin_can_be_imported(trained, tmp_path):
    run = trained("digits-cgan")
    out = tmp_path / "g.safetensors"
    gantrix.export.export(run, out)
    expected = Trainer.load(run).sample(20, seed=4)
    code = textwrap.dedent(f"""
        import sys
        sys.modules["gantrix.plugins"] = None  # no trick plugin, built-in or installed
        import numpy as np, gantrix, gantrix.registry
        g = gantrix.load_generator({str(out)!r})
        np.save({str(tmp_path / 'x.npy')!r}, g.sample(20, seed=4).numpy())
        assert not any(m.startswith("gantrix.plugins") for m in sys.modules if sys.modules[m])
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert torch.equal(torch.from_numpy(np.load(tmp_path / "x.npy")), expected)


def test_the_safetensors_package_reads_the_file(trained, tmp_path):
    st = pytest.importorskip("safetensors.torch", reason="the safetensors package is not "
                             "installed (gantrix writes the format itself)")
    from safetensors import safe_open

    out = tmp_path / "g.safetensors"
    gantrix.export.export(trained("ring8"), out)
    tensors = st.load_file(str(out))
    mine = dict(gantrix.load_generator(out).module.state_dict())
    assert set(tensors) == set(mine)
    assert all(torch.equal(tensors[k], mine[k]) for k in mine)
    with safe_open(str(out), "pt") as f:
        assert json.loads(f.metadata()["gantrix"])["data"] == "ring8"


def test_bad_input_is_a_clear_error(trained, cli, user_error, tmp_path):
    run = trained("ring8")
    user_error(cli("export", run, "--out", tmp_path / "g.x", "--format", "pickle"),
               "unknown --format 'pickle'", "safetensors, torchscript, onnx")
    with pytest.raises(GantrixError, match="unknown export format 'zip'"):
        gantrix.export.export(run, tmp_path / "g.zip", format="zip")
    # the suffix names the format, so the file can be read back (load_generator reads by it)
    user_error(cli("export", run, "--out", tmp_path / "g.xyz"), "--out", "g.xyz",
               "*.safetensors (safetensors), *.pt (torchscript), *.onnx (onnx)")
    user_error(cli("export", run, "--out", tmp_path / "g.bin", "--format", "torchscript"),
               "a torchscript export is named *.pt", "write g.pt")
    with pytest.raises(GantrixError, match="a safetensors export is named"):
        gantrix.export.export(run, tmp_path / "g.pt", format="safetensors")
    assert not list(tmp_path.glob("g.*"))
    out = tmp_path / "g.safetensors"
    out.write_bytes(b"old")
    user_error(cli("export", run, "--out", out), "exists", "--force")
    assert out.read_bytes() == b"old"
    assert cli("export", run, "--out", out, "--force").exit_code == 0
    gantrix.load_generator(out)
    empty = tmp_path / "empty"
    empty.mkdir()
    user_error(cli("export", empty, "--out", tmp_path / "e.safetensors"), "not a gantrix run")
    (empty / "config.toml").write_text((run / "config.toml").read_text())
    user_error(cli("export", empty, "--out", tmp_path / "e.safetensors"), "no checkpoint")
    user_error(cli("export", run, "--out", tmp_path / "b.safetensors", "--checkpoint", "first"),
               "'last' or 'best'")
    user_error(cli("export", run, "--out", tmp_path / "nowhere" / "g.safetensors"),
               "does not exist")
    with pytest.raises(GantrixError, match="no exported generator"):
        gantrix.load_generator(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\xff" * 20)
    with pytest.raises(GantrixError, match="not a safetensors file"):
        gantrix.load_generator(bad)


def test_python_side_sampling_logic_is_an_error_naming_the_trick(cli, user_error, tmp_path):
    run = tmp_path / "info"
    Trainer(["nonsaturating", "infogan"], "digits", out=run, steps=2, batch_size=16,
            progress=False).fit()
    for fmt, suffix in (("safetensors", ".safetensors"), ("torchscript", ".pt")):
        user_error(cli("export", run, "--out", tmp_path / f"g{suffix}", "--format", fmt),
                   "infogan", "gantrix_condition", "codes", "no export format")
    assert not list(tmp_path.glob("g.*"))


def test_best_checkpoint_exports_best_pts_generator(cli, tmp_path):
    run = tmp_path / "evaluated"
    Trainer(["nonsaturating", "ema"], "ring8", out=run, steps=4, batch_size=16, eval_every=2,
            eval_n=300, progress=False).fit()
    out = tmp_path / "best.safetensors"
    result = cli("export", run, "--checkpoint", "best", "--out", out)
    assert result.exit_code == 0, result.output
    g = gantrix.load_generator(out)
    best = Trainer.load(run, checkpoint="best")
    assert g.metadata["checkpoint"] == "best" and g.metadata["step"] == best.best["step"]
    assert torch.equal(g.sample(30, seed=8), best.sample(30, seed=8))
