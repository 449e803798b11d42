"""Conditional GAN (Mirza & Osindero 2014): G and D both see the class label y,

    min_G max_D  E_{x,y}[log D(x | y)] + E_{z,y}[log(1 − D(G(z | y) | y))],

so G learns p(x | y) and can be asked for a class. The label enters by concatenation at
the input: to z for G, to x for D (as extra features for vectors, as constant label maps —
one extra channel per class — for images).
"""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn

from gantrix import distributed
from gantrix import Architecture, GantrixError, ModelTransformError, Param, hookimpl
from gantrix.models import find_layers, widen_input

PAPER = "Mirza & Osindero 2014, Conditional Generative Adversarial Nets, §3.2"


def takes_keyword(model: nn.Module, name: str) -> bool:
    """Whether ``model.forward`` declares a parameter called ``name``."""
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


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
            labels = distributed.randint(0, self.code.num_classes, z.shape[0], device=z.device)
        y = self.code(labels, z.dtype)
        return self.wrapped(torch.cat([z.flatten(1), y], 1), **inputs)


class ConditionalCritic(nn.Module):
    """D(x | y) = wrapped([x, code(y)]): y as extra features (vectors) or as ``K`` constant
    label maps stacked on the image's channels (images)."""

    def __init__(self, wrapped: nn.Module, num_classes: int, image: bool, learned: bool = False):
        super().__init__()
        self.wrapped = wrapped
        self.image = image
        self.code = LabelCode(num_classes, learned)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, **inputs):
        if labels is None:
            raise GantrixError("the conditional critic (cgan) scores x given its class, but no "
                               "labels came with it: train on labelled data")
        y = self.code(labels, x.dtype)
        if self.image:
            x = torch.cat([x, y[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)
        else:
            x = torch.cat([x.flatten(1), y], 1)
        return self.wrapped(x, **inputs)


class ConditionalGAN(Architecture):
    """Condition G and D on class labels by input concatenation (Mirza & Osindero 2014).

    G(z | y) gets ``[z, y]`` and D(x | y) gets ``[x, y]``, with y one-hot
    (``embedding=onehot``, the paper's) or a learned embedding of the same size
    (``embedding=learned``); for images D gets y as K label maps, extra input channels.
    The models are wrapped, and the first layer of their layer stack (``.net``: the core's
    models, ``dcgan``'s) is widened for the extra inputs, its weights kept. A model whose
    ``forward`` already takes ``labels=`` is left as it is; any other model is an error.

    Each update, real samples are scored with their own labels; the fakes get
    ``fake_labels``: ``real`` (the real batch's labels, so both sides have the same class
    mix) or ``uniform`` (y ~ U{0..K−1}); labels a sampler set on the batch beforehand are
    kept. Sample a class with ``G(z, labels=y)``; without labels G draws them uniformly.
    Needs labelled data (``ModelSpec.num_classes``).
    """

    name = "cgan"
    summary = "condition G and D on class labels (one-hot or embedding, concatenated)"
    paper = PAPER
    params = (
        Param("embedding", str, "onehot", "how labels enter: one-hot or a learned embedding",
              choices=("onehot", "learned")),
        Param("fake_labels", str, "real", "labels of the fakes: the real batch's or uniform",
              choices=("real", "uniform")),
    )
    provides = ("conditional", "critic-labels")

    def __init__(self, **values):
        super().__init__(**values)
        self.num_classes: int | None = None  # from the ModelSpec, at build time

    @hookimpl
    def gantrix_transform_model(self, model, role, spec):
        self.num_classes = spec.num_classes
        if spec.num_classes is None or spec.num_classes < 2:
            raise ModelTransformError(
                f"conditioning on class labels needs labelled data, but the data has "
                f"{'none' if spec.num_classes is None else spec.num_classes} "
                "(ModelSpec.num_classes): use labelled data with at least 2 classes, or drop cgan")
        if takes_keyword(model, "labels"):
            return None
        net = find_layers(model)
        try:
            if net is None:
                raise TypeError("it has no `.net` layer stack (nn.Sequential fed the input)")
            net[0] = widen_input(net[0], spec.num_classes)
        except TypeError as exc:
            raise ModelTransformError(
                f"cannot condition the {role} ({type(model).__name__}) on labels: {exc}. Give its "
                "forward a labels= keyword (gantrix passes the class labels so), or keep its "
                "layers in a `.net` nn.Sequential whose first layer takes the input") from None
        learned = self.embedding == "learned"
        if role == "generator":
            return ConditionalGenerator(model, spec.num_classes, learned)
        return ConditionalCritic(model, spec.num_classes, spec.is_image, learned)

    @hookimpl
    def gantrix_condition(self, batch):
        fake = batch.fake_labels  # already set: the classes a sampler asks for
        if fake is None:
            if self.fake_labels == "real" and batch.labels is not None:
                fake = batch.labels
            else:
                fake = self._uniform(batch.batch_size, batch.device)
        batch.fake_labels = fake
        batch.generator_inputs["labels"] = fake
        batch.critic_inputs["fake"]["labels"] = fake
        if batch.labels is not None:
            batch.critic_inputs["real"]["labels"] = batch.labels

    def _uniform(self, n: int, device) -> torch.Tensor:
        if self.num_classes is None:
            raise GantrixError("cgan draws class labels but does not know how many classes "
                               "there are: build the models with gantrix.build_models")
        return distributed.randint(0, self.num_classes, n, device=device)


@hookimpl
def gantrix_register_tricks(register):
    register(ConditionalGAN)
