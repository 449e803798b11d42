"""What is not a regular image file, in an image folder or given as ``--data``: FIFOs and
devices (never opened, so nothing hangs: every such test runs under a deadline), dangling
and looping links, a link back to a parent folder, a decompression bomb. Each is an
unreadable image named in the error, or skipped and named with --skip-bad-images. And a
tampered cache description (valid JSON but not an object, keys missing, wrong types, a
FIFO) is prepared again, never a crash."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gantrix import GantrixError
from gantrix import folder as folder_mod
from gantrix.cli.app import create_app
from gantrix.data import load_data
from gantrix.folder import prepare_folder


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANTRIX_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


class Hung(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds=20):
    """Fail (instead of hanging forever) when the block takes longer than ``seconds``: a
    blocking open of a FIFO is interrupted by the alarm's exception (PEP 475)."""
    def expire(*_):
        raise Hung(f"still running after {seconds} s: something waited on a special file")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _images(folder, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((12, 12, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")


def _bomb(path):
    """A 45-byte PNG whose header claims 20000×20000 pixels (no pixel data at all)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def _quiet(_line):
    pass


@pytest.mark.parametrize("make, name, reason", [
    (lambda d: os.mkfifo(d / "b.png"), "b.png", "a FIFO, not a regular file"),
    (lambda d: os.symlink("/dev/zero", d / "z.png"), "z.png", "a character device"),
    (lambda d: os.symlink(d / "gone.png", d / "dangling.png"), "dangling.png",
     "a symbolic link to"),
    (lambda d: os.symlink("loop.png", d / "loop.png"), "loop.png", "a symbolic link that loops"),
    (lambda d: _bomb(d / "bomb.png"), "bomb.png", "decompression bomb"),
])
def test_a_special_or_unreadable_file_is_named_or_skipped(tmp_path, make, name, reason):
    folder = tmp_path / "imgs"
    _images(folder)
    make(folder)
    with deadline():
        with pytest.raises(GantrixError, match=f"cannot read image .*{name}.*{reason}"):
            load_data(folder, image_size=8)
        lines = []
        prepared = prepare_folder(folder, 8, skip_bad=True, report=lines.append)
    assert prepared.skipped == [name] and len(prepared.images) == 3
    assert reason in prepared.reasons[name]
    assert any(f"skipped 1 unreadable: {name} (" in line for line in lines)
    meta = json.loads((prepared.location / folder_mod.META_FILE).read_text())
    assert list(meta["skipped"]) == [name]  # the full list, with the reasons
    with deadline():  # the cache remembers it: refused again by name without the flag
        with pytest.raises(GantrixError, match=f"{name}: .*{reason}.*--skip-bad-images"):
            load_data(folder, image_size=8)


def test_a_link_back_to_a_parent_folder_is_walked_once(tmp_path):
    folder = tmp_path / "imgs"
    _images(folder / "a")
    os.symlink(folder, folder / "a" / "up")
    os.symlink(folder / "a", folder / "again")  # the same class folder under another name
    lines = []
    with deadline():
        prepared = prepare_folder(folder, 8, report=lines.append)
    assert len(prepared.images) == 3 and prepared.classes == ["a"]
    assert dict(prepared.ignored) == {"a/up": "a link to a folder listed already",
                                      "again": "a link to a folder listed already"}
    assert any(line.startswith("ignored 2 file(s)") for line in lines)


def test_a_linked_sub_folder_is_read(tmp_path):
    _images(tmp_path / "elsewhere" / "cats")
    _images(tmp_path / "imgs" / "dogs", n=2)
    os.symlink(tmp_path / "elsewhere" / "cats", tmp_path / "imgs" / "cats")
    prepared = prepare_folder(tmp_path / "imgs", 8, report=_quiet)
    assert prepared.classes == ["cats", "dogs"] and prepared.labels.tolist() == [0, 0, 0, 1, 1]


@pytest.mark.parametrize("suffix", [".npy", ".pt"])
def test_a_fifo_or_device_as_data_is_refused_before_any_run_folder(tmp_path, suffix):
    fifo = tmp_path / f"x{suffix}"
    os.mkfifo(fifo)
    device = tmp_path / f"zero{suffix}"
    os.symlink("/dev/zero", device)
    runner = CliRunner()
    for path, kind in [(fifo, "a FIFO"), (device, "a character device")]:
        out = tmp_path / "run"
        with deadline():
            result = runner.invoke(create_app(), ["train", "-t", "nonsaturating", "--data", str(path),
                                                  "--out", str(out), "--quiet"])
        assert result.exit_code == 2, result.output
        assert f"cannot read data {path}: it is {kind}" in result.output
        assert "Traceback" not in result.output and not out.exists()


def test_dangling_and_looping_links_as_data_are_named(tmp_path):
    os.symlink(tmp_path / "gone.npy", tmp_path / "dangling.npy")
    os.symlink("loop.npy", tmp_path / "loop.npy")
    with pytest.raises(GantrixError, match="dangling.npy: a symbolic link to .*gone.npy, which does not exist"):
        load_data(tmp_path / "dangling.npy")
    with pytest.raises(GantrixError, match="loop.npy: a symbolic link that loops"):
        load_data(tmp_path / "loop.npy")


def test_data_prepare_with_a_fifo_through_the_cli(tmp_path):
    folder = tmp_path / "imgs"
    _images(folder)
    os.mkfifo(folder / "b.png")
    runner = CliRunner()
    with deadline():
        result = runner.invoke(create_app(), ["data", "prepare", str(folder), "--image-size", "8"])
    assert result.exit_code == 2 and "b.png: a FIFO" in result.output
    with deadline():
        result = runner.invoke(create_app(), ["data", "prepare", str(folder), "--image-size", "8",
                                              "--skip-bad-images"])
    assert result.exit_code == 0, result.output
    assert "skipped 1 unreadable: b.png (a FIFO, not a regular file)" in result.stdout


def test_a_file_replaced_by_a_fifo_after_listing_is_not_waited_on(tmp_path, monkeypatch):
    """Between listing and decoding a file may change: the decoder opens only regular files."""
    folder = tmp_path / "imgs"
    _images(folder)
    listed = folder_mod.list_images

    def then_swap(path):
        listing = listed(path)
        (folder / "1.png").unlink()
        os.mkfifo(folder / "1.png")
        return listing

    monkeypatch.setattr(folder_mod, "list_images", then_swap)
    with deadline():
        prepared = prepare_folder(folder, 8, skip_bad=True, report=_quiet)
    assert prepared.skipped == ["1.png"] and "a FIFO" in prepared.reasons["1.png"]


# --------------------------------------------------------------------------- the cache


def _tamper_meta(location, change):
    path = location / folder_mod.META_FILE
    meta = json.loads(path.read_text())
    path.unlink()
    result = change(meta, path)
    if result is not None:
        path.write_text(result if isinstance(result, str) else json.dumps(result))


@pytest.mark.parametrize("change", [
    lambda m, p: [1, 2, 3],
    lambda m, p: "a string",
    lambda m, p: 5,
    lambda m, p: None,
    lambda m, p: "null",
    lambda m, p: {k: v for k, v in m.items() if k != "crc32"},
    lambda m, p: {k: v for k, v in m.items() if k != "skipped"},
    lambda m, p: {**m, "shape": "abc"},
    lambda m, p: {**m, "shape": [3, 3, 8]},
    lambda m, p: {**m, "shape": [3, 3, 8, True]},
    lambda m, p: {**m, "crc32": "123"},
    lambda m, p: {**m, "classes": 5},
    lambda m, p: {**m, "classes": ["a"]},  # two classes' labels
    lambda m, p: {**m, "skipped": ["x.png"]},
    lambda m, p: {**m, "fit": "zoom"},
    lambda m, p: "[" * 100_000 + "]" * 100_000,  # deep enough to overflow the parser
    lambda m, p: os.mkfifo(p),
    lambda m, p: p.mkdir(),
], ids=["list", "string", "number", "missing", "null", "no crc32", "no skipped", "shape text",
        "shape short", "shape bool", "crc text", "classes number", "classes short",
        "skipped list", "fit unknown", "deep", "fifo", "folder"])
def test_a_tampered_description_is_prepared_again(tmp_path, change):
    for i, name in enumerate(["a/0.png", "a/1.png", "b/2.png"]):
        (tmp_path / "imgs" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((12, 12, 3), 60 * i, np.uint8)).save(tmp_path / "imgs" / name)
    good = prepare_folder(tmp_path / "imgs", 8, report=_quiet)
    expected, location = np.array(good.images), good.location
    del good
    _tamper_meta(location, change)
    lines = []
    with deadline():
        rebuilt = prepare_folder(tmp_path / "imgs", 8, report=lines.append)
    assert any("damaged" in line and "preparing them again" in line for line in lines), lines
    assert rebuilt.seconds > 0 and np.array_equal(rebuilt.images, expected)
    assert rebuilt.classes == ["a", "b"] and rebuilt.labels.tolist() == [0, 0, 1]


def test_a_cache_entry_that_is_a_file_is_replaced(tmp_path):
    _images(tmp_path / "imgs")
    good = prepare_folder(tmp_path / "imgs", 8, report=_quiet)
    location = good.location
    del good
    shutil.rmtree(location)
    location.write_text("not a folder")
    rebuilt = prepare_folder(tmp_path / "imgs", 8, report=_quiet)
    assert rebuilt.location == location and location.is_dir() and len(rebuilt.images) == 3


def test_another_entrys_broken_description_does_not_stop_preparing(tmp_path, own_cache):
    _images(tmp_path / "imgs")
    for i, text in enumerate(["[1]", '{"shape": 5, "folder": 3}', "{broken"]):
        (own_cache / "folders" / f"other{i}").mkdir(parents=True)
        (own_cache / "folders" / f"other{i}" / folder_mod.META_FILE).write_text(text)
    os.mkfifo(own_cache / "folders" / "other0" / "labels.npy")
    with deadline():
        prepared = prepare_folder(tmp_path / "imgs", 8, report=_quiet)
    assert len(prepared.images) == 3
    assert all((own_cache / "folders" / f"other{i}").exists() for i in range(3))  # not ours


def test_worker_processes_skip_special_files_too(tmp_path, monkeypatch):
    folder = tmp_path / "imgs"
    _images(folder, n=6)
    os.mkfifo(folder / "b.png")
    _bomb(folder / "bomb.png")
    monkeypatch.setattr(folder_mod, "IN_PROCESS_BELOW", 2)
    monkeypatch.setattr(folder_mod, "CHUNK", 2)
    lines = []
    with deadline(120):
        prepared = prepare_folder(folder, 8, skip_bad=True, workers=2, report=lines.append)
    assert "(2 workers)" in lines[0]
    assert prepared.skipped == ["b.png", "bomb.png"] and len(prepared.images) == 6
