"""Inception-V3 pool features (2048-d), the standard features of FID, KID and precision/recall.

The network is torch-fidelity's `FeatureExtractorInceptionV3`: the port of the TensorFlow
Inception graph (2015-12-05) that pytorch-fid and torch-fidelity compute FID with, so numbers
match the papers' code. Why torch-fidelity rather than torchmetrics: torchmetrics' FID wraps
this very class (it depends on torch-fidelity for it), so torch-fidelity is the same network
with one package less, and its own FID/KID/PRC code is the reference the tests compare with.
It comes with an extra, ``pip install -e '.[metrics]'``; it imports torchvision, which must
load beside the installed torch (PyPI's torchvision does not load beside a CPU-only torch
wheel, so on such machines the extra cannot be used and `InceptionUnavailable` says so).

Nothing is downloaded at run time. The weights file is looked up where torch-fidelity keeps
it, ``torch.hub.get_dir()/checkpoints/weights-inception-2015-12-05-6726825d.pth``, or given
as a path (``weights=``; ``--inception-weights`` on the command line). torch-fidelity loads
weights with ``torch.load(weights_only=False)``, which runs any code pickled in the file; so
gantrix first loads the file itself with ``weights_only=True`` (refusing anything but
tensors), checks it against the network's parameter names and shapes, and hands the library
only a re-serialised copy of those tensors. These checks need no torch-fidelity: they run
before it is imported.

Images go in as uint8 (0–255) or floats in [−1, 1] (mapped as StyleGAN's code does,
``x · 127.5 + 128`` clamped and truncated), N × C × H × W with C = 1 (repeated to three
channels) or 3, any size: the library resizes them to 299 × 299 itself, with its
TensorFlow-compatible bilinear interpolation.
"""
from __future__ import annotations

import functools
import io
import pickle
import re
from pathlib import Path

import torch
from torch import nn

from .errors import GantrixError

__all__ = ["InceptionUnavailable", "InceptionWeightsError", "WEIGHTS_FILE", "WEIGHTS_URL",
           "default_weights_path", "expected_shapes", "inception_features", "load_inception",
           "load_weights", "to_uint8", "weights_path"]

WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
#: torch-fidelity's release of the converted TensorFlow weights (its URL_INCEPTION_V3).
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_FILE}"
EXTRA = "pip install -e '.[metrics]'"
FEATURES = 2048


class InceptionUnavailable(GantrixError):
    """The Inception features cannot be computed here: the weights file is not there, or the
    ``metrics`` extra (torch-fidelity) cannot be imported. Callers may fall back to other
    features, saying which features their numbers are in."""


class InceptionWeightsError(GantrixError):
    """A weights file that is not the Inception-V3 network's: unreadable, holding pickled
    code, or of another architecture."""


def default_weights_path() -> Path:
    """Where torch-fidelity keeps the weights (the torch hub checkpoints folder)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def _where_to_get() -> str:
    return (f"gantrix never downloads at run time: download {WEIGHTS_URL} (torch-fidelity's "
            f"release) to {default_weights_path()}, or pass the file's path with "
            "--inception-weights PATH")


def weights_path(weights: str | Path | None = None) -> Path:
    """The weights file to use: ``weights`` when given, else the default location; raises
    `InceptionUnavailable` naming the file, where to get it and the flag when it is missing."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise InceptionUnavailable(f"no Inception-V3 weights file at {path} (given with "
                                       f"--inception-weights); {_where_to_get()}")
        return path
    path = default_weights_path()
    if not path.is_file():
        raise InceptionUnavailable(f"the Inception-V3 weights ({WEIGHTS_FILE}) are not at "
                                   f"{path}; {_where_to_get()}")
    return path


# --------------------------------------------------------------------------- the architecture


