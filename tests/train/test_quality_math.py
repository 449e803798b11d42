"""FID, KID and precision/recall (gantrix.quality) against formulas written independently
here: scipy's sqrtm for FID, a direct double loop for KID's unbiased estimator, brute-force
k-nearest-neighbour balls for precision/recall."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from gantrix.errors import GantrixError
from gantrix.quality import QualityInputError, fid, kid, precision_recall


def _sets(seed: int = 0, n_real: int = 60, n_fake: int = 50, d: int = 6):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n_real, d))
    fake = rng.normal(size=(n_fake, d)) @ rng.normal(size=(d, d)) * 0.7 + 0.3
    return real, fake


# --------------------------------------------------------------------------- FID


def _fid_scipy(a, b):
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(ca + cb - 2 * scipy.linalg.sqrtm(ca @ cb).real))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fid_against_scipy_sqrtm(seed):
    real, fake = _sets(seed, n_real=400, n_fake=300, d=8)
    assert fid(real, fake) == pytest.approx(_fid_scipy(real, fake), rel=1e-6)
    # torch tensors (float32 too) and numpy arrays give the same number
    assert fid(torch.from_numpy(real), torch.from_numpy(fake)) == pytest.approx(_fid_scipy(real, fake), rel=1e-6)
    r32, f32 = torch.from_numpy(real).float(), torch.from_numpy(fake).float()
    assert fid(r32, f32) == pytest.approx(_fid_scipy(r32.double().numpy(), f32.double().numpy()), rel=1e-6)


def test_fid_of_a_set_with_itself_is_zero_and_symmetric():
    real, fake = _sets(3, d=8)
    assert fid(real, real) == pytest.approx(0.0, abs=1e-8)
    assert fid(real, fake) == pytest.approx(fid(fake, real), rel=1e-9)


def _centred_and_covariances(real, fake):
    r, f = torch.from_numpy(real), torch.from_numpy(fake)
    rc, fc = r - r.mean(0), f - f.mean(0)
    return rc, fc, rc.T @ rc / (len(r) - 1), fc.T @ fc / (len(f) - 1)


def test_every_way_to_the_trace_term_agrees_with_scipy(monkeypatch):
    """Tr((Σr Σf)^½) three ways — Cholesky, eigendecomposition (a singular Σr), the samples'
    nuclear norm (fewer samples than features) — each against scipy's sqrtm."""
    import gantrix.quality as quality

    real, fake = _sets(6, n_real=300, n_fake=200, d=8)
    expected = np.trace(scipy.linalg.sqrtm(np.cov(real, rowvar=False) @ np.cov(fake, rowvar=False)).real)
    rc, fc, cov_r, cov_f = _centred_and_covariances(real, fake)
    assert quality._trace_sqrt_from_samples(rc, fc) == pytest.approx(expected, rel=1e-9)
    assert quality._trace_sqrt_from_covariances(cov_r, cov_f) == pytest.approx(expected, rel=1e-9)
    monkeypatch.setattr(torch.linalg, "cholesky_ex", lambda a: (a, torch.tensor(1)))  # "singular"
    assert quality._trace_sqrt_from_covariances(cov_r, cov_f) == pytest.approx(expected, rel=1e-9)


def test_fid_rank_deficient_covariances_are_finite():
    """Fewer samples than features (singular covariances): no NaN, no complex parts, and
    the samples' route agrees with the eigendecomposition of Σr^½ Σf Σr^½."""
    import gantrix.quality as quality

    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(10, 64)), rng.normal(size=(12, 64)) + 0.1
    value = fid(a, b)
    assert math.isfinite(value) and value > 0
    assert fid(a, a) == pytest.approx(0.0, abs=1e-8)
    rc, fc, cov_r, cov_f = _centred_and_covariances(a, b)
    via_cov = quality._trace_sqrt_from_covariances(cov_r, cov_f)  # Σr singular: eigh
    mean_term = ((a.mean(0) - b.mean(0)) ** 2).sum()
    assert value == pytest.approx(mean_term + np.trace(cov_r.numpy()) + np.trace(cov_f.numpy())
                                  - 2 * via_cov, rel=1e-6)


