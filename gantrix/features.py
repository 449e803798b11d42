"""The feature spaces that FID, KID and precision/recall are measured in (`gantrix.evaluation`).

A number such as FID means something only in the space it was computed in, so every space
has a name that goes with every number:

- ``Inception-V3`` (``--features inception``): the pool features (2,048), as pytorch-fid
  and torch-fidelity compute them (`gantrix.inception`; needs ``pip install -e
  '.[metrics]'`` and the weights file, never downloaded at run time). The papers' space,
  for any images.
- ``digits classifier`` (``--features classifier``, as all below): the 64 penultimate
  features of the small MLP that scores the 8×8 digits (`gantrix.metrics.digit_classifier`).
- ``mnist classifier``: the 128 penultimate features of the MNIST CNN
  (`gantrix.metrics.mnist_classifier`).
- ``mnist classifier per-channel``: on Stacked MNIST, the MNIST classifier's features of
  each of the three channels (digits), concatenated (384).
- ``<data> classifier``: for a user's labelled images (an image folder with one sub-folder
  per class, or a tensor file with labels), the 128 penultimate features of a small CNN
  trained once on those images (`gantrix.metrics.FolderClassifier`; a tenth of the images
  held out to measure its accuracy) and cached, keyed by the data's own key (the prepared
  folder's) and the classifier's version.

`data_key` names the data a run trains on (the same key as its prepared cache, for a
folder), so the real side's features can be cached (`gantrix.evaluation`); `real_batches`
reads ``n`` real samples in chunks, so neither side is ever held in memory as images.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from .cache import cache_dir
from .data import IMAGE_SETS, Data, Mirrored, StackedMNIST, TensorData, crop_mnist
from .errors import GantrixError

#: ``--features`` choices (None: Inception where it can be used, else the data's classifier).
CHOICES = ("inception", "classifier")
#: images through a feature network at once (bounded memory).
CHUNK = 500
INSTALL = "pip install -e '.[metrics]'"


@dataclass
class FeatureSpace:
    """A space to compare real and generated images in.

    ``name`` goes with every number (``FID (mnist classifier features)``); ``key`` is the
    identity of the network and its weights (part of the real side's cache key);
    ``extract`` maps images in the data's range, (N, C, H, W), to (N, D) float64 features;
    ``info`` is recorded in eval.json (dimension, the classifier's held-out accuracy...).
    """

    name: str
    key: str
    extract: Callable[[torch.Tensor], np.ndarray]
    description: str
    info: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name} features"


# --------------------------------------------------------------------------- the data


def source_of(data: Data, source: str) -> Data:
    """The data without the training-time flips (`Mirrored`): evaluation reads it as it is."""
    return data.inner if isinstance(data, Mirrored) else data


def data_key(data: Data, source: str) -> str | None:
    """A name for the data that changes when the data does: the built-in set's file digest,
    a folder's prepared-cache key (file list, sizes, modification times, image size and
    fit), a
    tensor file's path, size and modification time. None for data with no stable identity
    (a tensor or `Data` passed in Python): its features are not cached."""
    from . import metrics

    if source in IMAGE_SETS:
        if source == "digits":
            return "digits"
        return f"{source}-{metrics.mnist_digest()}"
    path = Path(source)
    if not path.is_absolute() or not path.exists():
        return None
    if path.is_dir():
        from .folder import list_images

        fit = getattr(source_of(data, source), "image_fit", None) or "crop"
        return f"folder-{list_images(path).key(int(data.shape[-1]), fit)}"
    st = path.stat()
    digest = hashlib.sha256(f"{path}-{st.st_size}-{st.st_mtime_ns}".encode()).hexdigest()[:32]
    return f"file-{digest}"


def real_count(data: Data) -> int | None:
    """How many real samples the data has; None for an endless sampler (Stacked MNIST)."""
    data = source_of(data, "")
    try:
        return len(data)  # type: ignore[arg-type]
    except TypeError:
        return None


def real_batches(data: Data, count: int, seed: int, chunk: int = CHUNK) -> Iterator[torch.Tensor]:
    """``count`` real samples in chunks, a fixed draw (``seed``) apart from the training
    stream: a finite data set's samples in a seeded random order (without repeats), an
    endless sampler's seeded draws."""
    data = source_of(data, "")
    if isinstance(data, TensorData):
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:count]
        for lo in range(0, len(order), chunk):
            yield data.get(order[lo:lo + chunk])
    elif isinstance(data, StackedMNIST):
        rng = torch.Generator().manual_seed(seed)
        for lo in range(0, count, chunk):
            yield data._draw(min(chunk, count - lo), rng)[0]
    else:
        x = data.reference(count, seed)
        for lo in range(0, len(x), chunk):
            yield x[lo:lo + chunk]


