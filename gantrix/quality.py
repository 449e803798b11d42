"""The papers' sample-quality metrics on feature arrays: FID, KID and precision/recall.

Each function takes the real and the generated samples' features, ``(n, d)`` torch tensors or
numpy arrays (any feature space: Inception-V3 pool features from `gantrix.inception`, or a
small classifier's as in `gantrix.metrics`), and computes in float64. Numbers computed in
different feature spaces are not comparable with one another.

Bad input (not 2-D, fewer than two samples, different feature sizes, NaN or infinite
features) raises `QualityInputError`, a `ValueError` that the CLI prints as a message.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .errors import GantrixError

__all__ = ["QualityInputError", "fid", "kid", "precision_recall"]


class QualityInputError(GantrixError, ValueError):
    """Features that a metric cannot be computed on (shape, count or non-finite values)."""


def _features(x, name: str, *, at_least: int = 2) -> np.ndarray:
    """``x`` as a float64 ``(n, d)`` numpy array, checked."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().to(torch.float64).numpy()
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise QualityInputError(f"{name} features are not numbers: {exc}") from None
    if a.ndim != 2:
        raise QualityInputError(f"{name} features must be a 2-D array (samples × features), "
                                f"got shape {tuple(a.shape)}")
    if a.shape[0] < at_least:
        raise QualityInputError(f"{name} features need at least {at_least} samples, got {a.shape[0]}")
    if a.shape[1] < 1:
        raise QualityInputError(f"{name} features have no feature dimension (shape {tuple(a.shape)})")
    if not np.isfinite(a).all():
        bad = int((~np.isfinite(a)).any(1).sum())
        raise QualityInputError(f"{name} features hold NaN or infinite values ({bad} of "
                                f"{a.shape[0]} samples); a diverged generator?")
    return a


def _pair(real, fake, *, at_least: int = 2) -> tuple[np.ndarray, np.ndarray]:
    r = _features(real, "real", at_least=at_least)
    f = _features(fake, "generated", at_least=at_least)
    if r.shape[1] != f.shape[1]:
        raise QualityInputError(f"real and generated features differ in size: {r.shape[1]} and "
                                f"{f.shape[1]} features")
    return r, f


def _trace_sqrt_from_covariances(cov_r: torch.Tensor, cov_f: torch.Tensor) -> float:
    """Tr((Σr Σf)^½) for symmetric positive semi-definite Σr, Σf: the sum of the square roots
    of the eigenvalues of Σr Σf, taken from a symmetric matrix with the same eigenvalues,
    Lᵀ Σf L with Σr = L Lᵀ (Cholesky) or, where Σr is singular, Σr^½ Σf Σr^½
    (eigendecomposition). Eigenvalues that rounding leaves slightly negative count as 0."""
    chol, info = torch.linalg.cholesky_ex(cov_r)
    if int(info) == 0:
        middle = chol.T @ cov_f @ chol
    else:
        w, v = torch.linalg.eigh(cov_r)
        root = (v * w.clamp_min(0).sqrt()) @ v.T
        middle = root @ cov_f @ root
    eig = torch.linalg.eigvalsh((middle + middle.T) / 2)
    return float(eig.clamp_min(0).sqrt().sum())


def _trace_sqrt_from_samples(rc: torch.Tensor, fc: torch.Tensor) -> float:
    """The same trace from the centred samples (n × d and m × d): with Σr = rcᵀrc/(n−1) and
    Σf = fcᵀfc/(m−1), the non-zero eigenvalues of Σr Σf are the squared singular values of
    rc fcᵀ / √((n−1)(m−1)), so the trace is that n × m matrix's nuclear norm: exact, and far
    cheaper than a d × d eigendecomposition when there are fewer samples than features."""
    return float(torch.linalg.svdvals(rc @ fc.T).sum()) / math.sqrt((len(rc) - 1) * (len(fc) - 1))


