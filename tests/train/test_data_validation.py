"""Data is checked when it is opened, before a run writes anything: byte order, dtype,
shape, channel count, finiteness (all of small data, a sample of large data), meta,
quantized and sparse tensors, labels; the suffix in any case; and a misspelt built-in name
gets a suggestion."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gantrix import GantrixError, Trainer
from gantrix import data as data_mod
from gantrix.cli.app import create_app
from gantrix.data import TensorData, load_data
from gantrix.plan import open_data


def _save(path, x):
    if path.suffix.lower() == ".npy":
        np.save(path, x)
    else:
        torch.save(x, path)
    return path


def test_big_endian_arrays_train_as_their_values(tmp_path):
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(">f4")
    data = load_data(_save(tmp_path / "big.npy", x))
    assert torch.equal(data.get(), torch.from_numpy(x.astype("<f4")))
    images = np.random.default_rng(1).integers(0, 65535, (6, 1, 8, 8)).astype(">u2")
    img = load_data(_save(tmp_path / "img.npy", images))
    assert torch.equal(img.get(), torch.from_numpy(images.astype(np.float32)))


@pytest.mark.parametrize("x, fragment", [
    (np.zeros((4, 2), bool), "bool samples"),
    (np.zeros((4, 2), np.complex64), "complex samples"),
    (np.array([["a", "b"]] * 4), "text samples"),
    (np.zeros((4, 2), np.longdouble), "save them as float32"),
    (torch.zeros(4, 2, dtype=torch.bool), "bool samples"),
    (torch.zeros(4, 2, dtype=torch.complex64), "complex samples"),
    (np.zeros((4, 0), np.float32), "no features"),
    (torch.zeros(4, 0), "no features"),
], ids=["np bool", "np complex", "np text", "float128", "pt bool", "pt complex", "np (N, 0)",
        "pt (N, 0)"])
def test_unusable_dtypes_and_shapes_are_named(tmp_path, x, fragment):
    if isinstance(x, np.ndarray) and x.dtype == np.longdouble and x.dtype.itemsize <= 8:
        pytest.skip("long double is float64 on this platform")
    path = _save(tmp_path / ("d.npy" if isinstance(x, np.ndarray) else "d.pt"), x)
    with pytest.raises(GantrixError, match=fragment) as caught:
        load_data(path)
    assert "expected a non-empty tensor" not in str(caught.value)  # not blamed on the shape


@pytest.mark.parametrize("channels", [2, 5, 6, 7])
def test_images_need_1_3_or_4_channels(tmp_path, channels):
    path = _save(tmp_path / "c.npy", np.zeros((4, channels, 8, 8), np.uint8))
    with pytest.raises(GantrixError, match=f"1 \\(grey\\), 3 \\(RGB\\) or 4 \\(RGBA\\) channels, got {channels}"):
        load_data(path)


def test_four_channel_images_train_and_draw(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (8, 4, 8, 8), dtype=np.uint8)
    trainer = Trainer("nonsaturating", str(_save(tmp_path / "rgba.npy", x)), out=tmp_path / "run",
                      steps=1, batch_size=4, width=4, latent_dim=4, sample_every=1, progress=False)
    trainer.fit()
    pictures = sorted((tmp_path / "run").rglob("*.png"))
    assert pictures
    from PIL import Image
    assert any(Image.open(p).mode == "RGBA" for p in pictures)


def test_nan_and_inf_are_counted_with_the_first_index(tmp_path):
    x = np.zeros((10, 3), np.float32)
    x[4, 1] = np.nan
    x[7, 0] = np.inf
    x[9, 2] = -np.inf
    with pytest.raises(GantrixError, match=r"3 value\(s\) are NaN, infinite .* the first at index "
                                           r"\(4, 1\) \(sample 4\)"):
        load_data(_save(tmp_path / "nan.npy", x))
    big = np.zeros((5, 2))
    big[2, 0] = 1e300  # finite in float64, infinite in the float32 training computes in
    with pytest.raises(GantrixError, match=r"1 value\(s\) .*beyond float32's range.*\(2, 0\)"):
        load_data(_save(tmp_path / "big.npy", big))
    t = torch.zeros(6, 1, 8, 8)
    t[5, 0, 3, 2] = float("nan")
    with pytest.raises(GantrixError, match=r"index \(5, 0, 3, 2\)"):
        Trainer("nonsaturating", t, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_large_data_is_checked_by_a_sample_that_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod, "FINITE_CHECK_BYTES", 100 * 8)  # 100 rows of 2 float32
    monkeypatch.setattr(data_mod, "CHECK_BLOCK_BYTES", 16 * 8)
    x = np.zeros((1000, 2), np.float32)
    x[999, 1] = np.nan  # the last row is always among those checked
    path = _save(tmp_path / "x.npy", x)
    with pytest.raises(GantrixError, match=r"in the 100 of 1,000 samples checked \(spread evenly.*"
                                           r"checked by sample.*index \(999, 1\)"):
        load_data(path)
    with pytest.raises(GantrixError, match=r"in the 100 of 1,000 samples checked.*\(999, 1\)"):
        TensorData("t", torch.from_numpy(x))  # a tensor in memory is sampled alike
    x[999, 1] = 0
    x[500, 0] = np.nan  # between two checked rows: the sample misses it, as documented
    assert len(load_data(_save(path, x))) == 1000
    monkeypatch.setattr(data_mod, "FINITE_CHECK_BYTES", 1 << 28)
    with pytest.raises(GantrixError, match=r"index \(500, 0\)"):  # small data: every value
        load_data(path)


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor", "ignore:TypedStorage is deprecated")
@pytest.mark.parametrize("make, fragment", [
    (lambda: torch.empty(4, 2, device="meta"), "a meta tensor has a shape but no values"),
    (lambda: torch.quantize_per_tensor(torch.zeros(4, 2), 0.1, 0, torch.qint8), "quantized samples"),
    (lambda: torch.zeros(4, 2).to_sparse(), "torch.sparse_coo tensor cannot be trained on"),
], ids=["meta", "quantized", "sparse"])
def test_meta_quantized_and_sparse_tensor_files_are_refused(tmp_path, make, fragment):
    torch.save({"x": make()}, tmp_path / "d.pt")
    with pytest.raises(GantrixError, match=fragment):
        load_data(tmp_path / "d.pt")


@pytest.mark.parametrize("x, fragment", [
    (torch.zeros(4, 8, 8), "x[:, None]"),
    (torch.zeros(4), "(N, D) vectors or (N, C, H, W) images"),
    (torch.zeros(4, 3, 8, 16), "square"),
    (torch.empty(4, 2, device="meta"), "meta tensor"),
])
def test_an_in_memory_tensor_is_checked_too(x, fragment):
    with pytest.raises(GantrixError) as caught:
        open_data(x, {})
    assert fragment in str(caught.value)


def test_a_tensor_that_needs_grad_trains_detached():
    x = torch.randn(16, 2, requires_grad=True)
    data = TensorData("t", x)
    assert not data.get().requires_grad


def test_uppercase_suffixes_are_read(tmp_path):
    x = np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32)
    np.save(tmp_path / "a.npy", x)
    (tmp_path / "a.npy").rename(tmp_path / "A.NPY")
    torch.save(torch.from_numpy(x), tmp_path / "B.PT")
    assert torch.equal(load_data(tmp_path / "A.NPY").get(), torch.from_numpy(x))
    assert torch.equal(load_data(tmp_path / "B.PT").get(), torch.from_numpy(x))


@pytest.mark.parametrize("labels", [torch.tensor([0, 1, -1, 0]), "abcd", torch.zeros(4, 2).long(),
                                    torch.tensor([0.5, 1, 1, 0])])
def test_bad_labels_are_refused(tmp_path, labels):
    torch.save({"x": torch.zeros(4, 2), "labels": labels}, tmp_path / "d.pt")
    with pytest.raises(GantrixError, match="'labels' must be 4 integers from 0"):
        load_data(tmp_path / "d.pt")


@pytest.mark.parametrize("typo, suggestion", [("mnst", "mnist"), ("ring9", "ring8"),
                                              ("stacked_mnist", "stacked-mnist")])
def test_a_misspelt_data_name_gets_a_suggestion(tmp_path, monkeypatch, typo, suggestion):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GantrixError, match=f"did you mean {suggestion}"):
        load_data(typo)
    result = CliRunner().invoke(create_app(), ["train", "-t", "nonsaturating", "--data", typo,
                                               "--out", "run", "--quiet"])
    assert result.exit_code == 2 and f"did you mean {suggestion}?" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["", "  "])
def test_an_empty_data_name_is_not_the_working_folder(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.png").write_bytes(b"an image here would be trained on")
    with pytest.raises(GantrixError, match="the data is an empty name"):
        load_data(name)


def test_no_suggestion_for_a_path_far_from_every_name(tmp_path):
    with pytest.raises(GantrixError) as caught:
        load_data(tmp_path / "my-images")
    assert "did you mean" not in str(caught.value)


@pytest.mark.parametrize("x, fragment", [
    (np.zeros((4, 2), bool), "bool samples"),
    (np.zeros((4, 5, 8, 8), np.uint8), "got 5"),
    (np.array([[0.0, np.nan]] * 4, np.float32), "NaN"),
])
def test_the_cli_refuses_bad_data_before_writing_a_run_folder(tmp_path, x, fragment):
    path = _save(tmp_path / "d.npy", x)
    result = CliRunner().invoke(create_app(), ["train", "-t", "nonsaturating", "--data", str(path),
                                               "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 2 and fragment in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()