def labelled(data: Data) -> tuple[TensorData, torch.Tensor] | None:
    """The data and its labels when it is a labelled data set of at least two classes."""
    data = source_of(data, "")
    if isinstance(data, TensorData) and data.labels is not None and data.num_classes \
            and data.num_classes >= 2 and len(torch.unique(data.labels)) >= 2:
        return data, data.labels
    return None


# --------------------------------------------------------------------------- the spaces


def _through(features: Callable[[torch.Tensor], torch.Tensor],
             prepare: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], np.ndarray]:
    def extract(x: torch.Tensor) -> np.ndarray:
        x = prepare(x.detach().cpu().float())
        out = []
        with torch.no_grad():
            for lo in range(0, len(x), CHUNK):
                out.append(features(x[lo:lo + CHUNK]).double().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0))

    return extract


def classifier_space(data: Data, source: str, report: Callable[[str], None] | None = None) -> FeatureSpace:
    """The data's classifier features; raises `GantrixError` when the data has none (a
    user's images without labels)."""
    from . import metrics

    if source == "digits":
        clf = metrics.digit_classifier()
        return FeatureSpace("digits classifier", f"digits-classifier-v{metrics.CLASSIFIER_VERSION}",
                            _through(clf.features, lambda x: x.reshape(-1, 1, 8, 8)),
                            "the penultimate layer (64) of the 8×8 digit classifier",
                            {"dim": 64})
    if source in ("mnist", "stacked-mnist"):
        clf = metrics.mnist_classifier()
        key = metrics.mnist_classifier_path().stem
        if source == "mnist":
            return FeatureSpace("mnist classifier", key, _through(clf.features, crop_mnist),
                                "the penultimate layer (128) of the MNIST classifier", {"dim": 128})

        def per_channel(x: torch.Tensor) -> torch.Tensor:
            n = len(x)
            return clf.features(x.reshape(n * 3, 1, *x.shape[-2:])).reshape(n, 3 * 128)

        return FeatureSpace("mnist classifier per-channel", key + "-stacked",
                            _through(per_channel, crop_mnist),
                            "the MNIST classifier's penultimate features (128) of each of the "
                            "three channels, concatenated (384)", {"dim": 384})
    found = labelled(data)
    if found is None:
        raise GantrixError(
            f"{Path(source).name or source} has no classifier to compare images in: its images "
            f"have no labels (put each class's images in a sub-folder of their own to get a "
            f"classifier trained on them), so FID, KID and precision/recall need the "
            f"Inception features: {INSTALL}, with the weights file (--inception-weights PATH)")
    key = data_key(data, source)
    clf, info = metrics.folder_classifier(found[0], found[1], key, name=Path(source).name,
                                          report=report)
    name = f"{Path(source).name or source} classifier"
    return FeatureSpace(name, f"folder-classifier-v{metrics.FOLDER_CLASSIFIER_VERSION}"
                              f"-e{info['epochs']}-{key}",
                        _through(clf.features, lambda x: x),
                        f"the penultimate layer (128) of a small CNN trained on the data's "
                        f"{info['classes']} labelled classes ({info['accuracy']:.1f} % accurate on "
                        f"{info['held_out']} held-out images)",
                        {"dim": 128, "classifier_accuracy": info["accuracy"],
                         "held_out": info["held_out"], "classes": info["classes"]})


