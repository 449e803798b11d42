"""A user's image folder: prepared once into a checked, memory-mapped uint8 cache (hit,
miss, invalidation, damage), grey/RGB/RGBA, sub-folder labels, parallel decoding equal to
serial, unreadable files named or skipped and counted, ``--mirror``, memory-mapped tensor
files, and a resumed run on a folder equal to an uninterrupted one."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from gantrix import GantrixError, Trainer
from gantrix import folder as folder_mod
from gantrix.cli.app import create_app
from gantrix.data import Mirrored, TensorData, load_data
from gantrix.folder import prepare_folder


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each test prepares into its own cache folder."""
    monkeypatch.setenv("GANTRIX_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _image(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8), mode).save(path)


def _pattern(seed, size=(14, 10), channels=3):
    """A noise image (rows × columns × channels), different for every seed."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (*size, channels) if channels > 1 else size, dtype=np.uint8)


def _expected(path, size, mode):
    """The reference: PIL's own conversion and bicubic resize of the centre square (the
    default fit), scaled to [-1, 1]."""
    with Image.open(path) as im:
        w, h = im.size
        side = min(w, h)
        box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
        a = np.asarray(im.convert(mode).resize((size, size), Image.Resampling.BICUBIC, box=box),
                       np.float32)
    a = a[None] if mode == "L" else a.transpose(2, 0, 1)
    return torch.from_numpy(a / 127.5 - 1.0)


def _quiet(_line):
    pass


def test_rgb_folder_matches_pil_and_the_cache_is_reused(tmp_path):
    for i in range(5):
        _image(tmp_path / "imgs" / f"{i}.png", _pattern(i))
    data = load_data(tmp_path / "imgs", image_size=8)
    assert isinstance(data, TensorData) and data.shape == (3, 8, 8) and data.labels is None
    assert isinstance(data.x, np.memmap) and data.x.dtype == np.uint8  # uint8 on disk
    for i in range(5):
        assert torch.allclose(data.get(torch.tensor([i]))[0],
                              _expected(tmp_path / "imgs" / f"{i}.png", 8, "RGB"), atol=1e-6)
    first = prepare_folder(tmp_path / "imgs", 8, report=_quiet)
    assert first.seconds == 0.0  # the load above prepared it: a hit
    again = prepare_folder(tmp_path / "imgs", 8, report=_quiet)
    assert again.location == first.location and np.array_equal(again.images, first.images)
    other_size = prepare_folder(tmp_path / "imgs", 16, report=_quiet)
    assert other_size.seconds > 0 and other_size.location != first.location


def test_grey_folder_is_one_channel_and_rgba_mixed_with_grey_is_rgb(tmp_path):
    for i in range(3):
        _image(tmp_path / "grey" / f"{i}.png", _pattern(i, channels=1), "L")
    grey = load_data(tmp_path / "grey", image_size=8)
    assert grey.shape == (1, 8, 8)
    assert torch.allclose(grey.get(torch.tensor([1]))[0], _expected(tmp_path / "grey" / "1.png", 8, "L"),
                          atol=1e-6)
    _image(tmp_path / "mixed" / "a.png", _pattern(7, channels=1), "L")
    _image(tmp_path / "mixed" / "b.png", _pattern(8, channels=4), "RGBA")
    mixed = load_data(tmp_path / "mixed", image_size=8)
    assert mixed.shape == (3, 8, 8)  # one colour image makes the folder RGB, alpha dropped
    x = mixed.get()
    assert torch.allclose(x[0], _expected(tmp_path / "mixed" / "a.png", 8, "RGB"), atol=1e-6)
    assert torch.allclose(x[1], _expected(tmp_path / "mixed" / "b.png", 8, "RGB"), atol=1e-6)
    assert torch.equal(x[0][0], x[0][1])  # a grey image in an RGB folder: equal channels


def test_labels_from_sub_folders_only_when_every_image_has_one(tmp_path):
    for name, seed in [("zebra/a.png", 0), ("ant/b.png", 1), ("ant/c.png", 2)]:
        _image(tmp_path / "imgs" / name, _pattern(seed))
    data = load_data(tmp_path / "imgs", image_size=8)
    assert data.num_classes == 2 and data.labels.tolist() == [0, 0, 1]  # ant, ant, zebra
    _image(tmp_path / "imgs" / "loose.png", _pattern(3))
    assert load_data(tmp_path / "imgs", image_size=8).labels is None


def test_a_changed_folder_is_prepared_again(tmp_path):
    for i in range(3):
        _image(tmp_path / "imgs" / f"{i}.png", _pattern(i))
    before = prepare_folder(tmp_path / "imgs", 8, report=_quiet)
    _image(tmp_path / "imgs" / "1.png", _pattern(99, size=(12, 12)))  # new size and mtime
    changed = prepare_folder(tmp_path / "imgs", 8, report=_quiet)
    assert changed.seconds > 0 and changed.location != before.location
    assert not np.array_equal(changed.images[1], before.images[1])
    assert np.array_equal(changed.images[0], before.images[0])
    assert not before.location.exists()  # the old version's cache is removed
    _image(tmp_path / "imgs" / "3.png", _pattern(3))
    grown = prepare_folder(tmp_path / "imgs", 8, report=_quiet)
    assert len(grown.images) == 4
    other_size = prepare_folder(tmp_path / "imgs", 16, report=_quiet)
    assert grown.location.exists() and other_size.location.exists()  # sizes kept apart


def test_scratch_of_a_killed_preparation_is_removed(tmp_path, own_cache):
    _image(tmp_path / "imgs" / "0.png", _pattern(0))
    root = own_cache / "folders"
    dead = root / ".0123abcd.999999999.xyz"  # no such process
    alive = root / f".0123abcd.{os.getpid()}.xyz"
    for scratch in (dead, alive):
        scratch.mkdir(parents=True)
        (scratch / folder_mod.IMAGES_FILE).write_bytes(b"half")
    prepare_folder(tmp_path / "imgs", 8, report=_quiet)
    assert not dead.exists() and alive.exists()


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "garbage description",
                                    "no description (half-written)", "labels"])
def test_a_damaged_cache_is_prepared_again_not_trusted(tmp_path, damage):
    for i, name in enumerate(["a/0.png", "a/1.png", "b/2.png"]):
        _image(tmp_path / "imgs" / name, _pattern(i))
    good = prepare_folder(tmp_path / "imgs", 8, report=_quiet)
    expected, location = np.array(good.images), good.location
    del good
    images = location / folder_mod.IMAGES_FILE
    if damage == "flip a byte":
        raw = bytearray(images.read_bytes())
        raw[100] ^= 0xFF
        images.write_bytes(bytes(raw))
    elif damage == "truncate":
        images.write_bytes(images.read_bytes()[:-1])
    elif damage == "garbage description":
        (location / folder_mod.META_FILE).write_text("{not json")
    elif damage == "no description (half-written)":
        (location / folder_mod.META_FILE).unlink()
    else:
        np.save(location / folder_mod.LABELS_FILE, np.array([1, 1, 0]))
    lines = []
    rebuilt = prepare_folder(tmp_path / "imgs", 8, report=lines.append)
    assert any("damaged" in line and "preparing them again" in line for line in lines)
    assert rebuilt.seconds > 0 and np.array_equal(rebuilt.images, expected)
    assert rebuilt.labels.tolist() == [0, 0, 1]


def test_parallel_workers_prepare_exactly_what_one_process_does(tmp_path, monkeypatch):
    for i in range(40):
        _image(tmp_path / "imgs" / f"{i:02d}.{'png' if i % 2 else 'jpg'}", _pattern(i, size=(30, 20)))
    serial = np.array(prepare_folder(tmp_path / "imgs", 16, workers=1, report=_quiet).images)
    monkeypatch.setenv("GANTRIX_CACHE", str(tmp_path / "other-cache"))
    monkeypatch.setattr(folder_mod, "IN_PROCESS_BELOW", 8)
    monkeypatch.setattr(folder_mod, "CHUNK", 8)
    lines = []
    parallel = prepare_folder(tmp_path / "imgs", 16, workers=2, report=lines.append)
    assert "(2 workers)" in lines[0]
    assert np.array_equal(parallel.images, serial)


def _with_bad_files(folder):
    for i in range(4):
        _image(folder / f"{i}.png", _pattern(i))
    (folder / "notes.png").write_bytes(b"this is not a png")
    good = folder / "cut.jpg"
    Image.fromarray(_pattern(5, size=(64, 64))).save(good, quality=95)
    good.write_bytes(good.read_bytes()[:300])  # a header, then nothing: fails to decode


def test_unreadable_files_are_named_or_skipped_and_counted(tmp_path):
    _with_bad_files(tmp_path / "imgs")
    with pytest.raises(GantrixError, match=r"cannot read image .*(cut\.jpg|notes\.png).*--skip-bad-images"):
        load_data(tmp_path / "imgs", image_size=8)
    data = load_data(tmp_path / "imgs", image_size=8, skip_bad_images=True)
    assert len(data) == 4
    lines = []
    prepared = prepare_folder(tmp_path / "imgs", 8, skip_bad=True, report=lines.append)
    assert prepared.skipped == ["cut.jpg", "notes.png"] and prepared.seconds == 0.0
    assert lines == [f"2 unreadable image file(s) of {tmp_path / 'imgs'} left out "
                     "(--skip-bad-images), as when it was prepared: cut.jpg (Truncated File "
                     "Read); notes.png (Pillow does not recognise it as an image)"]
    # the cache remembers what it left out: without the flag it still refuses
    with pytest.raises(GantrixError, match="2 unreadable.*--skip-bad-images"):
        load_data(tmp_path / "imgs", image_size=8)


def test_only_unreadable_files_is_an_error(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"nope")
    with pytest.raises(GantrixError, match="none of the 1 images"):
        load_data(tmp_path / "imgs", skip_bad_images=True)


def test_an_unwritable_cache_still_trains(tmp_path, monkeypatch):
    for i in range(3):
        _image(tmp_path / "imgs" / f"{i}.png", _pattern(i))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("GANTRIX_CACHE", str(blocker))
    lines = []
    prepared = prepare_folder(tmp_path / "imgs", 8, report=lines.append)
    assert "cannot cache" in lines[0] and prepared.location is None
    assert prepared.images.shape == (3, 3, 8, 8) and int(prepared.images[2].sum()) > 0


def test_mirror_flips_about_half_of_a_batch_and_resumes(tmp_path):
    x = torch.arange(4.0).expand(256, 1, 4, 4).contiguous() + torch.arange(256.0)[:, None, None, None] * 10
    data = Mirrored(TensorData("t", x, seed=1), seed=1)
    batch, _ = data.next_batch(256)
    originals = {float(v[0, 0, 0]) // 10: v for v in x}
    flipped = 0
    for sample in batch:
        original = originals[float(sample.min()) // 10]
        assert torch.equal(sample, original) or torch.equal(sample, original.flip(-1))
        flipped += int(not torch.equal(sample, original))
    assert 96 <= flipped <= 160  # Binomial(256, 1/2): mean 128, sd 8
    state = data.state_dict()
    expected = [data.next_batch(10)[0] for _ in range(3)]
    again = Mirrored(TensorData("t", x, seed=7), seed=7)
    again.load_state_dict(state)
    assert all(torch.equal(e, again.next_batch(10)[0]) for e in expected)
    assert torch.equal(data.reference(5), TensorData("t", x).reference(5))  # no flips there


def test_mirror_needs_images():
    with pytest.raises(GantrixError, match="mirror flips images.*ring8"):
        load_data("ring8", mirror=True)


def test_npy_is_memory_mapped_and_uint8_stays_uint8(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (6, 3, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "img.npy", images)
    data = load_data(tmp_path / "img.npy")
    assert isinstance(data.x, np.memmap) and data.x.dtype == np.uint8
    assert torch.allclose(data.get(), torch.from_numpy(images).float() / 127.5 - 1.0)
    grey = np.random.default_rng(1).integers(0, 256, (5, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "grey.npy", grey)
    g = load_data(tmp_path / "grey.npy")
    assert g.shape == (1, 8, 8) and g.x.dtype == np.uint8
    torch.save({"x": torch.from_numpy(images), "labels": torch.arange(6) % 2}, tmp_path / "img.pt")
    pt = load_data(tmp_path / "img.pt")
    assert pt.x.dtype == torch.uint8 and pt.num_classes == 2
    assert torch.equal(pt.get(), data.get())
    points = np.random.default_rng(2).normal(size=(7, 2))  # float64, served as float32
    np.save(tmp_path / "pts.npy", points)
    batch, _ = load_data(tmp_path / "pts.npy").next_batch(3)
    assert batch.dtype == torch.float32


def test_a_resumed_run_on_a_folder_equals_an_uninterrupted_one(tmp_path):
    for i in range(10):
        _image(tmp_path / "imgs" / ("ab"[i % 2]) / f"{i}.png", _pattern(i))
    options = dict(image_size=8, batch_size=4, width=4, latent_dim=4, sample_every=0, log_every=2,
                   mirror=True)
    whole = Trainer("nonsaturating", tmp_path / "imgs", out=tmp_path / "whole", steps=6, **options).fit()
    Trainer("nonsaturating", tmp_path / "imgs", out=tmp_path / "half", steps=3, **options).fit()
    resumed = Trainer.resume(tmp_path / "half", steps=6)
    assert resumed.settings.mirror and isinstance(resumed.data, Mirrored)
    resumed.fit()
    for (name, a), (_, b) in zip(whole.models.generator.state_dict().items(),
                                 resumed.models.generator.state_dict().items()):
        assert torch.equal(a, b), name
    assert torch.equal(whole.sample(4), resumed.sample(4))


def test_cli_data_prepare_and_train_flags(tmp_path):
    _with_bad_files(tmp_path / "imgs")
    runner = CliRunner()
    app = create_app()
    result = runner.invoke(app, ["data", "prepare", str(tmp_path / "imgs"), "--image-size", "8"])
    assert result.exit_code == 2 and "cannot read image" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["data", "prepare", str(tmp_path / "imgs"), "--image-size", "8",
                                 "--skip-bad-images"])
    assert result.exit_code == 0, result.output
    assert "prepared: 4 images, RGB 8×8 (centre-cropped), no classes" in result.output
    assert ("skipped 2 unreadable: cut.jpg (Truncated File Read); notes.png (Pillow does not "
            "recognise it as an image)") in result.output
    result = runner.invoke(app, ["data", "prepare", str(tmp_path / "imgs"), "--image-size", "8",
                                 "--skip-bad-images"])
    assert "already prepared: 4 images" in result.output
    for args, message in [([str(tmp_path / "nowhere")], "is not a folder"),
                          ([str(tmp_path / "imgs"), "--image-size", "12"], "power of two"),
                          ([str(tmp_path / "imgs"), "--workers", "0"], "at least 1")]:
        result = runner.invoke(app, ["data", "prepare", *args])
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "-t", "nonsaturating", "--data", str(tmp_path / "imgs"),
                                 "--image-size", "8", "--steps", "2", "--batch-size", "2",
                                 "--width", "4", "--mirror", "--skip-bad-images", "--out", str(out),
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    config = (out / "config.toml").read_text()
    assert "mirror = true" in config and "skip_bad_images = true" in config
    result = runner.invoke(app, ["train", "--resume", str(out), "--mirror"])
    assert result.exit_code == 2 and "drop --mirror" in result.output
    result = runner.invoke(app, ["train", "--resume", str(out), "--steps", "3", "--quiet"])
    assert result.exit_code == 0, result.output

