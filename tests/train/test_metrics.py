"""The quality metrics against hand-made samples and independently written formulas."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from gantrix.data import Toy2D
from gantrix.metrics import (digit_classifier, digit_metrics, digits_split, frechet_distance,
                             kl_to_uniform, mode_metrics)


def test_perfect_sampler_on_ring8():
    data = Toy2D("ring8")
    m = mode_metrics(data.reference(2500, seed=7), data.target)
    assert m["modes"] == 8 and m["total_modes"] == 8 and m["samples"] == 2500
    # P(|N(0, σ²I₂)| ≤ 3σ) = 1 − exp(−9/2) = 98.89 %; binomial std on 2,500 draws ≈ 0.2 %
    assert m["high_quality"] == pytest.approx(100 * (1 - math.exp(-4.5)), abs=0.8)
    assert m["kl"] < 0.01


def test_perfect_sampler_on_grid25():
    data = Toy2D("grid25")
    m = mode_metrics(data.reference(2500, seed=1), data.target)
    assert m["modes"] == 25 and m["high_quality"] > 97.5


def test_everything_on_one_mode():
    data = Toy2D("ring8")
    x = torch.tensor([[0.0, 2.0]]).repeat(2500, 1) + 0.01 * torch.randn(2500, 2, generator=torch.Generator().manual_seed(0))
    m = mode_metrics(x, data.target)
    assert m["modes"] == 1 and m["high_quality"] == 100.0
    assert m["kl"] == pytest.approx(math.log(8))


def test_far_samples_are_low_quality_and_capture_nothing():
    data = Toy2D("ring8")
    x = torch.zeros(100, 2)  # the centre of the ring: 2 away from every mode
    m = mode_metrics(x, data.target)
    assert m["modes"] == 0 and m["high_quality"] == 0.0 and m["kl"] is None


def test_hand_counted_modes_and_threshold():
    data = Toy2D("ring8")  # σ = 0.02: high quality within 0.06 of a centre
    x = torch.tensor([[2.0, 0.0], [2.059, 0.0], [2.061, 0.0],   # mode 0: two in, one out
                      [0.0, 2.0], [0.0, 2.05],                   # mode 2: two in
                      [-2.0, 0.2]])                              # near mode 4, but 0.2 away
    m = mode_metrics(x, data.target)
    assert m["modes"] == 2
    assert m["high_quality"] == pytest.approx(100 * 4 / 6)
    # histogram (2, 0, 2, 0, ...) of 8 modes: p = ½ on two of them, KL = log(8/2)
    assert m["kl"] == pytest.approx(math.log(4))


def test_kl_to_uniform_formula():
    counts = torch.tensor([5, 3, 2, 0])
    p = np.array([0.5, 0.3, 0.2])
    assert kl_to_uniform(counts) == pytest.approx(float((p * np.log(p / 0.25)).sum()))
    assert kl_to_uniform(torch.tensor([4, 4, 4])) == pytest.approx(0.0)
    assert kl_to_uniform(torch.zeros(3, dtype=torch.long)) is None


def test_frechet_distance_against_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 5))
    b = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5)) + 0.5
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = ((mu_a - mu_b) ** 2).sum() + np.trace(ca + cb - 2 * scipy.linalg.sqrtm(ca @ cb).real)
    got = frechet_distance(torch.from_numpy(a), torch.from_numpy(b))
    assert got == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(torch.from_numpy(a), torch.from_numpy(a)) == pytest.approx(0.0, abs=1e-8)


def test_digit_metrics_on_real_and_collapsed_digits():
    _, _, held, labels = digits_split()
    real = digit_metrics(held)
    assert real["classes"] == 10 and real["classifier_accuracy"] > 93
    assert real["fd"] == pytest.approx(0.0, abs=1e-4)  # the held-out digits themselves
    assert real["fd_real"] > 0 and real["confident"] == real["confident_real"]
    sevens = digit_metrics(held[labels == 7])
    assert sevens["classes"] <= 2 and sevens["fd"] > 20 * real["fd_real"]
    noise = digit_metrics(torch.rand(500, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    assert noise["confident"] < 30 and noise["fd"] > sevens["fd"] / 2


def test_classifier_is_cached_and_retrained_when_corrupt(tmp_path, monkeypatch):
    monkeypatch.setenv("GANTRIX_CACHE", str(tmp_path))
    first = digit_classifier()
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"
    stamp = files[0].stat().st_mtime_ns
    cached = digit_classifier()
    assert files[0].stat().st_mtime_ns == stamp  # loaded, not retrained
    x = digits_split()[2][:20]
    with torch.no_grad():
        assert torch.equal(first(x), cached(x))
    files[0].write_bytes(b"garbage")
    again = digit_classifier()
    with torch.no_grad():
        assert torch.equal(again(x), first(x))  # retrained, deterministically
    assert files[0].stat().st_size > 1000


def test_a_conditional_run_is_scored_on_the_classes_it_was_asked_for():
    """evaluate() asks a conditional model for every class in turn and reports how often
    the classifier reads the asked class; an unconditional run has no such figure."""
    from gantrix import metrics
    from gantrix.trainer import Trainer

    cond = Trainer(["nonsaturating", "cgan"], "digits", steps=1, batch_size=8, progress=False)
    assert cond.conditional
    result = cond.evaluate(n=50)
    assert 0.0 <= result["asked_class"] <= 100.0 and result["samples"] == 50
    assert "the asked class in" in metrics.format_metrics(result)
    plain = Trainer(["nonsaturating"], "digits", steps=1, batch_size=8, progress=False)
    assert not plain.conditional and "asked_class" not in plain.evaluate(n=50)
    info = Trainer(["nonsaturating", "infogan"], "digits", steps=1, batch_size=8, progress=False)
    assert not info.conditional  # codes, not labels


def test_asked_class_counts_the_samples_classified_as_their_label():
    from gantrix import metrics
    clf = metrics.digit_classifier()
    x_train, y_train, _, _ = metrics.digits_split()
    x, y = x_train[:40], y_train[:40]
    wrong = (y + 1) % 10
    right = metrics.digit_metrics(x, clf, labels=y)["asked_class"]
    assert right >= 95.0  # the classifier's own training digits
    assert metrics.digit_metrics(x, clf, labels=wrong)["asked_class"] <= 100.0 - right + 1e-9