def _conv(shapes: dict, name: str, cin: int, cout: int, kernel) -> None:
    """A BasicConv2d's parameters: a bias-free convolution and its batch norm."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    shapes[f"{name}.conv.weight"] = (cout, cin, kh, kw)
    for buffer in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{name}.bn.{buffer}"] = (cout,)


@functools.lru_cache(maxsize=1)
def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Every parameter and buffer of torch-fidelity's Inception-V3 (its state dict's names
    and shapes, the batch norms' ``num_batches_tracked`` counters left out), written out so
    that a weights file is checked without importing the library; a test compares it with
    the library's own network where the library imports."""
    s: dict[str, tuple[int, ...]] = {}
    for name, cin, cout, k in [("Conv2d_1a_3x3", 3, 32, 3), ("Conv2d_2a_3x3", 32, 32, 3),
                               ("Conv2d_2b_3x3", 32, 64, 3), ("Conv2d_3b_1x1", 64, 80, 1),
                               ("Conv2d_4a_3x3", 80, 192, 3)]:
        _conv(s, name, cin, cout, k)
    for name, cin, pool in [("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)]:
        for branch, i, o, k in [("branch1x1", cin, 64, 1), ("branch5x5_1", cin, 48, 1),
                                ("branch5x5_2", 48, 64, 5), ("branch3x3dbl_1", cin, 64, 1),
                                ("branch3x3dbl_2", 64, 96, 3), ("branch3x3dbl_3", 96, 96, 3),
                                ("branch_pool", cin, pool, 1)]:
            _conv(s, f"{name}.{branch}", i, o, k)
    for branch, i, o, k in [("branch3x3", 288, 384, 3), ("branch3x3dbl_1", 288, 64, 1),
                            ("branch3x3dbl_2", 64, 96, 3), ("branch3x3dbl_3", 96, 96, 3)]:
        _conv(s, f"Mixed_6a.{branch}", i, o, k)
    for name, c7 in [("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)]:
        for branch, i, o, k in [("branch1x1", 768, 192, 1), ("branch7x7_1", 768, c7, 1),
                                ("branch7x7_2", c7, c7, (1, 7)), ("branch7x7_3", c7, 192, (7, 1)),
                                ("branch7x7dbl_1", 768, c7, 1), ("branch7x7dbl_2", c7, c7, (7, 1)),
                                ("branch7x7dbl_3", c7, c7, (1, 7)), ("branch7x7dbl_4", c7, c7, (7, 1)),
                                ("branch7x7dbl_5", c7, 192, (1, 7)), ("branch_pool", 768, 192, 1)]:
            _conv(s, f"{name}.{branch}", i, o, k)
    for branch, i, o, k in [("branch3x3_1", 768, 192, 1), ("branch3x3_2", 192, 320, 3),
                            ("branch7x7x3_1", 768, 192, 1), ("branch7x7x3_2", 192, 192, (1, 7)),
                            ("branch7x7x3_3", 192, 192, (7, 1)), ("branch7x7x3_4", 192, 192, 3)]:
        _conv(s, f"Mixed_7a.{branch}", i, o, k)
    for name, cin in [("Mixed_7b", 1280), ("Mixed_7c", 2048)]:
        for branch, i, o, k in [("branch1x1", cin, 320, 1), ("branch3x3_1", cin, 384, 1),
                                ("branch3x3_2a", 384, 384, (1, 3)), ("branch3x3_2b", 384, 384, (3, 1)),
                                ("branch3x3dbl_1", cin, 448, 1), ("branch3x3dbl_2", 448, 384, 3),
                                ("branch3x3dbl_3a", 384, 384, (1, 3)),
                                ("branch3x3dbl_3b", 384, 384, (3, 1)), ("branch_pool", cin, 192, 1)]:
            _conv(s, f"{name}.{branch}", i, o, k)
    s["fc.weight"], s["fc.bias"] = (1008, FEATURES), (1008,)
    return s


def _listed(names: list[str], most: int = 5) -> str:
    shown = ", ".join(names[:most])
    return shown + (f", … ({len(names) - most} more)" if len(names) > most else "")


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The Inception-V3 state dict in ``path``, loaded with ``weights_only=True`` (no pickled
    code runs) and checked against `expected_shapes`; raises `InceptionWeightsError` naming
    what is wrong. Missing ``num_batches_tracked`` counters are filled in with 0."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"WeightsUnpickler error:\s*(.*?)(?:\s+Please use|\n\n|$)", str(exc), re.S)
        why = found.group(1).strip() if found else str(exc).splitlines()[0]
        if not re.search(r"GLOBAL|allowlist|reduce", why):  # not objects: bytes torch cannot read
            raise InceptionWeightsError(f"{path} is not a readable PyTorch weights file ({why})") from None
        raise InceptionWeightsError(
            f"{path} holds pickled objects other than tensors ({why}): loading it could run code, "
            "so gantrix refuses it. Use the weights file of torch-fidelity's release "
            f"({WEIGHTS_URL}) or a state dict saved with torch.save(model.state_dict(), ...)"
        ) from None
    except Exception as exc:  # truncated, not a torch file, a folder, unreadable
        raise InceptionWeightsError(f"{path} is not a readable PyTorch weights file "
                                    f"({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise InceptionWeightsError(f"{path} is not a state dict (a mapping of parameter names "
                                    f"to tensors) but a {type(state).__name__}")
    expected = expected_shapes()
    counters = {k for k in state if k.endswith(".bn.num_batches_tracked")
                and k.removesuffix("num_batches_tracked") + "weight" in expected}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected and k not in counters]
    wrong = [f"{k} {tuple(state[k].shape)} instead of {expected[k]}" for k in expected
             if k in state and tuple(state[k].shape) != expected[k]]
    if missing or unexpected or wrong:
        parts = [f"{len(missing)} missing key(s): {_listed(missing)}" if missing else "",
                 f"{len(unexpected)} unexpected key(s): {_listed(unexpected)}" if unexpected else "",
                 f"{len(wrong)} of the wrong shape: {_listed(wrong, 3)}" if wrong else ""]
        raise InceptionWeightsError(
            f"{path} is not the Inception-V3 network of FID (torch-fidelity's "
            f"FeatureExtractorInceptionV3): {'; '.join(p for p in parts if p)}")
    state = {k: state[k] for k in expected} | {k: state[k] for k in counters}
    for k in expected:
        if k.endswith(".bn.weight"):
            state.setdefault(k.removesuffix("weight") + "num_batches_tracked",
                             torch.tensor(0, dtype=torch.long))
    return state


# --------------------------------------------------------------------------- the network


def _library():
    """torch-fidelity's Inception-V3 class, or `InceptionUnavailable` naming the extra and
    what failed (importing it imports torchvision, which may not load beside this torch)."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except Exception as exc:  # ImportError, or torchvision's RuntimeError on a foreign torch
        raise InceptionUnavailable(
            "the Inception-V3 features need torch-fidelity, which cannot be imported here "
            f"({type(exc).__name__}: {exc}). Install the metrics extra: {EXTRA} "
            "(torch-fidelity imports torchvision, which must load beside the installed torch; "
            "PyPI's torchvision does not load beside a CPU-only torch wheel)") from None
    return FeatureExtractorInceptionV3


@functools.lru_cache(maxsize=2)
def _network(path: str, stamp: tuple[int, int], device: str) -> nn.Module:
    state = load_weights(path)  # checked before torch-fidelity is imported
    cls = _library()
    blob = io.BytesIO()
    torch.save(state, blob)  # only the checked tensors reach the library's torch.load
    blob.seek(0)
    net = cls("inception-v3-compat", [str(FEATURES)], feature_extractor_weights_path=blob)
    return net.to(device).eval()


def load_inception(weights: str | Path | None = None, *, device: str | torch.device = "cpu") -> nn.Module:
    """torch-fidelity's Inception-V3 with the checked weights of ``weights`` (or the default
    location), in eval mode on ``device``; kept for the process (reloaded when the file
    changes). Its forward takes uint8 N × 3 × H × W images and returns a 1-tuple of
    (N, 2048) float32 pool features."""
    path = weights_path(weights).resolve()
    st = path.stat()
    return _network(str(path), (st.st_mtime_ns, st.st_size), str(torch.device(device)))


def _check_images(images) -> None:
    if not isinstance(images, torch.Tensor):
        raise GantrixError(f"Inception features need a tensor of images, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise GantrixError("Inception features need images of shape N × C × H × W with C = 1 "
                           f"or 3, got {tuple(images.shape)}")
    if images.dtype != torch.uint8:
        if not images.is_floating_point():
            raise GantrixError(f"Inception features need uint8 images or floats in [-1, 1], "
                               f"got {images.dtype}")
        if not torch.isfinite(images).all():
            raise GantrixError("the images hold NaN or infinite values (a diverged generator?)")


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 images as they are; floats in [−1, 1] as ``x · 127.5 + 128``, clamped to
    [0, 255] and truncated (StyleGAN's conversion: round to nearest of (x + 1) · 127.5)."""
    if images.dtype == torch.uint8:
        return images
    return (images.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def inception_features(images: torch.Tensor, *, weights: str | Path | None = None,
                       batch_size: int = 50, device: str | torch.device = "cpu") -> torch.Tensor:
    """The (N, 2048) float64 Inception-V3 pool features of ``images`` (N × C × H × W, uint8
    or floats in [−1, 1], C = 1 or 3), computed ``batch_size`` at a time on ``device``.

    Raises `InceptionUnavailable` (no weights file, or torch-fidelity cannot be imported),
    `InceptionWeightsError` (a bad weights file) or `GantrixError` (bad images)."""
    _check_images(images)
    if batch_size < 1:
        raise GantrixError(f"batch_size must be at least 1, got {batch_size}")
    net = load_inception(weights, device=device)
    out = []
    with torch.no_grad():
        for lo in range(0, len(images), batch_size):
            x = to_uint8(images[lo:lo + batch_size].detach())
            if x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)
            out.append(net(x.to(device))[0].double().cpu())
    return torch.cat(out) if out else torch.empty(0, FEATURES, dtype=torch.float64)
