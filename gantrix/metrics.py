"""How well a generator learned its data, measured as the mode-collapse papers do.

2-D data (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018): on 2,500 samples, a
sample is *high quality* when it lies within 3σ of its nearest mode's centre; a mode is
*captured* when it is the nearest mode of at least one high-quality sample. A perfect
sampler scores 1 − exp(−9/2) = 98.9 % high quality on the Gaussian mixtures. The KL
divergence of the high-quality samples' mode histogram to the uniform one shows how evenly
the modes are covered (0 is perfect, log k is everything on one mode). The spiral counts
20 sections of equal arc length as its modes, and distance to the curve.

Digits: a small classifier trained on scikit-learn's real digits (cached in the user's
cache folder) labels the samples. As with the 2-D modes, a sample counts when it is
*confidently* a digit (the classifier gives its class ≥ 90 %; real held-out digits score
≈ 95 %), a class is covered when it is the class of at least one confident sample, and the
KL to uniform is taken over the confident samples' class histogram: noise that the
classifier spreads over all classes must not count as coverage. Beside these, the Fréchet
distance in the classifier's penultimate features to held-out real digits, next to the
same distance between two sets of real digits (the floor no generator can beat).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data import Target, digits_arrays

SAMPLES = 2500
#: a sample is high quality within this many σ of its mode.
QUALITY_SIGMAS = 3.0
#: a digit is "confident" when the classifier gives its class at least this probability.
CONFIDENT = 0.9
CLASSIFIER_VERSION = 1


def kl_to_uniform(counts: torch.Tensor) -> float | None:
    """KL(p ‖ uniform) of the histogram ``counts`` in nats; None when it is empty."""
    total = counts.sum()
    if total == 0:
        return None
    p = counts.double() / total
    nz = p > 0
    return float((p[nz] * (p[nz] * len(counts)).log()).sum())


def mode_metrics(samples: torch.Tensor, target: Target) -> dict:
    """Modes captured, % high quality and the mode histogram's KL to uniform."""
    samples = samples.detach().cpu()
    part, dist = target.nearest(samples)
    good = dist <= QUALITY_SIGMAS * target.sigma
    counts = torch.bincount(part[good], minlength=target.k)
    return {
        "modes": int((counts > 0).sum()),
        "total_modes": target.k,
        "high_quality": 100.0 * float(good.double().mean()),
        "kl": kl_to_uniform(counts),
        "samples": len(samples),
    }


# --------------------------------------------------------------------------- digits


class DigitClassifier(nn.Module):
    """A small MLP on 8×8 digits; ``features`` is its penultimate layer (64 units)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(),
                                  nn.Linear(256, 64), nn.ReLU())
        self.head = nn.Linear(64, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def cache_dir() -> Path:
    """``$GANTRIX_CACHE``, else ``$XDG_CACHE_HOME/gantrix``, else ``~/.cache/gantrix``."""
    if os.environ.get("GANTRIX_CACHE"):
        return Path(os.environ["GANTRIX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gantrix"


def digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fixed split of the real digits: 1,297 to train the classifier, 500 held out."""
    x, y = digits_arrays()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, held = order[:-500], order[-500:]
    return x[train], y[train], x[held], y[held]


def _train_classifier() -> DigitClassifier:
    """Deterministic (fixed seed), about a second on a CPU, ~97 % accurate on the held-out
    digits; the global random state is left as it was."""
    x, y, _, _ = digits_split()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = DigitClassifier()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
        for _ in range(30):
            order = torch.randperm(len(x))
            for i in range(0, len(x), 64):
                idx = order[i:i + 64]
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    return model.eval()


def digit_classifier() -> DigitClassifier:
    """The cached classifier, trained (and cached atomically) when missing or unreadable."""
    path = cache_dir() / f"digits-classifier-v{CLASSIFIER_VERSION}.pt"
    model = DigitClassifier()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        return model.eval()
    except Exception:  # missing, truncated, foreign: retrain
        pass
    model = _train_classifier()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(model.state_dict(), f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return model


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖μa − μb‖² + Tr(Σa + Σb − 2(Σa Σb)^½) between Gaussians fitted to ``a`` and ``b``.

    Tr((Σa Σb)^½) is the sum of square roots of the eigenvalues of Σa^½ Σb Σa^½, a
    symmetric positive semi-definite matrix, so only symmetric eigendecompositions are used.
    """
    a64, b64 = a.double().cpu().numpy(), b.double().cpu().numpy()
    mu_a, mu_b = a64.mean(0), b64.mean(0)
    cov_a, cov_b = np.cov(a64, rowvar=False), np.cov(b64, rowvar=False)
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    tr_root = np.sqrt(np.clip(middle, 0, None)).sum()
    fd = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_root
    return max(float(fd), 0.0)  # rounding can leave a tiny negative for equal sets


def digit_metrics(samples: torch.Tensor, classifier: DigitClassifier | None = None) -> dict:
    """Class coverage, KL to uniform, confident share and Fréchet distance of digit samples."""
    clf = classifier or digit_classifier()
    x_train, _, x_held, y_held = digits_split()
    samples = samples.detach().cpu().float().reshape(-1, 1, 8, 8)
    with torch.no_grad():
        probs = clf(samples).softmax(1)
        conf, pred = probs.max(1)
        feats = clf.features(samples)
        held_logits = clf(x_held)
        held_conf = held_logits.softmax(1).max(1).values
        floor = frechet_distance(clf.features(x_train), clf.features(x_held))
        fd = frechet_distance(feats, clf.features(x_held))
    counts = torch.bincount(pred[conf >= CONFIDENT], minlength=10)
    return {
        "classes": int((counts > 0).sum()),
        "total_classes": 10,
        "kl": kl_to_uniform(counts),
        "confident": 100.0 * float((conf >= CONFIDENT).double().mean()),
        "confident_real": 100.0 * float((held_conf >= CONFIDENT).double().mean()),
        "fd": fd,
        "fd_real": floor,
        "classifier_accuracy": 100.0 * float((held_logits.argmax(1) == y_held).double().mean()),
        "samples": len(samples),
    }


def format_metrics(m: dict) -> str:
    """One line for people."""
    if "modes" in m:
        kl = "n/a" if m["kl"] is None else f"{m['kl']:.3f}"
        return (f"modes {m['modes']}/{m['total_modes']}, high quality {m['high_quality']:.1f}%, "
                f"KL to uniform {kl} ({m['samples']} samples)")
    if "classes" in m:
        kl = "n/a" if m["kl"] is None else f"{m['kl']:.3f}"
        return (f"classes {m['classes']}/{m['total_classes']}, KL to uniform {kl}, "
                f"confident {m['confident']:.1f}% (real {m['confident_real']:.1f}%), "
                f"Fréchet distance {m['fd']:.2f} (real vs real {m['fd_real']:.2f}; "
                f"classifier accuracy {m['classifier_accuracy']:.1f}%)")
    return "no quality metric for this data (built-in 2-D data and digits only)"