def fid(real, fake) -> float:
    """Fréchet Inception Distance (Heusel et al. 2017, "GANs trained by a two time-scale
    update rule converge to a local Nash equilibrium"): the Fréchet (2-Wasserstein) distance
    between Gaussians fitted to the two sets' features,

        FID = ‖μr − μf‖² + Tr(Σr + Σf − 2 (Σr Σf)^½),

    with the sample covariances taken with Bessel's correction (n − 1), as pytorch-fid and
    torch-fidelity do. Tr((Σr Σf)^½) comes from symmetric decompositions only (never a
    general matrix square root): the eigenvalues of Lᵀ Σf L (Σr = L Lᵀ) or Σr^½ Σf Σr^½,
    which are those of Σr Σf, or — when a set has no more samples than features, so that
    its covariance is singular — the singular values of the centred samples' cross product.
    No complex parts, never NaN. FID(x, x) ≈ 0; the result is clamped at 0 (it is a squared
    distance)."""
    r, f = (torch.from_numpy(a) for a in _pair(real, fake))
    rc, fc = r - r.mean(0), f - f.mean(0)
    n, m, d = len(r), len(f), r.shape[1]
    tr_r = float((rc * rc).sum()) / (n - 1)
    tr_f = float((fc * fc).sum()) / (m - 1)
    if min(n, m) <= d:
        tr_root = _trace_sqrt_from_samples(rc, fc)
    else:
        tr_root = _trace_sqrt_from_covariances(rc.T @ rc / (n - 1), fc.T @ fc / (m - 1))
    value = float(((r.mean(0) - f.mean(0)) ** 2).sum()) + tr_r + tr_f - 2 * tr_root
    return max(value, 0.0)


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² of two equal-sized sets with the cubic polynomial kernel."""
    m, d = x.shape

    def kernel(a, b):  # (aᵀb/d + 1)³, cubed by two products: np.power is many times slower
        k = a @ b.T / d + 1
        return k * k * k

    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    off = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(off - 2 * k_xy.sum() / (m * m))


def kid(real, fake, *, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs"): the
    unbiased estimate of the squared maximum mean discrepancy with the cubic polynomial kernel
    k(x, y) = (xᵀy / d + 1)³,

        MMD²ᵤ = Σ_{i≠j} k(xᵢ, xⱼ) / (m(m−1)) + Σ_{i≠j} k(yᵢ, yⱼ) / (m(m−1)) − 2 Σ_{i,j} k(xᵢ, yⱼ) / m²,

    on ``subsets`` random subsets of ``subset_size`` samples drawn without replacement from
    each set (capped at the smaller set's size), returned as (mean, std) over the subsets —
    as torch-fidelity computes it (its subsets are drawn the same way, from a
    ``numpy.random.RandomState(seed)``; never the global random state). Unbiased, so a value
    slightly below 0 means the sets are indistinguishable."""
    r, f = _pair(real, fake)
    if not isinstance(subsets, (int, np.integer)) or subsets < 1:
        raise QualityInputError(f"KID needs at least one subset, got subsets={subsets!r}")
    if not isinstance(subset_size, (int, np.integer)) or subset_size < 2:
        raise QualityInputError(f"KID subsets need at least 2 samples, got subset_size={subset_size!r}")
    m = min(subset_size, len(r), len(f))
    rng = np.random.RandomState(seed)
    mmds = np.empty(subsets)
    for i in range(subsets):
        x = r[rng.choice(len(r), m, replace=False)]
        y = f[rng.choice(len(f), m, replace=False)]
        mmds[i] = _mmd2_unbiased(x, y)
    return float(mmds.mean()), float(mmds.std())


#: bytes of float64 distances one chunk of `precision_recall` may hold (about 256 MB).
_CHUNK_BYTES = 1 << 28


def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    d = (a @ b.T).mul_(-2)  # ‖a‖² + ‖b‖² − 2 aᵀb, in place: one chunk-sized buffer
    d.add_((a * a).sum(1)[:, None]).add_((b * b).sum(1)[None, :])
    return d.clamp_min_(0)


def _chunk(n: int) -> int:
    return max(1, _CHUNK_BYTES // (8 * max(n, 1)))


def _knn_radii2(x: torch.Tensor, k: int) -> torch.Tensor:
    """Each sample's squared distance to its k-th nearest neighbour, itself excluded."""
    n, step, out = len(x), _chunk(len(x)), []
    for lo in range(0, n, step):
        d = _sq_dists(x[lo:lo + step], x)
        rows = torch.arange(len(d))
        d[rows, lo + rows] = float("inf")
        out.append(d.kthvalue(k, dim=1).values)
    return torch.cat(out)


def _share_inside(x: torch.Tensor, centres: torch.Tensor, radii2: torch.Tensor) -> float:
    """The share of ``x`` inside at least one ball (centre, radius²)."""
    step, inside = _chunk(len(centres)), 0
    for lo in range(0, len(x), step):
        inside += int((_sq_dists(x[lo:lo + step], centres) <= radii2[None, :]).any(1).sum())
    return inside / len(x)


def precision_recall(real, fake, *, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019, "Improved precision and
    recall metric for assessing generative models"). Each set's manifold is the union of
    balls around its samples, of radius the distance to the sample's k-th nearest neighbour
    in the same set (itself excluded):

        precision = share of generated samples inside at least one real ball,
        recall    = share of real samples inside at least one generated ball

    (Euclidean distances, a sample on a ball's boundary counts as inside, as in
    torch-fidelity). Distances are computed in float64 in chunks of about 256 MB, so
    10,000 × 10,000 samples fit in memory. Each set needs more than ``k`` samples.

    The paper measures in VGG-16 features (torch-fidelity's default for it too); these are
    the same balls in whatever features are given, so Inception-feature figures are not
    the paper's VGG-16 ones."""
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise QualityInputError(f"precision/recall needs k ≥ 1 neighbours, got k={k!r}")
    r, f = _pair(real, fake, at_least=k + 1)
    r, f = torch.from_numpy(r), torch.from_numpy(f)
    with torch.no_grad():
        precision = _share_inside(f, r, _knn_radii2(r, k))
        recall = _share_inside(r, f, _knn_radii2(f, k))
    return precision, recall
