"""A run trained on an in-memory tensor keeps it in its folder (data.pt, written before the
config that records data = "tensor"), so it can be loaded, sampled, evaluated and resumed
like any run; a file that happens to be named ``tensor`` is never taken for it."""
from __future__ import annotations

import pytest
import torch

from gantrix import GantrixError, Trainer
from gantrix.checkpoint import load_checkpoint

SETTINGS = dict(batch_size=16, latent_dim=4, checkpoint_every=2, sample_every=0,
                progress=False, seed=3)


@pytest.fixture
def points():
    return torch.randn(256, 2, generator=torch.Generator().manual_seed(0)) * 2 + 1


@pytest.fixture
def decoy(tmp_path, monkeypatch):
    """A working directory holding a file named ``tensor`` (valid torch data, to tempt)."""
    monkeypatch.chdir(tmp_path)
    torch.save(torch.zeros(8, 2), tmp_path / "tensor")
    return tmp_path / "tensor"


def test_a_tensor_run_reopens_and_resumes_to_the_uninterrupted_weights(points, tmp_path,
                                                                       decoy):
    out = tmp_path / "t"
    Trainer("nonsaturating", points, out=out, steps=4, **SETTINGS).fit()
    assert 'data = "tensor"' in (out / "config.toml").read_text()
    assert torch.equal(torch.load(out / "data.pt", weights_only=True), points)
    loaded = Trainer.load(out)
    assert loaded.step == 4 and torch.equal(loaded.data.x, points)
    assert loaded.sample(10).shape == (10, 2)
    Trainer.resume(out, steps=6, progress=False).fit()
    whole = Trainer("nonsaturating", points, out=tmp_path / "whole", steps=6, **SETTINGS).fit()
    resumed = load_checkpoint(out / "checkpoint.pt")
    for key, value in whole.models.generator.state_dict().items():
        assert torch.equal(resumed["models"]["generator"][key], value), key


def test_the_cli_samples_evaluates_and_resumes_a_tensor_run(cli, points, tmp_path, decoy):
    out = tmp_path / "t"
    Trainer("nonsaturating", points, out=out, steps=2, **SETTINGS).fit()
    result = cli("sample", out, "--n", 5, "--out", tmp_path / "x.npy")
    assert result.exit_code == 0, result.output
    result = cli("eval", out)
    assert result.exit_code == 0 and result.stdout.startswith("step 2"), result.output
    result = cli("train", "--resume", out, "--steps", 4)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4


def test_the_record_tensor_is_never_a_file_in_the_working_directory(cli, points, tmp_path,
                                                                     decoy):
    out = tmp_path / "t"
    Trainer("nonsaturating", points, out=out, steps=2, **SETTINGS).fit()
    result = cli("train", "--config", out / "config.toml", "--out", tmp_path / "again")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert 'data "tensor" stands for an in-memory tensor' in result.stderr
    assert "--data RUN/data.pt" in result.stderr
    assert not (tmp_path / "again").exists()
    # the saved data retrains as a file
    result = cli("train", "--config", out / "config.toml", "--data", out / "data.pt",
                 "--steps", 2, "--out", tmp_path / "again")
    assert result.exit_code == 0, result.output


def test_a_tensor_run_without_its_data_says_how_to_reopen_it(points, tmp_path):
    out = tmp_path / "t"
    Trainer("nonsaturating", points, out=out, steps=2, **SETTINGS).fit()
    (out / "data.pt").unlink()  # as a run written before the data was kept
    with pytest.raises(GantrixError, match=r"in-memory tensor that is not saved in it .*"
                                           r"torch.save\(x, path\)"):
        Trainer.load(out)
    torch.save(points, out / "data.pt")
    assert Trainer.load(out).step == 2
    torch.save({"x": points}, out / "data.pt")
    with pytest.raises(GantrixError, match="holds a dict, not a tensor"):
        Trainer.load(out)
