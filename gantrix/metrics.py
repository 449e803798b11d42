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

MNIST: the same figures from a small CNN trained on 4,000 of the 5,000 real 28×28 digits
(≥ 98 % on the other 1,000; cached, keyed by the data and the classifier's version).

Stacked MNIST (VEEGAN; Metz et al. 2017; PacGAN): the MNIST classifier labels each of a
sample's three channels, which makes its mode (of 1,000); on 26,000 samples, the number of
modes hit and the KL of the mode histogram to uniform, the papers' two columns, beside the
same figures for 26,000 real stacked samples.

A user's labelled images (a folder with a sub-folder per class): `folder_classifier`, a
small CNN trained once on them (a tenth held out to measure it) and cached under the
folder's own key, whose penultimate features FID, KID and precision/recall are measured in
where the Inception features cannot be used (`gantrix.features`, `gantrix.evaluation`).
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .cache import cache_dir
from .checkpoint import write_atomic
from .data import Target, crop_mnist, digits_arrays, mnist_arrays, mnist_file
from .errors import GantrixError

SAMPLES = 2500
#: a sample is high quality within this many σ of its mode.
QUALITY_SIGMAS = 3.0
#: a digit is "confident" when the classifier gives its class at least this probability.
CONFIDENT = 0.9
CLASSIFIER_VERSION = 1
MNIST_CLASSIFIER_VERSION = 1


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


# --------------------------------------------------------------------------- classifiers


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


class MnistClassifier(nn.Module):
    """A small CNN on 28×28 digits (two 3×3 conv pairs with max-pooling, 32 and 64
    channels, then 128 features); ``features`` is its penultimate layer."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU())
        self.head = nn.Linear(128, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _split(x: torch.Tensor, y: torch.Tensor, held: int):
    """A fixed (seed 0) split: all but ``held`` samples to train a classifier, ``held`` kept out."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, kept = order[:-held], order[-held:]
    return x[train], y[train], x[kept], y[kept]


def digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fixed split of the real 8×8 digits: 1,297 to train the classifier, 500 held out."""
    return _split(*digits_arrays(), held=500)


def mnist_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fixed split of the 5,000 MNIST digits (28×28, unpadded): 4,000 to train the
    classifier, 1,000 held out to measure it."""
    x, y = mnist_arrays()
    return _split(crop_mnist(x), y, held=1000)


def _shift(x: torch.Tensor, most: int) -> torch.Tensor:
    """Each image moved by its own random offset of up to ``most`` pixels each way (the
    background, −1, fills in): the augmentation that lets 4,000 digits train a ≥ 98 %
    classifier."""
    n, _, h, w = x.shape
    padded = nn.functional.pad(x, (most,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * most + 1, (2, n))
    rows = (dy[:, None] + torch.arange(h))[:, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, :]
    return padded[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)


def _fit(build: Callable[[], nn.Module], x, y, *, epochs: int, lr: float, augment: int = 0,
         one_cycle: bool = False) -> nn.Module:
    """Build and train a model with Adam in batches of 64, deterministically (seed 0); the
    global random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build()
        steps = epochs * -(-len(x) // 64)
        if one_cycle:
            opt = torch.optim.Adam(model.parameters(), lr=lr)
            schedule = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
        else:
            opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
            schedule = None
        for _ in range(epochs):
            order = torch.randperm(len(x))
            for i in range(0, len(x), 64):
                idx = order[i:i + 64]
                xb = _shift(x[idx], augment) if augment else x[idx]
                loss = nn.functional.cross_entropy(model(xb), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                if schedule is not None:
                    schedule.step()
    return model.eval()


def _train_digit_classifier() -> DigitClassifier:
    """About a second on a CPU, ~97 % accurate on the held-out digits."""
    x, y, _, _ = digits_split()
    return _fit(DigitClassifier, x, y, epochs=30, lr=1e-3)


#: epochs of the MNIST classifier (tests lower it to check the plumbing quickly).
MNIST_EPOCHS = 10


def _train_mnist_classifier() -> MnistClassifier:
    """About 45 s on 2 CPU cores; 98.4 % accurate on the 1,000 held-out digits."""
    x, y, _, _ = mnist_split()
    return _fit(MnistClassifier, x, y, epochs=MNIST_EPOCHS, lr=3e-3, augment=2, one_cycle=True)


def _cached(path: Path, model: nn.Module, train: Callable[[], nn.Module]) -> nn.Module:
    """``model`` with the weights cached at ``path``, or ``train()``'s result, cached
    atomically. A missing, truncated or foreign file is retrained, never trusted; a cache
    folder that cannot be written is reported once (on stderr) and the model kept in memory."""
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval()
    except Exception:  # missing, truncated, foreign: retrain
        pass
    model = train()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    except OSError as exc:
        sys.stderr.write(f"gantrix: cannot cache the classifier in {path.parent} ({exc.strerror or exc}); "
                         "it is retrained in every new process. Set GANTRIX_CACHE to a writable "
                         "folder to keep it.\n")
        return model
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(model.state_dict(), f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return model


def digit_classifier() -> DigitClassifier:
    """The cached 8×8 digit classifier, trained (and cached atomically) when missing."""
    path = cache_dir() / f"digits-classifier-v{CLASSIFIER_VERSION}.pt"
    return _cached(path, DigitClassifier(), _train_digit_classifier)


def mnist_classifier() -> MnistClassifier:
    """The cached MNIST classifier. Its cache key is the digits' file (a hash of its bytes),
    the classifier's code version and its training budget, so new data or a new classifier
    never reuses an old one."""
    return _cached(mnist_classifier_path(), MnistClassifier(), _train_mnist_classifier)


@functools.lru_cache(maxsize=4)
def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def mnist_digest() -> str:
    """A digest of the MNIST digits' file (computed once per version of the file)."""
    path = mnist_file()
    st = path.stat()
    return _file_digest(path, st.st_size, st.st_mtime_ns)


def mnist_classifier_path() -> Path:
    """Where the MNIST classifier is cached: keyed by the digits' file, the classifier's
    version and its epochs."""
    return cache_dir() / f"mnist-classifier-v{MNIST_CLASSIFIER_VERSION}-e{MNIST_EPOCHS}-{mnist_digest()}.pt"


class FolderClassifier(nn.Module):
    """A small CNN for a user's labelled images of any size and channel count: images over
    32×32 are averaged down to 32×32, then two 3×3 conv pairs with max-pooling (32 and 64
    channels), a 3×3 conv to 128, a global average, and 128 features (``features``, the
    penultimate layer)."""

    def __init__(self, channels: int, classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(128, 128), nn.ReLU())
        self.head = nn.Linear(128, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] > FOLDER_SIDE:
            x = nn.functional.adaptive_avg_pool2d(x, FOLDER_SIDE)
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


FOLDER_CLASSIFIER_VERSION = 1
#: epochs of a labelled folder's classifier (tests lower it), and at most this many updates
#: of 64 in all, so a large folder trains in minutes on a CPU.
FOLDER_EPOCHS = 10
FOLDER_MAX_STEPS = 3000
#: images are averaged down to this side before the folder classifier's convolutions.
FOLDER_SIDE = 32
#: the share of a folder's images held out to measure its classifier (at most 2,000).
FOLDER_HELD_OUT = 0.1


class _Rows:
    """A data set's samples by index, read on demand (a memory-mapped folder stays on disk)."""

    def __init__(self, data, idx: torch.Tensor):
        self.data, self.idx = data, idx

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: torch.Tensor) -> torch.Tensor:
        return self.data.get(self.idx[i])


def folder_epochs(count: int) -> int:
    """Epochs for ``count`` training images: `FOLDER_EPOCHS`, fewer where that would pass
    `FOLDER_MAX_STEPS` updates of 64 (at least one)."""
    return max(1, min(FOLDER_EPOCHS, FOLDER_MAX_STEPS // max(1, -(-count // 64))))


def folder_classifier(data, labels: torch.Tensor, key: str | None, *, name: str = "the data",
                      report: Callable[[str], None] | None = None) -> tuple[FolderClassifier, dict]:
    """A classifier of a user's labelled images (a `gantrix.data.TensorData` with labels),
    trained once (seed 0; a tenth of the images, at most 2,000, held out to measure it) and
    cached under ``key`` (the data's key: a folder's prepared-cache key) with the
    classifier's version and epochs; returns it and what was recorded when it was trained
    (``accuracy`` on the held-out images, ``held_out``, ``classes``, ``epochs``). A cache that
    does not load is retrained, never trusted; ``key`` None trains without caching."""
    report = report or _stderr_line
    n = len(labels)
    classes = int(data.num_classes or int(labels.max()) + 1)
    channels = int(data.shape[0])
    held = min(2000, max(1, int(n * FOLDER_HELD_OUT)))
    epochs = folder_epochs(n - held)
    path = None if key is None else (
        cache_dir() / "classifiers" / f"folder-classifier-v{FOLDER_CLASSIFIER_VERSION}-e{epochs}-{key}.pt")
    model = FolderClassifier(channels, classes)
    if path is not None:
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(saved["weights"])
            return model.eval(), dict(saved["info"])
        except Exception:  # missing, truncated, foreign: retrain
            pass
    if n - held < 1:
        raise GantrixError(f"{name}: {n} labelled image(s) are too few to train a classifier on")
    report(f"training a classifier on the {n - held:,} labelled images of {name} ({classes} "
           f"classes, {epochs} epochs), once: its features measure FID, KID and precision/recall"
           + (f"; kept in {path.parent}" if path is not None else ""))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    train, kept = order[:-held], order[-held:]
    model = _fit(lambda: FolderClassifier(channels, classes), _Rows(data, train), labels[train],
                 epochs=epochs, lr=1e-3)
    correct = 0
    with torch.no_grad():
        for lo in range(0, held, 500):
            idx = kept[lo:lo + 500]
            correct += int((model(data.get(idx)).argmax(1) == labels[idx]).sum())
    info = {"accuracy": 100.0 * correct / held, "held_out": held, "trained_on": n - held,
            "classes": classes, "epochs": epochs}
    report(f"the classifier is {info['accuracy']:.1f} % accurate on {held:,} held-out images")
    if path is not None:
        try:
            buffer = io.BytesIO()
            torch.save({"weights": model.state_dict(), "info": info}, buffer)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, buffer.getvalue())
        except OSError as exc:
            report(f"gantrix: cannot cache the classifier in {path.parent} ({exc.strerror or exc}); "
                   "it is retrained in every new process. Set GANTRIX_CACHE to a writable folder "
                   "to keep it.")
    return model, info


def _stderr_line(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------- scoring


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖μa − μb‖² + Tr(Σa + Σb − 2(Σa Σb)^½) between Gaussians fitted to ``a`` and ``b``:
    `gantrix.quality.fid` (Heusel et al. 2017) in the classifier's features."""
    from .quality import fid

    return fid(a, b)


def _classify(clf: nn.Module, x: torch.Tensor, chunk: int = 2000):
    """Class probabilities and penultimate features of ``x``, in chunks (bounded memory)."""
    probs, feats = [], []
    with torch.no_grad():
        for lo in range(0, len(x), chunk):
            f = clf.features(x[lo:lo + chunk])
            feats.append(f)
            probs.append(clf.head(f).softmax(1))
    return torch.cat(probs), torch.cat(feats)


def code_agreement(codes: torch.Tensor | np.ndarray,
                   predicted: torch.Tensor | np.ndarray) -> dict[str, float | None]:
    """How well a generator's categorical latent code agrees with the class a classifier
    gives its samples: InfoGAN's test of a code that captured the digit class (Chen et al.
    2016, §5.1: 5 % error on MNIST). From the contingency table N[c, y] of ``codes`` (the
    code value each sample was generated with) and ``predicted`` (its predicted class) over
    the n samples, with p = N / n and its marginals p(c), p(y):

        code_mi       = I(c; y) / H(c),  I(c; y) = Σ p(c, y) log[p(c, y) / (p(c) p(y))],
                                         H(c)    = −Σ p(c) log p(c)
        code_accuracy = max over one-to-one matchings π of code values to classes of
                        Σ_c N[c, π(c)] / n   (the Hungarian algorithm)

    code_mi is 1 when each code value gives one class, 0 when the code says nothing of the
    class; code_accuracy is the share of samples of the class matched to their code (a
    code value left unmatched, with more values than classes, counts as wrong). Both are
    plug-in estimates: for independent c and y the MI comes out at about (K − 1)(C − 1)/(2n)
    nats, not 0 (K code values, C classes: 0.007 of H(c) at K = C = 10, n = 2,500).
    code_mi is None when H(c) = 0 (one code value: nothing to agree)."""
    from scipy.optimize import linear_sum_assignment

    c = np.asarray(codes.cpu() if isinstance(codes, torch.Tensor) else codes).astype(np.int64)
    y = np.asarray(predicted.cpu() if isinstance(predicted, torch.Tensor) else predicted
                   ).astype(np.int64)
    if c.shape != y.shape or c.ndim != 1 or not len(c) or min(c.min(), y.min()) < 0:
        raise ValueError(f"codes and predicted classes must be two equally long non-empty "
                         f"lists of indices, got shapes {c.shape} and {y.shape}")
    table = np.zeros((c.max() + 1, y.max() + 1))
    np.add.at(table, (c, y), 1.0)
    p = table / len(c)
    pc, py = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    seen = p > 0
    mi = float((p[seen] * np.log(p[seen] / (pc @ py)[seen])).sum())
    hc = float(-(pc[pc > 0] * np.log(pc[pc > 0])).sum())
    rows, cols = linear_sum_assignment(table, maximize=True)
    return {"code_mi": min(max(mi / hc, 0.0), 1.0) if hc > 0 else None,
            "code_accuracy": float(table[rows, cols].sum() / len(c))}


def class_metrics(samples: torch.Tensor, clf: nn.Module, split,
                  labels: torch.Tensor | None = None,
                  codes: torch.Tensor | None = None) -> dict:
    """Class coverage, KL to uniform, confident share and Fréchet distance of ``samples``
    (already in the classifier's input shape), against the real ``split`` the classifier
    was trained and measured on. With ``labels`` (the class each sample was generated
    for, by a conditional model) also ``asked_class``: the % classified as that class.
    With ``codes`` (the categorical latent code value each sample was generated with)
    also `code_agreement`'s ``code_mi`` and ``code_accuracy``."""
    x_train, _, x_held, y_held = split
    probs, feats = _classify(clf, samples)
    conf, pred = probs.max(1)
    held_probs, held_feats = _classify(clf, x_held)
    counts = torch.bincount(pred[conf >= CONFIDENT], minlength=10)
    asked = {} if labels is None else {
        "asked_class": 100.0 * float((pred == labels.cpu()).double().mean())}
    if codes is not None:
        asked.update(code_agreement(codes, pred))
    return {**asked,
        "classes": int((counts > 0).sum()),
        "total_classes": 10,
        "kl": kl_to_uniform(counts),
        "confident": 100.0 * float((conf >= CONFIDENT).double().mean()),
        "confident_real": 100.0 * float((held_probs.max(1).values >= CONFIDENT).double().mean()),
        "fd": frechet_distance(feats, held_feats),
        "fd_real": frechet_distance(_classify(clf, x_train)[1], held_feats),
        "classifier_accuracy": 100.0 * float((held_probs.argmax(1) == y_held).double().mean()),
        "samples": len(samples),
    }


def digit_metrics(samples: torch.Tensor, classifier: DigitClassifier | None = None,
                  labels: torch.Tensor | None = None, codes: torch.Tensor | None = None) -> dict:
    """`class_metrics` of 8×8 digit samples."""
    samples = samples.detach().cpu().float().reshape(-1, 1, 8, 8)
    return class_metrics(samples, classifier or digit_classifier(), digits_split(), labels,
                         codes)


def mnist_metrics(samples: torch.Tensor, classifier: MnistClassifier | None = None,
                  labels: torch.Tensor | None = None, codes: torch.Tensor | None = None) -> dict:
    """`class_metrics` of MNIST samples (32×32 padded or 28×28)."""
    samples = crop_mnist(samples.detach().cpu().float())
    return class_metrics(samples, classifier or mnist_classifier(), mnist_split(), labels,
                         codes)


def stacked_modes(samples: torch.Tensor, clf: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's mode, 100·d₀ + 10·d₁ + d₂ from its three channels' classes, and
    whether all three were classified confidently."""
    x = crop_mnist(samples.detach().cpu().float())
    n = len(x)
    probs, _ = _classify(clf, x.reshape(n * 3, 1, *x.shape[-2:]))
    conf, digit = probs.max(1)
    digit, conf = digit.reshape(n, 3), conf.reshape(n, 3)
    return digit[:, 0] * 100 + digit[:, 1] * 10 + digit[:, 2], (conf >= CONFIDENT).all(1)


def _mode_columns(modes: torch.Tensor) -> tuple[int, float]:
    counts = torch.bincount(modes, minlength=STACKED_MODES)
    return int((counts > 0).sum()), kl_to_uniform(counts)


@functools.lru_cache(maxsize=4)
def _stacked_floor(n: int, clf: nn.Module, cache: Path | None) -> tuple[int, float]:
    """Modes and KL of ``n`` real stacked samples (a fixed draw): computed once a process,
    and kept in ``cache`` (beside the classifier it belongs to) when given, since it costs as
    much as scoring the samples themselves. A cache file that does not read back is
    recomputed."""
    from .data import StackedMNIST

    try:
        saved = json.loads(cache.read_text())
        return int(saved["modes"]), float(saved["kl"])
    except (AttributeError, OSError, ValueError, KeyError, TypeError):
        pass
    real = StackedMNIST(seed=REAL_FLOOR_SEED).reference(n, seed=REAL_FLOOR_SEED)
    modes, kl = _mode_columns(stacked_modes(real, clf)[0])
    if cache is not None:
        try:
            write_atomic(cache, json.dumps({"modes": modes, "kl": kl, "samples": n}).encode())
        except OSError:  # an unwritable cache was reported with the classifier
            pass
    return modes, kl


def stacked_metrics(samples: torch.Tensor, classifier: MnistClassifier | None = None) -> dict:
    """The papers' two columns on Stacked MNIST: modes hit (of 1,000) and the KL of the mode
    histogram to uniform, KL(p_generated ‖ uniform) in nats over every sample (no
    confidence threshold, as in PacGAN's code), beside the same figures for as many real
    stacked samples (the floor), and the share of samples whose three digits are all
    classified confidently."""
    clf = classifier or mnist_classifier()
    modes, confident = stacked_modes(samples, clf)
    hit, kl = _mode_columns(modes)
    cache = None
    if classifier is None:
        path = mnist_classifier_path()
        cache = path.with_name(f"{path.stem}-stacked-floor-{len(modes)}.json")
    hit_real, kl_real = _stacked_floor(len(modes), clf, cache)
    return {
        "modes": hit,
        "total_modes": STACKED_MODES,
        "kl": kl,
        "modes_real": hit_real,
        "kl_real": kl_real,
        "confident": 100.0 * float(confident.double().mean()),
        "samples": len(modes),
    }


#: the papers' sample count on Stacked MNIST (VEEGAN, PacGAN).
STACKED_SAMPLES = 26_000
STACKED_MODES = 1000
REAL_FLOOR_SEED = 12345


def metrics_for(data_name: str) -> tuple[Callable[[torch.Tensor], dict], int] | None:
    """The scoring function of a built-in image data set and its number of samples, or
    None (2-D data is scored against its `Target`; a user's data has no metric)."""
    return {"digits": (digit_metrics, SAMPLES), "mnist": (mnist_metrics, SAMPLES),
            "stacked-mnist": (stacked_metrics, STACKED_SAMPLES)}.get(data_name)


#: what `code_agreement` adds to the data's figures where a trick gives the generator a
#: categorical latent code (`gantrix.hookspecs.gantrix_code_inputs`)
CODE_METRICS = ("code_mi", "code_accuracy")
#: the data whose samples a built-in classifier labels one digit each: where the code's
#: agreement with the class is measured
CLASSIFIED = ("digits", "mnist")


def format_metrics(m: dict) -> str:
    """One line for people."""
    if "modes_real" in m:
        return (f"modes {m['modes']}/{m['total_modes']}, KL to uniform {m['kl']:.3f} "
                f"(real data: {m['modes_real']} modes, KL {m['kl_real']:.3f}), all three digits "
                f"confident in {m['confident']:.1f}% ({m['samples']} samples)")
    if "modes" in m:
        kl = "n/a" if m["kl"] is None else f"{m['kl']:.3f}"
        return (f"modes {m['modes']}/{m['total_modes']}, high quality {m['high_quality']:.1f}%, "
                f"KL to uniform {kl} ({m['samples']} samples)")
    if "classes" in m:
        kl = "n/a" if m["kl"] is None else f"{m['kl']:.3f}"
        return (f"classes {m['classes']}/{m['total_classes']}, KL to uniform {kl}, "
                f"confident {m['confident']:.1f}% (real {m['confident_real']:.1f}%), "
                f"Fréchet distance {m['fd']:.2f} (real vs real {m['fd_real']:.2f}; "
                f"classifier accuracy {m['classifier_accuracy']:.1f}%)"
                + (f"; the asked class in {m['asked_class']:.1f}%" if "asked_class" in m else "")
                + _code_text(m))
    return ("no built-in quality metric for this data (those are for ring8, grid25, spiral, "
            "digits, mnist, stacked-mnist); for any images: gantrix eval RUN --metric fid "
            "--metric kid --metric pr")


def _code_text(m: dict) -> str:
    """`code_agreement`'s figures for `format_metrics`, where the generator has a code."""
    if "code_accuracy" not in m:
        return ""
    mi = "n/a" if m["code_mi"] is None else f"{m['code_mi']:.3f}"
    return (f"; categorical code vs class: MI/H(code) {mi}, matched accuracy "
            f"{100 * m['code_accuracy']:.1f}%")