def test_fid_of_two_gaussians_is_the_squared_mean_shift():
    """N(0, I) against N(m, I): the covariance terms cancel, FID = ‖m‖² (here 2.25), up to
    the sampling error of the fitted Gaussians (about d²/n for the covariance part)."""
    rng = np.random.default_rng(5)
    d, n = 4, 20_000
    m = np.array([1.5, 0.0, 0.0, 0.0])
    a, b = rng.normal(size=(n, d)), rng.normal(size=(n, d)) + m
    assert fid(a, b) == pytest.approx(2.25, abs=0.05)
    # and against N(0, 4I): ‖0‖² + d (1 + 4 − 2·2) = d
    c = 2 * rng.normal(size=(n, d))
    assert fid(a, c) == pytest.approx(d, abs=0.1)


def test_fid_one_feature():
    a = np.array([[0.0], [2.0], [4.0]])   # mean 2, variance 4
    b = np.array([[1.0], [2.0], [3.0]])   # mean 2, variance 1
    assert fid(a, b) == pytest.approx(4 + 1 - 2 * 2)


# --------------------------------------------------------------------------- KID


def _mmd2_loop(x, y):
    """Unbiased MMD² with k(a, b) = (aᵀb/d + 1)³, written as the paper's sums."""
    m, d = len(x), x.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m)


@pytest.mark.parametrize("seed", [0, 1])
def test_kid_against_the_double_loop(seed):
    """One subset the size of both sets is a permutation of them: every subset gives the
    whole sets' unbiased MMD², so the std is 0."""
    real, fake = _sets(seed, n_real=30, n_fake=30, d=5)
    mean, std = kid(real, fake, subsets=5, subset_size=30)
    assert mean == pytest.approx(_mmd2_loop(real, fake), rel=1e-6)
    assert std == pytest.approx(0.0, abs=1e-9 * abs(mean))


def test_kid_caps_the_subset_at_the_smaller_set():
    real, fake = _sets(2, n_real=25, n_fake=40, d=5)
    mean, _ = kid(real[:25], fake[:25], subsets=1, subset_size=1000)
    assert mean == pytest.approx(_mmd2_loop(real[:25], fake[:25]), rel=1e-6)
    # 40 generated samples, subsets of 25: the mean over subsets of the loop's value
    means, std = kid(real, fake, subsets=4, subset_size=1000, seed=7)
    rng = np.random.RandomState(7)
    expected = []
    for _ in range(4):
        x = real[rng.choice(25, 25, replace=False)]
        y = fake[rng.choice(40, 25, replace=False)]
        expected.append(_mmd2_loop(x, y))
    assert means == pytest.approx(np.mean(expected), rel=1e-6)
    assert std == pytest.approx(np.std(expected), rel=1e-6)


def test_kid_is_seeded_and_leaves_the_global_rng_alone():
    real, fake = _sets(3, n_real=80, n_fake=70, d=5)
    np.random.seed(123)
    torch.manual_seed(123)
    before_np, before_torch = np.random.get_state()[1].copy(), torch.get_rng_state().clone()
    a = kid(real, fake, subsets=10, subset_size=20, seed=1)
    assert a == kid(real, fake, subsets=10, subset_size=20, seed=1)
    assert a != kid(real, fake, subsets=10, subset_size=20, seed=2)
    assert a[1] > 0
    assert (np.random.get_state()[1] == before_np).all()
    assert torch.equal(torch.get_rng_state(), before_torch)


def test_kid_near_zero_for_the_same_distribution_and_positive_for_a_shift():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(500, 8)), rng.normal(size=(500, 8))
    same, same_std = kid(a, b, subsets=20, subset_size=200)
    shifted, _ = kid(a, b + 1.0, subsets=20, subset_size=200)
    assert abs(same) < 3 * same_std + 1e-3
    assert shifted > 0.1 and shifted > 20 * abs(same)


# --------------------------------------------------------------------------- precision/recall