def _file_id(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}-{st.st_size}-{st.st_mtime_ns}".encode()).hexdigest()[:16]


def inception_space(weights: Path | None, device: str | torch.device = "cpu") -> FeatureSpace:
    """Inception-V3's pool features through `gantrix.inception` (on ``device``), with the
    weights file ``weights`` or the one in torch-fidelity's place. Raises
    `gantrix.inception.InceptionUnavailable` when the file or the extra is not there (its
    message names the file, where to get it, the flag and the extra) and
    `InceptionWeightsError` for a file of another network; nothing is downloaded."""
    from . import inception

    try:
        path = inception.weights_path(weights)
    except inception.InceptionUnavailable as missing:
        try:  # name the extra too, when it is missing as well
            inception._library()
        except inception.InceptionUnavailable as no_library:
            raise inception.InceptionUnavailable(f"{no_library}. And {missing}") from None
        raise
    inception.load_inception(path, device=device)  # the file checked, the library imported

    def extract(x: torch.Tensor) -> np.ndarray:
        out = inception.inception_features(x.detach().cpu().float(), weights=path, device=device)
        return out.double().cpu().numpy()

    return FeatureSpace("Inception-V3", f"inception-{_file_id(path)}", extract,
                        "the pool features (2,048) of Inception-V3, as pytorch-fid and "
                        "torch-fidelity compute FID", {"dim": 2048, "weights": str(path)})


def feature_space(data: Data, source: str, *, features: str | None = None,
                  inception_weights: Path | None = None, device: str | torch.device = "cpu",
                  report: Callable[[str], None] | None = None) -> tuple[FeatureSpace, list[str]]:
    """The space to measure ``data`` in, and notes for the user.

    ``features`` ``"inception"`` (or a weights file given) asks for Inception and fails,
    naming what is missing, when it cannot be used; ``"classifier"`` asks for the data's
    classifier; None takes Inception where it can be used and the data's classifier where
    it cannot (the extra or the weights file missing), saying why. A weights file of another
    network is an error either way.
    """
    from .inception import InceptionUnavailable

    if features is not None and features not in CHOICES:
        from .errors import UnknownNameError

        raise UnknownNameError("feature space", features, CHOICES,
                               hint=f" (one of: {', '.join(CHOICES)})")
    if not source_of(data, source).is_image:
        raise not_images(data)
    if features == "classifier":
        if inception_weights is not None:
            raise GantrixError("--inception-weights goes with the Inception features; drop it "
                               "or --features classifier")
        return classifier_space(data, source, report), []
    if features == "inception" or inception_weights is not None:
        return inception_space(inception_weights, device), []
    try:
        return inception_space(None, device), []
    except InceptionUnavailable as exc:
        why = _missing(str(exc))
    try:
        space = classifier_space(data, source, report)
    except GantrixError as exc:
        raise GantrixError(f"{exc}. (Here {why}.)") from None
    return space, [f"in {space.label}, not Inception's: {why} (--features inception says more)"]


def _missing(message: str) -> str:
    """What keeps the Inception features from being used, in a line."""
    from . import inception

    reasons = []
    try:
        inception._library()
    except inception.InceptionUnavailable:
        reasons.append(f"the metrics extra (torch-fidelity) cannot be imported: {INSTALL}")
    try:
        inception.weights_path(None)
    except inception.InceptionUnavailable:
        reasons.append(f"no Inception-V3 weights file at {inception.default_weights_path()} "
                       "(or --inception-weights PATH)")
    return " and ".join(reasons) or message


def not_images(data: Data) -> GantrixError:
    """FID, KID and precision/recall compare images; 2-D points and vectors have no such space."""
    shape = tuple(source_of(data, "").shape)
    if shape == (2,):
        return GantrixError(
            f"FID, KID and precision/recall compare images in a feature space; {data.name} is "
            f"2-D points, where they do not apply: gantrix eval RUN without --metric gives its "
            f"modes captured, high-quality % and KL to uniform")
    return GantrixError(f"FID, KID and precision/recall compare images in a feature space; "
                        f"{data.name} is {shape} vectors, not images")
