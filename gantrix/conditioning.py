"""Conditioning models on class labels by concatenation (Mirza & Osindero 2014), shared by
the tricks that condition the generator or the critic on the class (cgan, acgan,
projection) and exported to plugins by `gantrix.plugin`.

The label enters at a model's input: concatenated to z for the generator, to x for the
critic (as extra features for vectors, as constant label maps — one extra channel per class
— for images). The first layer of the model's layer stack is widened for it, its weights
kept (`gantrix.models.widen_first_layer`).
"""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed
from .errors import GantrixError, ModelTransformError
from .models import ModelSpec, widen_first_layer


def takes_keyword(model: nn.Module, name: str) -> bool:
    """Whether ``model.forward`` declares a parameter called ``name``."""
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def draw_labels(num_classes: int | None, n: int, device=None, owner: str = "") -> torch.Tensor:
    """``n`` class labels ~ U{0..K−1}, K = ``num_classes`` (this process's rows of the
    global batch's draw). ``owner`` names the trick in the error when K is not known yet
    (the models, whose spec gives it, were not built)."""
    if num_classes is None:
        raise GantrixError(f"{owner} draws class labels but does not know how many classes "
                           "there are: build the models with gantrix.build_models")
    return distributed.randint(0, num_classes, n, device=device)


def fake_labels(batch, choice: str, num_classes: int | None, owner: str) -> torch.Tensor:
    """The class labels of ``batch``'s fakes in an update: those already set on the batch
    (the classes a sampler asks for), else the real batch's when ``choice`` is ``"real"``
    and it has labels, else drawn uniformly (`draw_labels`)."""
    if batch.fake_labels is not None:
        return batch.fake_labels
    if choice == "real" and batch.labels is not None:
        return batch.labels
    return draw_labels(num_classes, batch.batch_size, batch.device, owner)


def label_critic_inputs(batch) -> None:
    """Give the critic each side's labels (``labels=``): the fakes' and, when the batch has
    them, the real samples'."""
    batch.critic_inputs["fake"]["labels"] = batch.fake_labels
    if batch.labels is not None:
        batch.critic_inputs["real"]["labels"] = batch.labels


class LabelCode(nn.Module):
    """Class labels (integers) as vectors of size ``num_classes``: one-hot, or a learned
    embedding (``learned=True``)."""

    def __init__(self, num_classes: int, learned: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, num_classes) if learned else None

    def forward(self, labels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        labels = labels.long()
        if self.embed is not None:
            return self.embed(labels).to(dtype)
        return F.one_hot(labels, self.num_classes).to(dtype)


class ConditionalGenerator(nn.Module):
    """G(z | y) = wrapped([z, code(y)]). Without ``labels`` (sampling), y ~ U{0..K−1}."""

    def __init__(self, wrapped: nn.Module, num_classes: int, learned: bool = False):
        super().__init__()
        self.wrapped = wrapped
        self.code = LabelCode(num_classes, learned)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, **inputs):
        if labels is None:
            labels = draw_labels(self.code.num_classes, z.shape[0], z.device)
        y = self.code(labels, z.dtype)
        return self.wrapped(torch.cat([z.flatten(1), y], 1), **inputs)


class ConditionalCritic(nn.Module):
    """D(x | y) = wrapped([x, code(y)]): y as extra features (vectors) or as ``K`` constant
    label maps stacked on the image's channels (images). ``owner`` names the trick in the
    error when no labels come."""

    def __init__(self, wrapped: nn.Module, num_classes: int, image: bool, learned: bool = False,
                 owner: str = ""):
        super().__init__()
        self.wrapped = wrapped
        self.image = image
        self.owner = owner
        self.code = LabelCode(num_classes, learned)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, **inputs):
        if labels is None:
            by = f" ({self.owner})" if self.owner else ""
            raise GantrixError(f"the conditional critic{by} scores x given its class, but no "
                               "labels came with it: train on labelled data")
        y = self.code(labels, x.dtype)
        if self.image:
            x = torch.cat([x, y[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)
        else:
            x = torch.cat([x.flatten(1), y], 1)
        return self.wrapped(x, **inputs)


def condition_on_labels(model: nn.Module, role: str, spec: ModelSpec, owner: str,
                        learned: bool = False) -> nn.Module | None:
    """``model`` (the ``role``) conditioned on the class by concatenation: the first layer of
    its layer stack widened by K = ``spec.num_classes`` inputs, and the model wrapped in a
    `ConditionalGenerator` or `ConditionalCritic` (one-hot labels, or a learned embedding).
    None (unchanged) when its ``forward`` already takes ``labels=``. Raises
    `ModelTransformError` when it has neither."""
    if takes_keyword(model, "labels"):
        return None
    try:
        widen_first_layer(model, spec.num_classes)
    except TypeError as exc:
        raise ModelTransformError(
            f"cannot condition the {role} ({type(model).__name__}) on labels: {exc}. Give its "
            "forward a labels= keyword (gantrix passes the class labels so), or keep its "
            "layers in a `.net` nn.Sequential whose first layer takes the input") from None
    if role == "generator":
        return ConditionalGenerator(model, spec.num_classes, learned)
    return ConditionalCritic(model, spec.num_classes, spec.is_image, learned, owner)
