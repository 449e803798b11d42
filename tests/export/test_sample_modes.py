"""gantrix sample --truncation, --interpolate, --grid and a folder of numbered PNGs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gantrix import Trainer
from gantrix.sample_modes import interpolation, png_bytes
from gantrix.sampling import CHUNK


def _npy(cli, run, tmp_path, *args):
    out = tmp_path / "x.npy"
    result = cli("sample", run, "--out", out, *args)
    assert result.exit_code == 0, result.output
    return torch.from_numpy(np.load(out))


def test_truncation_one_is_the_identity_and_zero_the_mean_image(trained, cli, tmp_path):
    run = trained("mnist-dcgan-ema")
    trainer = Trainer.load(run)
    plain = trainer.sample(6, seed=2)
    assert torch.equal(_npy(cli, run, tmp_path, "--n", 6, "--seed", 2, "--truncation", 1), plain)
    mean = _npy(cli, run, tmp_path, "--n", 6, "--seed", 2, "--truncation", 0)
    with torch.no_grad():
        image = trainer.sampler.eval()(torch.zeros(6, trainer.spec.latent_dim)).float()
    torch.testing.assert_close(mean, image, rtol=0, atol=1e-6)
    torch.testing.assert_close(mean, mean[:1].expand_as(mean), rtol=0, atol=1e-6)
    half = _npy(cli, run, tmp_path, "--n", 6, "--seed", 2, "--truncation", 0.5)
    assert not torch.equal(half, plain) and not torch.equal(half, mean)


def test_truncation_pulls_a_tricks_prior_toward_its_mean(tmp_path, cli):
    run = tmp_path / "u"
    Trainer(["nonsaturating", "uniform-latent:bound=2"], "ring8", out=run, steps=2,
            batch_size=16, progress=False).fit()
    x = _npy(cli, run, tmp_path, "--n", 5, "--truncation", 0)
    # one point: the generator's image of the prior's (estimated) mean
    torch.testing.assert_close(x, x[:1].expand_as(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["ring8", "digits-cgan"])
def test_interpolation_endpoints_are_the_endpoint_samples(trained, cli, tmp_path, name):
    run = trained(name)
    trainer = Trainer.load(run)
    labels = ["2", "5", "7"] if trainer.conditional else []
    args = ("--labels", "2,5,7") if labels else ()
    x = _npy(cli, run, tmp_path, "--n", 3, "--seed", 4, "--interpolate", 5, *args)
    assert x.shape == (3, 5, *trainer.data.shape)
    assert torch.equal(x[:, 0], trainer.sample(3, labels or None, seed=4))
    rng = torch.Generator().manual_seed(4)
    torch.randn(3, trainer.spec.latent_dim, generator=rng)  # the start latents
    end = torch.randn(3, trainer.spec.latent_dim, generator=rng)
    kwargs = {"labels": torch.tensor([2, 5, 7])} if labels else {}
    with torch.no_grad():
        last = trainer.sampler.eval()(end, **kwargs).float() * trainer.data.scale
    assert torch.equal(x[:, -1], last)
    assert not torch.equal(x[:, 2], x[:, 0]) and not torch.equal(x[:, 2], x[:, -1])


def test_spherical_steps_keep_the_latents_norm_between_the_ends(trained):
    trainer = Trainer.load(trained("ring8"))
    seen = []
    generator = trainer.sampler
    hook = generator.register_forward_hook(lambda m, args, out: seen.append(args[0].clone()))
    try:
        interpolation(trainer, 4, 3, seed=1)
    finally:
        hook.remove()
    start, middle, end = (z.norm(dim=1) for z in seen)
    assert torch.all(middle >= torch.minimum(start, end) - 1e-5)  # a chord would shrink it
    assert not torch.allclose(seen[1], (seen[0] + seen[2]) / 2)  # not the chord's midpoint


def test_grid_has_a_row_per_class(trained, cli, tmp_path):
    run = trained("digits-cgan")
    trainer = Trainer.load(run)
    every = _npy(cli, run, tmp_path, "--n", 4, "--grid", "--seed", 3)
    assert every.shape == (10, 4, 1, 8, 8)
    assert torch.equal(every.flatten(0, 1),
                       trainer.sample(40, torch.arange(10).repeat_interleave(4), seed=3))
    two = _npy(cli, run, tmp_path, "--n", 4, "--grid", "--labels", "3,1", "--seed", 3)
    assert two.shape == (2, 4, 1, 8, 8)
    png = tmp_path / "grid.png"
    assert cli("sample", run, "--n", 4, "--grid", "--out", png).exit_code == 0
    assert Image.open(png).size[0] < Image.open(png).size[1] * 2  # 4 columns, 10 rows


def test_numbered_pngs_in_a_folder_resume(trained, cli, tmp_path):
    run = trained("digits")
    folder = tmp_path / "pngs"
    result = cli("sample", run, "--n", 7, "--seed", 1, "--out", f"{folder}/")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"{i:06d}.png" for i in range(7)]
    expected = Trainer.load(run).sample(9, seed=1)
    assert all((folder / f"{i:06d}.png").read_bytes() == png_bytes(expected[i]) for i in range(7))
    pixels = np.asarray(Image.open(folder / "000003.png"))
    assert pixels.shape == (8, 8) and pixels.dtype == np.uint8
    (folder / "000002.png").unlink()
    kept = (folder / "000004.png").stat().st_mtime_ns
    result = cli("sample", run, "--n", 9, "--seed", 1, "--out", folder)  # an existing folder
    assert result.exit_code == 0, result.output
    assert "3 samples" in result.stdout and "6 already there" in result.stdout
    assert (folder / "000004.png").stat().st_mtime_ns == kept
    assert all((folder / f"{i:06d}.png").read_bytes() == png_bytes(expected[i]) for i in range(9))


def test_numbered_pngs_skip_finished_blocks(trained, tmp_path):
    from gantrix.sample_modes import write_numbered

    trainer = Trainer.load(trained("digits"))
    folder = tmp_path / "many"
    assert write_numbered(trainer, folder, CHUNK + 2, progress=False) == (CHUNK + 2, 0)
    blocks = []
    real = trainer._sampler._generate
    trainer._sampler._generate = lambda z, inputs: blocks.append(len(z)) or real(z, inputs)
    (folder / f"{CHUNK:06d}.png").unlink()
    assert write_numbered(trainer, folder, CHUNK + 2, progress=False) == (1, CHUNK + 1)
    assert blocks == [2]  # the full first block was not generated again


def test_bad_sample_options_are_clear_errors(trained, cli, user_error, tmp_path):
    run = trained("ring8")
    out = tmp_path / "x.npy"
    for psi in ("1.5", "-0.1", "nan"):
        user_error(cli("sample", run, "--out", out, "--truncation", psi), "psi must be in [0, 1]")
    user_error(cli("sample", run, "--out", out, "--interpolate", 1), "2 to 256")
    user_error(cli("sample", run, "--out", out, "--interpolate", 3, "--grid"), "choose one")
    user_error(cli("sample", run, "--out", out, "--grid"), "not conditional")
    user_error(cli("sample", run, "--out", f"{tmp_path}/d/", "--interpolate", 3), "folder")
    user_error(cli("sample", run, "--out", f"{tmp_path}/d/"), "need image data", ".npy")
    user_error(cli("sample", run, "--out", tmp_path / "x.txt"), "DIR/")
    user_error(cli("sample", trained("digits-cgan"), "--out", out, "--grid", "--labels", "12"),
               "label 12 is out of range")
    assert not out.exists() and not (tmp_path / "d").exists()
