"""Conditional GAN (Mirza & Osindero 2014): G and D both see the class label y,

    min_G max_D  E_{x,y}[log D(x | y)] + E_{z,y}[log(1 − D(G(z | y) | y))],

so G learns p(x | y) and can be asked for a class. The label enters by concatenation at
the input: to z for G, to x for D (as extra features for vectors, as constant label maps —
one extra channel per class — for images). The conditioning itself is the core's
(`gantrix.plugin.condition_on_labels`), shared with acgan's and projection's generators.
"""
from __future__ import annotations

from gantrix.plugin import (Architecture, ModelTransformError, Param, condition_on_labels,
                            fake_labels, hookimpl, label_critic_inputs)

PAPER = "Mirza & Osindero 2014, Conditional Generative Adversarial Nets, §3.2"


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
        return condition_on_labels(model, role, spec, self.name,
                                   learned=self.embedding == "learned")

    @hookimpl
    def gantrix_condition(self, batch):
        batch.fake_labels = fake_labels(batch, self.fake_labels, self.num_classes, self.name)
        batch.generator_inputs["labels"] = batch.fake_labels
        label_critic_inputs(batch)


@hookimpl
def gantrix_register_tricks(register):
    register(ConditionalGAN)