def _pr_brute(real, fake, k):
    """Every ball by brute force: radius = distance to the k-th nearest other sample."""
    def radii(x):
        out = []
        for i in range(len(x)):
            ds = sorted(float(np.linalg.norm(x[i] - x[j])) for j in range(len(x)) if j != i)
            out.append(ds[k - 1])
        return out

    def share(points, centres, rs):
        inside = 0
        for p in points:
            inside += any(np.linalg.norm(p - c) <= r for c, r in zip(centres, rs))
        return inside / len(points)

    return share(fake, real, radii(real)), share(real, fake, radii(fake))


@pytest.mark.parametrize("seed,k", [(0, 3), (1, 1), (2, 5)])
def test_precision_recall_against_brute_force_balls(seed, k):
    real, fake = _sets(seed, n_real=70, n_fake=55, d=4)
    precision, recall = precision_recall(real, fake, k=k)
    expected = _pr_brute(real, fake, k)
    assert precision == pytest.approx(expected[0], rel=1e-6)
    assert recall == pytest.approx(expected[1], rel=1e-6)
    assert 0 < precision < 1 and 0 < recall < 1  # the test sees both kinds of sample


def test_precision_recall_in_small_chunks(monkeypatch):
    """The chunked computation gives the same answer whatever the chunk size."""
    import gantrix.quality as quality

    real, fake = _sets(4, n_real=70, n_fake=55, d=4)
    whole = precision_recall(real, fake)
    monkeypatch.setattr(quality, "_CHUNK_BYTES", 8 * 70 * 3)  # 3 rows a chunk
    assert precision_recall(real, fake) == whole == pytest.approx(_pr_brute(real, fake, 3), rel=1e-6)


def test_precision_recall_of_identical_sets_is_one():
    real, _ = _sets(5, d=6)
    assert precision_recall(real, real) == (1.0, 1.0)
    assert precision_recall(torch.from_numpy(real).float(), torch.from_numpy(real).float()) == (1.0, 1.0)


def test_a_shifted_set_has_lower_precision_and_recall():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(400, 4)), rng.normal(size=(400, 4))
    same = precision_recall(a, b)
    shifted = precision_recall(a, b + 1.5)
    assert min(same) > 0.8
    assert shifted[0] < same[0] - 0.2 and shifted[1] < same[1] - 0.2


def test_precision_falls_when_generated_samples_collapse_and_recall_too():
    """All generated samples near one real point: they are inside real balls (precision
    high), but the generated balls cover little of the real set (recall low)."""
    rng = np.random.default_rng(8)
    real = rng.normal(size=(300, 3))
    fake = real[0] + 0.01 * rng.normal(size=(100, 3))
    precision, recall = precision_recall(real, fake)
    assert precision > 0.9 and recall < 0.05


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("metric", [fid, kid, precision_recall])
def test_bad_shapes_and_counts(metric):
    ok = np.random.default_rng(0).normal(size=(10, 3))
    cases = [
        (np.zeros(10), ok, "2-D"),
        (np.zeros((10, 3, 1)), ok, "2-D"),
        (ok, np.zeros((1, 3)), "at least"),
        (ok, np.random.default_rng(1).normal(size=(10, 4)), "differ in size: 3 and 4"),
        (np.zeros((10, 0)), np.zeros((10, 0)), "no feature"),
    ]
    for real, fake, words in cases:
        with pytest.raises(QualityInputError, match=words) as info:
            metric(real, fake)
        assert isinstance(info.value, ValueError) and isinstance(info.value, GantrixError)


@pytest.mark.parametrize("metric", [fid, kid, precision_recall])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_features(metric, bad):
    real, fake = _sets(0, n_real=10, n_fake=10, d=3)
    fake[4, 1] = bad
    with pytest.raises(QualityInputError, match="generated features hold NaN or infinite values"):
        metric(real, torch.from_numpy(fake))


def test_bad_options():
    real, fake = _sets(0, n_real=10, n_fake=10, d=3)
    with pytest.raises(QualityInputError, match="subset"):
        kid(real, fake, subsets=0)
    with pytest.raises(QualityInputError, match="at least 2"):
        kid(real, fake, subset_size=1)
    with pytest.raises(QualityInputError, match="k ≥ 1"):
        precision_recall(real, fake, k=0)
    with pytest.raises(QualityInputError, match="at least 4 samples"):
        precision_recall(real[:3], fake, k=3)  # 3 samples have no 3rd other neighbour
