"""Non-square images are made square by their centre square (DCGAN's CelebA practice), or
padded, or squashed (``--image-fit``): a circle on a 178×218 picture (CelebA's size) stays
a circle; the fit is part of the cache key and of the run's config.toml."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gantrix import GantrixError, Trainer
from gantrix.cli.app import create_app
from gantrix.folder import prepare_folder


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANTRIX_CACHE", str(tmp_path / "cache"))


def _circle(path, width=178, height=218, radius=70):
    """A white disc centred on a black width × height picture."""
    y, x = np.mgrid[:height, :width]
    disc = ((x - (width - 1) / 2) ** 2 + (y - (height - 1) / 2) ** 2) <= radius ** 2
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((disc * 255).astype(np.uint8), "L").save(path)


def _extents(image):
    """The disc's width (along the middle row) and height (along the middle column)."""
    bright = image > 127
    middle = image.shape[0] // 2
    return int(bright[middle - 1:middle + 1].any(0).sum()), int(bright[:, middle - 1:middle + 1].any(1).sum())


def _quiet(_line):
    pass


def test_crop_keeps_a_circle_round_and_symmetric(tmp_path):
    _circle(tmp_path / "imgs" / "c.png")
    image = np.asarray(prepare_folder(tmp_path / "imgs", 64, report=_quiet).images[0, 0], np.int16)
    assert np.abs(image - image[:, ::-1]).max() <= 1  # left-right
    assert np.abs(image - image[::-1, :]).max() <= 1  # top-bottom: the crop is centred
    assert np.abs(image - image.T).max() <= 8  # a circle, not an ellipse (up to the rounding
    # between the resize's two passes, a few levels on the edge)
    width, height = _extents(image)
    assert width == height == pytest.approx(64 * 140 / 178, abs=2)


def test_squash_makes_the_ellipse_the_old_behaviour_made(tmp_path):
    _circle(tmp_path / "imgs" / "c.png")
    image = np.asarray(prepare_folder(tmp_path / "imgs", 64, fit="squash", report=_quiet).images[0, 0])
    width, height = _extents(image)
    assert width == pytest.approx(64 * 140 / 178, abs=2)
    assert height == pytest.approx(64 * 140 / 218, abs=2) and height < width - 6


def test_pad_keeps_the_whole_picture_with_black_borders(tmp_path):
    _circle(tmp_path / "imgs" / "c.png")
    image = np.asarray(prepare_folder(tmp_path / "imgs", 64, fit="pad", report=_quiet).images[0, 0], np.int16)
    inner = round(178 * 64 / 218)  # 52 columns of picture, 6 black on each side
    border = (64 - inner) // 2
    assert image[:, :border].max() == 0 and image[:, border + inner:].max() == 0
    assert np.abs(image - image[::-1, :]).max() <= 1
    width, height = _extents(image)
    assert abs(width - height) <= 2 and height == pytest.approx(64 * 140 / 218, abs=2)


def test_each_fit_has_its_own_cache_entry(tmp_path):
    _circle(tmp_path / "imgs" / "c.png")
    crop = prepare_folder(tmp_path / "imgs", 16, report=_quiet)
    pad = prepare_folder(tmp_path / "imgs", 16, fit="pad", report=_quiet)
    assert pad.seconds > 0 and pad.location != crop.location and pad.fit == "pad"
    assert not np.array_equal(np.asarray(pad.images), np.asarray(crop.images))
    again = prepare_folder(tmp_path / "imgs", 16, report=_quiet)
    assert again.seconds == 0.0 and again.location == crop.location  # kept beside pad's
    with pytest.raises(GantrixError, match="image fit must be one of crop, pad, squash"):
        prepare_folder(tmp_path / "imgs", 16, fit="zoom", report=_quiet)


def test_the_fit_is_a_setting_recorded_in_config_and_kept_on_resume(tmp_path):
    for i in range(4):
        _circle(tmp_path / "imgs" / f"{i}.png", radius=30 + 10 * i)
    options = dict(image_size=8, batch_size=2, width=4, latent_dim=4, sample_every=0, progress=False)
    Trainer("nonsaturating", str(tmp_path / "imgs"), out=tmp_path / "run", steps=1,
            image_fit="pad", **options).fit()
    assert 'image_fit = "pad"' in (tmp_path / "run" / "config.toml").read_text()
    resumed = Trainer.resume(tmp_path / "run", steps=2)
    assert resumed.settings.image_fit == "pad"
    padded = np.asarray(prepare_folder(tmp_path / "imgs", 8, fit="pad", report=_quiet).images)
    assert np.array_equal(resumed.data.get().add(1).mul(127.5).round().numpy().astype(np.uint8), padded)


def test_the_cli_takes_image_fit_and_refuses_others(tmp_path):
    _circle(tmp_path / "imgs" / "c.png")
    runner = CliRunner()
    result = runner.invoke(create_app(), ["data", "prepare", str(tmp_path / "imgs"), "--image-size", "8",
                                          "--image-fit", "squash"])
    assert result.exit_code == 0 and "grey 8×8 (squashed)" in result.stdout, result.output
    result = runner.invoke(create_app(), ["data", "prepare", str(tmp_path / "imgs"), "--image-fit", "zoom"])
    assert result.exit_code == 2 and "--image-fit must be one of crop, pad, squash" in result.output
    result = runner.invoke(create_app(), ["train", "-t", "nonsaturating", "--data", str(tmp_path / "imgs"),
                                          "--image-fit", "zoom", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "zoom" in result.output and "crop" in result.output
    assert not (tmp_path / "run").exists()


def test_the_real_features_cache_is_keyed_by_the_fit(tmp_path):
    """FID's cached real features of a folder prepared with one fit are not reused for
    another (the images differ)."""
    from gantrix.data import load_data
    from gantrix.features import data_key

    _circle(tmp_path / "faces" / "a.png")
    _circle(tmp_path / "faces" / "b.png", width=200)
    folder = str(tmp_path / "faces")
    keys = {fit: data_key(load_data(folder, image_size=8, image_fit=fit), folder)
            for fit in ("crop", "pad", "squash")}
    assert len(set(keys.values())) == 3
    assert keys["crop"] == data_key(load_data(folder, image_size=8), folder)


def test_a_run_recorded_before_the_fit_existed_keeps_its_squashed_images(tmp_path):
    """config.toml without image_fit: the run was trained on squashed images; it resumes,
    samples and evaluates on those, not on the centre crops of the new default."""
    import re

    _circle(tmp_path / "faces" / "a.png")
    _circle(tmp_path / "faces" / "b.png", width=200)
    run = tmp_path / "run"
    Trainer(["nonsaturating"], str(tmp_path / "faces"), out=run, steps=2, image_size=8,
            batch_size=2, sample_every=0, image_fit="squash", progress=False).fit()
    config = run / "config.toml"
    config.write_text(re.sub(r"(?m)^image_fit = .*\n", "", config.read_text()))
    assert "image_fit" not in config.read_text()
    assert Trainer.load(run).settings.image_fit == "squash"
    assert Trainer.resume(run, progress=False).settings.image_fit == "squash"
