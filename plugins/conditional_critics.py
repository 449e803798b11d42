"""Conditional critics that do not take the label at their input: the auxiliary-classifier
critic of AC-GAN (Odena, Olah & Shlens 2017) and the projection critic (Miyato & Koyama
2018). Both condition the generator as ``cgan`` does (``[z, one-hot(y)]`` at its input) and
read the critic's penultimate features φ(x) — the input of its last weight layer ψ:

    acgan:       class logits = W·φ(x) + b beside D(x) = ψ(φ(x)); cross-entropy added to
                 both players' objectives (Odena et al. 2017, eqs. 1–2)
    projection:  D(x, y) = ψ(φ(x)) + ⟨embed(y), φ(x)⟩ (Miyato & Koyama 2018, eq. 3)

Each is one way of giving the critic the labels, as is ``cgan``'s concatenation; a
composition has one of them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from gantrix.plugin import (CONV, Architecture, Clash, FeatureCritic, GantrixError,
                            ModelTransformError, Param, condition_on_labels, fake_labels,
                            hookimpl, label_critic_inputs, last_layer)

ODENA = ("Odena, Olah & Shlens 2017, Conditional Image Synthesis with Auxiliary Classifier "
         "GANs")
MIYATO = "Miyato & Koyama 2018, cGANs with Projection Discriminator"


#: the one relation both tricks declare, word for word, so that a pair of them is reported
#: once; ``cgan`` carries the tag too.
ONE_LABEL_PATH = Clash(
    "critic-labels",
    "two ways of giving the critic the class labels, where a composition has one: cgan "
    "concatenates y to the critic's input (Mirza & Osindero 2014, §3.2), acgan makes the "
    "critic predict y with an auxiliary classifier (Odena et al. 2017, eqs. 1-2), "
    "projection adds <embed(y), phi(x)> to its logit (Miyato & Koyama 2018, eq. 3). Each "
    "also conditions the generator on y, which would take the labels twice, and the "
    "critic's objective would be none of the papers': keep one of them",
    f"{MIYATO}, Fig. 1 and §2, which compare the three")


def layer_like(layer: nn.Module, outputs: int, bias: bool) -> nn.Module:
    """A new layer reading what ``layer`` reads, with ``outputs`` outputs: a Linear for a
    Linear, a conv of the same kernel, stride, padding and dilation for a conv. Its weights
    are drawn from a normal with ``layer``'s weights' mean and std, so the initialisation a
    trick chose for the critic (dcgan's N(0, 0.02)) carries over; its bias starts at 0."""
    if isinstance(layer, nn.Linear):
        new = nn.Linear(layer.in_features, outputs, bias=bias)
    else:
        conv = next(c for c in CONV if isinstance(layer, c))
        new = conv(layer.in_channels, outputs, layer.kernel_size, layer.stride, layer.padding,
                   layer.dilation, bias=bias, padding_mode=layer.padding_mode)
    old = layer.weight.detach()
    new = new.to(device=old.device, dtype=old.dtype)
    with torch.no_grad():
        new.weight.normal_(old.mean().item(), old.std(correction=0).item())
        if bias:
            new.bias.zero_()
    return new


def per_sample(layer: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """``layer(features)`` as (batch, outputs): a conv's positions, if any are left,
    averaged (none are on a critic whose last conv covers its whole last feature map)."""
    out = layer(features)
    return out.flatten(2).mean(2) if out.dim() > 2 else out


class ClassifierCritic(FeatureCritic):
    """AC-GAN's critic: the wrapped critic's outputs plus ``"class_logits"`` (batch, K),
    a layer with the geometry of its last layer on the same features."""

    def __init__(self, wrapped: nn.Module, tap: nn.Module, num_classes: int):
        super().__init__(wrapped, tap, "acgan")
        self.classifier = layer_like(tap, num_classes, bias=True)

    def forward(self, x: torch.Tensor, **inputs) -> dict:
        out, features = self.critic(x, inputs)
        out = dict(out) if isinstance(out, dict) else {"logits": out}
        out["class_logits"] = per_sample(self.classifier, features)
        return out


class ProjectionCritic(FeatureCritic):
    """The projection critic: the wrapped critic's logit plus ⟨embed(y), φ(x)⟩.

    The class embedding V (K × the size of φ) is the weight of a bias-free layer with the
    geometry of the critic's last layer and K outputs: output c is ⟨V_c, φ(x)⟩, and each
    sample's label picks its own. ``spectral`` normalises V by its largest singular value.
    """

    def __init__(self, wrapped: nn.Module, tap: nn.Module, num_classes: int, spectral: bool):
        super().__init__(wrapped, tap, "projection")
        embed = layer_like(tap, num_classes, bias=False)
        self.embed = spectral_norm(embed) if spectral else embed

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, **inputs):
        if labels is None:
            raise GantrixError("the projection critic scores x given its class, but no labels "
                               "came with it: train on labelled data")
        out, features = self.critic(x, inputs)
        projection = per_sample(self.embed, features).gather(1, labels.long().reshape(-1, 1))
        logits = out["logits"] if isinstance(out, dict) else out
        logits = logits + projection.reshape(logits.shape).to(logits.dtype)
        return {**out, "logits": logits} if isinstance(out, dict) else logits


class _ClassConditional(Architecture):
    """What acgan and projection share: labelled data, the generator conditioned as ``cgan``
    conditions it (`condition_on_labels`: one-hot labels at its input), the fakes' labels, and a
    critic wrapped around its penultimate features: each trick's ``critic_for(model, tap,
    num_classes)`` wraps ``model`` given its last layer ``tap``."""

    provides = ("conditional", "critic-labels")
    needed_to_sample = True  # the generator takes the class
    conflicts = (ONE_LABEL_PATH,)
    #: what the critic does with the labels, for the messages.
    critic_role = ""

    def __init__(self, **values):
        super().__init__(**values)
        self.num_classes: int | None = None  # from the ModelSpec, at build time

    @hookimpl
    def gantrix_transform_model(self, model, role, spec):
        k = spec.num_classes
        if k is None or k < 2:
            raise ModelTransformError(
                f"{self.name} conditions the generator on the class and {self.critic_role}, "
                f"so it needs labelled data, but the data has {'none' if k is None else k} "
                f"(ModelSpec.num_classes): use labelled data with at least 2 classes "
                f"(digits, mnist, an image folder with a folder per class), or drop {self.name}")
        self.num_classes = k
        if role == "generator":
            return condition_on_labels(model, role, spec, self.name)  # one-hot, as cgan
        try:
            tap = last_layer(model)
        except TypeError as exc:
            raise ModelTransformError(
                f"{self.name} cannot find the critic's ({type(model).__name__}) penultimate "
                f"features: {exc}. Keep its layers in a `.net` nn.Sequential (found through "
                "`.wrapped`) whose last Linear or Conv layer makes the logit") from None
        return self.critic_for(model, tap, k)

    @hookimpl
    def gantrix_condition(self, batch):
        batch.fake_labels = fake_labels(batch, self.fake_labels, self.num_classes, self.name)
        batch.generator_inputs["labels"] = batch.fake_labels


FAKE_LABELS = Param("fake_labels", str, "uniform", "classes of the fakes: c ~ U{0..K-1} "
                    "(the paper's) or the real batch's", choices=("uniform", "real"))


class AuxiliaryClassifierGAN(_ClassConditional):
    """AC-GAN (Odena, Olah & Shlens 2017, §3): G draws a sample of a given class; the critic
    does not see the class but says, beside real-or-fake, which class each sample is.

        X_fake = G(c, z),  c ~ p_c
        L_S = E[log P(S = real | X_real)] + E[log P(S = fake | X_fake)]     (eq. 1)
        L_C = E[log P(C = c | X_real)] + E[log P(C = c | X_fake)]           (eq. 2)
        D maximises L_S + L_C;  G maximises L_C − L_S

    L_S is the composition's loss trick (``nonsaturating`` in the ``acgan`` recipe). L_C
    enters as cross-entropy terms of weight λ (``weight``; the paper's is 1), on the
    critic's one forward pass per side (shared with the loss):

        critic:     λ·CE(class_logits(x_real), c_real) + λ·CE(class_logits(x_fake), c_fake)
        generator:  λ·CE(class_logits(G(c, z)), c)

    logged as ``acgan/real`` and ``acgan/fake``. The fakes carry no graph in the critic's
    update, so there L_C trains the critic; in the generator's update the critic is frozen
    and it trains G (the real term does not depend on G and is left out there).

    Generator: ``cgan``'s conditioning, G(z | c) = G([z, one-hot(c)]) (the paper's
    generator takes the class as a one-hot beside the noise): the first layer of its layer
    stack (``.net``: the core's models, ``dcgan``'s) widened, its weights kept; a generator
    whose ``forward`` takes ``labels=`` is left as it is. The fakes' classes are drawn
    uniformly (``fake_labels=uniform``, the paper's c ~ p_c) or taken from the real batch
    (``real``); labels a sampler sets are kept. Needed to sample: yes, G takes the class —
    ``gantrix sample --labels``, ``Trainer.sample(n, labels=...)``, ``G(z, labels=c)``.

    Critic: the auxiliary classifier is one layer with K outputs reading the critic's
    penultimate features φ(x), the input of its last Linear or Conv layer ψ (the layer that
    makes the logit, found in its ``.net`` layer stack through any ``.wrapped``). It has
    ψ's geometry — a Linear on a Linear; on a conv, a conv of ψ's kernel, stride and padding
    with any positions left averaged — so on the core's and dcgan's critics, whose last conv
    covers the 4×4 feature map, it is the paper's linear softmax layer on the flattened
    features. φ(x) is taken by a forward pre-hook on ψ during the critic's own forward pass
    (as infogan's Q head), so the body is shared and runs once; the critic returns
    ``{"logits", "class_logits"}``. It is initialised like ψ (its weights' mean and std). A
    critic without such a layer stack is an error finding; any extra heads it returns are
    kept.

    Relations: needs labelled data (an error finding at build time, e.g. ``gantrix check
    --data ring8``). One way of giving the critic the labels per composition: with
    ``cgan`` or ``projection`` (tag ``critic-labels``) it is an error. It carries
    ``conditional``, so ``pac`` (per-pack critic) is an error and ``mode-seeking`` warns.
    """

    name = "acgan"
    summary = "AC-GAN: class-conditional G; an auxiliary classifier on the critic adds CE to both"
    paper = ODENA + ", §3, eqs. 1-2"
    params = (
        Param("weight", float, 1.0, "lambda, the weight of the class loss L_C in both "
              "players' objectives", low=0.0, high=1e4),
        FAKE_LABELS,
    )
    critic_role = "the critic predicts it"

    def critic_for(self, model, tap, num_classes):
        return ClassifierCritic(model, tap, num_classes)

    def class_terms(self, batch, sides) -> dict[str, torch.Tensor]:
        """λ·CE(class_logits, labels) on each of ``sides``, named ``acgan/<side>``."""
        terms = {}
        for side in sides:
            labels = batch.labels if side == "real" else batch.fake_labels
            if labels is None:
                raise GantrixError(f"acgan: the critic's class loss on the {side} samples needs "
                                   "their labels, but the batch has none: train on labelled data")
            logits = batch.outputs(side)["class_logits"]
            terms[f"acgan/{side}"] = self.weight * F.cross_entropy(logits, labels.long())
        return terms

    @hookimpl
    def gantrix_discriminator_terms(self, batch):
        return self.class_terms(batch, ("real", "fake"))

    @hookimpl
    def gantrix_generator_terms(self, batch):
        return self.class_terms(batch, ("fake",))


class ProjectionDiscriminator(_ClassConditional):
    """Projection discriminator (Miyato & Koyama 2018): the critic's logit for x of class y
    is its unconditional logit plus the inner product of a learned class embedding with its
    penultimate features,

        f(x, y) = yᵀVφ(x) + ψ(φ(x)) = ψ(φ(x)) + ⟨embed(y), φ(x)⟩          (eq. 3)

    with y one-hot and V (K × dim φ) the class embeddings. It follows from modelling the
    log density ratio log q(x, y)/p(x, y) with log-linear class posteriors (§2), and asks
    the critic to match p(y | x) without a separate classifier loss: the labels enter only
    through f, which the composition's loss trick (``hinge`` in the paper) trains as usual.

    Critic: φ(x) is the input of the critic's last Linear or Conv layer ψ (found in its
    ``.net`` layer stack through any ``.wrapped``), taken by a forward pre-hook during the
    critic's own forward pass; ψ is that layer. V is held as the weight of a bias-free layer
    with ψ's geometry and K outputs, so output c is ⟨V_c, φ(x)⟩ and each sample's label
    picks its own; on the core's and dcgan's critics, whose last conv covers the 4×4 feature
    map, V_c is the size of the flattened φ(x) (a conv leaving positions gets the product
    averaged over them). V is initialised like ψ. The wrapped critic gets x and any other
    keyword inputs, not the labels; a critic without such a layer stack is an error finding.

    ``spectral=true`` divides V by its largest singular value (power iteration, one step
    per training forward pass), as the paper normalises its embedding with every other
    layer of D. ``spectral-norm`` in the composition normalises V anyway (it is a weight
    layer of the critic); ``spectral`` matters without it.

    Generator: the paper's uses conditional batch normalisation; here it is ``cgan``'s
    conditioning, G(z | y) = G([z, one-hot(y)]) with the first layer of its layer stack
    widened (a generator whose ``forward`` takes ``labels=`` is left as it is). That needs
    no BatchNorm to replace (the core's generator has none) and keeps this trick about the
    critic, which is what the paper contributes; add ``conditional-batchnorm`` for the
    paper's generator (G then takes the class through its BatchNorms alone, no one-hot
    concatenated to z: the ``sngan-projection`` recipe). The fakes' classes are drawn
    uniformly (``fake_labels=uniform``, the paper's) or taken from the real batch
    (``real``); labels a sampler sets are kept. Needed to sample: yes, G takes the class —
    ``gantrix sample --labels``, ``Trainer.sample(n, labels=...)``, ``G(z, labels=y)``.

    Relations: needs labelled data (an error finding at build time). One way of giving the
    critic the labels per composition: with ``cgan`` or ``acgan`` (tag ``critic-labels``)
    it is an error. A Sigmoid output (``sigmoid-output``) is an error: the projection is
    added to the logit. It carries ``conditional`` (``pac`` is an error, ``mode-seeking``
    warns).
    """

    name = "projection"
    summary = "projection critic: D(x, y) = psi(phi(x)) + <embed(y), phi(x)>, class-conditional G"
    paper = MIYATO + ", eq. 3"
    params = (
        Param("spectral", bool, False, "spectrally normalise the class embedding V (the "
              "paper's, with spectral-norm on the rest of the critic)"),
        FAKE_LABELS,
    )
    conflicts = (
        ONE_LABEL_PATH,
        Clash("sigmoid-output", "the projection <embed(y), phi(x)> is added to the critic's "
              "logit; after a Sigmoid the output is a probability, and the sum is neither",
              MIYATO + ", eq. 3"),
    )
    critic_role = "the critic projects its features on the class embedding"

    def critic_for(self, model, tap, num_classes):
        return ProjectionCritic(model, tap, num_classes, self.spectral)

    @hookimpl
    def gantrix_condition(self, batch):
        super().gantrix_condition(batch)
        label_critic_inputs(batch)


@hookimpl
def gantrix_register_tricks(register):
    register(AuxiliaryClassifierGAN)
    register(ProjectionDiscriminator)
