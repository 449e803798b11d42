"""Every image type Pillow reads is read (WebP, BMP, GIF, TIFF, 16-bit PNG, ...); other
files are named as ignored, with the reason; skipped unreadable files are named (the first
few) with where the full list is; an error while the progress bar is drawn starts on a line
of its own."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gantrix import GantrixError
from gantrix import folder as folder_mod
from gantrix.cli.app import create_app
from gantrix.folder import image_suffixes, prepare_folder


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANTRIX_CACHE", str(tmp_path / "cache"))


def _quiet(_line):
    pass


@pytest.mark.parametrize("suffix", [".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".tga",
                                    ".JPEG", ".PNG"])
def test_each_common_type_is_read(tmp_path, suffix):
    grey = np.full((16, 16), 200, np.uint8)
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "imgs" / f"a{suffix}")
    prepared = prepare_folder(tmp_path / "imgs", 8, report=_quiet)
    assert len(prepared.images) == 1 and prepared.images.shape[1] in (1, 3)
    assert np.abs(np.asarray(prepared.images, np.int16) - 200).max() <= 3  # lossy ones too


def test_every_suffix_pillow_decodes_is_listed():
    readable, cannot = image_suffixes()
    registered = Image.registered_extensions()
    assert {".png", ".jpg", ".webp", ".bmp", ".gif", ".tiff"} <= readable
    assert all(registered[s] in Image.OPEN for s in readable)
    assert ".pdf" not in readable and ".pdf" not in cannot  # Pillow only writes PDF
    assert ".h5" in cannot and "does not decode" in cannot[".h5"]  # identified only (a stub)


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    (tmp_path / "imgs").mkdir()
    levels = (np.arange(16, dtype=np.uint16) * 4369).reshape(4, 4)  # 0 to 65535
    for suffix in (".png", ".tif"):
        Image.fromarray(np.kron(levels, np.ones((4, 4), np.uint16))).save(tmp_path / "imgs" / f"a{suffix}")
    prepared = prepare_folder(tmp_path / "imgs", 16, report=_quiet)
    assert prepared.images.shape == (2, 1, 16, 16)
    for image in prepared.images:
        blocks = np.asarray(image[0])[::4, ::4].astype(np.int32)
        assert np.abs(blocks - np.rint(levels / 257)).max() <= 2  # 0, 17, ..., 255


def test_other_files_are_named_as_ignored(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8, 3), 9 * i, np.uint8)).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("hello")
    (folder / "data.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    lines = []
    prepared = prepare_folder(folder, 8, report=lines.append)
    assert dict(prepared.ignored) == {"notes.txt": "not a type of image Pillow reads",
                                      "data.h5": "Pillow identifies HDF5 files but does not decode them"}
    assert lines[-1].startswith("ignored 2 file(s) that are not images: data.h5 (Pillow")
    result = CliRunner().invoke(create_app(), ["data", "prepare", str(folder), "--image-size", "8"])
    assert result.exit_code == 0 and "ignored 2 file(s) that are not images" in result.stdout


def test_a_folder_of_no_images_names_what_it_found(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.txt").write_text("x")
    with pytest.raises(GantrixError, match=r"no images in .*\.png.*found only 1 other file\(s\): a.txt"):
        prepare_folder(tmp_path / "imgs", 8, report=_quiet)


def test_skipped_files_are_named_with_where_the_full_list_is(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "good.png")
    for i in range(5):
        (folder / f"bad{i}.png").write_bytes(b"not an image %d" % i)
    lines = []
    prepared = prepare_folder(folder, 8, skip_bad=True, report=lines.append)
    meta = prepared.location / folder_mod.META_FILE
    assert lines[-1].endswith(
        "skipped 5 unreadable: bad0.png (Pillow does not recognise it as an image); bad1.png "
        "(Pillow does not recognise it as an image); bad2.png (Pillow does not recognise it as an "
        f"image); and 2 more (all listed in {meta})")
    assert sorted(json.loads(meta.read_text())["skipped"]) == [f"bad{i}.png" for i in range(5)]
    result = CliRunner().invoke(create_app(), ["data", "prepare", str(folder), "--image-size", "8",
                                               "--skip-bad-images"])
    assert f"and 2 more (all listed in {meta})" in result.stdout


def test_an_error_during_the_progress_bar_starts_on_its_own_line(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((64, 64, 3), i, np.uint8)).save(folder / f"{i}.png")
    whole = (folder / "2.png").read_bytes()
    (folder / "2.png").write_bytes(whole[:len(whole) // 2])  # its header reads, its pixels do not
    with pytest.raises(GantrixError, match="2.png"):
        prepare_folder(folder, 8, report=_quiet, progress=True)
    drawn = capsys.readouterr().err
    assert "preparing" in drawn and drawn.endswith("\n")  # the bar's line is ended
