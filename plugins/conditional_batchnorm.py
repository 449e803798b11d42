"""Conditional batch normalisation: the generator's BatchNorm layers take their gain and
bias from the class, so the class shapes every layer's features rather than entering once
beside z (de Vries et al. 2017; Miyato & Koyama 2018's generator; BigGAN's shared class
embedding, Brock, Donahue & Simonyan 2019):

    CBN(x | y) = γ_y · (x − μ_B) / √(σ²_B + ε) + β_y

with μ_B, σ²_B BatchNorm's statistics (the batch's in training, the running ones in eval
mode) and (γ_y, β_y) one learned pair per class, or, with a shared embedding e(y),
γ_y = γ + W_γ·e(y) and β_y = β + W_β·e(y) per layer.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gantrix.plugin import (Architecture, Clash, GantrixError, ModelTransformError, Param,
                            ParamError, Requires, draw_labels, fake_labels, hookimpl,
                            takes_keyword)

DE_VRIES = ("de Vries, Strub, Mary, Larochelle, Pietquin & Courville 2017, Modulating early "
            "visual processing by language, §3 (conditional batch normalization)")
MIYATO = ("Miyato & Koyama 2018, cGANs with Projection Discriminator, §4 and appendix "
          "(the generator's conditional batch normalization)")
BROCK = ("Brock, Donahue & Simonyan 2019, Large Scale GAN Training for High Fidelity "
         "Natural Image Synthesis, §3 (shared class embedding, linearly projected to each "
         "layer's gains and biases)")
#: every BatchNorm (lazy ones, whose size is not known before their first pass, too)
BATCHNORM = nn.modules.batchnorm._BatchNorm
#: the BatchNorm layers conditioned, each normalised by one of its own kind (affine=False)
KINDS = (nn.SyncBatchNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class ConditionalBatchNorm(nn.Module):
    """A BatchNorm whose gain and bias are each sample's class's: ``norm`` (the BatchNorm it
    replaces: its kind, ``num_features``, ``eps``, ``momentum``, running statistics and
    their train/eval semantics) normalises without its affine, then

        per-class tables (``embed_dim`` None): γ = gain[y], β = bias[y], two K × C
            embeddings, every row starting at ``norm``'s weight and bias (1 and 0 without
            an affine), so the layer starts as ``norm`` (the authors'
            CategoricalConditionalBatchNormalization starts at 1 and 0);
        shared (``embed_dim`` E): γ = γ₀ + W_γ·e, β = β₀ + W_β·e, with e the class
            embedding the generator's layers share (B × E, computed once per forward by
            `ConditionalBatchNormGenerator`), W_γ, W_β bias-free C × E projections of this
            layer starting at 0 and γ₀, β₀ starting at ``norm``'s weight and bias (BigGAN's
            1 + linear(e) with the linear layer's bias as γ₀ − 1).

    The class comes in through ``condition`` (the labels, or e), which the generator
    wrapper sets around each forward pass: layers deep in a model's layer stack get it
    without any change to the model's own ``forward``. It is made on ``norm``'s device and
    dtype."""

    def __init__(self, norm: nn.modules.batchnorm._BatchNorm, num_classes: int,
                 embed_dim: int | None = None):
        super().__init__()
        kind = next(k for k in KINDS if isinstance(norm, k))
        c = norm.num_features
        self.norm = kind(c, eps=norm.eps, momentum=norm.momentum, affine=False,
                         track_running_stats=norm.track_running_stats)
        like = next(iter(norm.parameters()), None)
        like = like if like is not None else norm.running_mean
        factory = {} if like is None else {"device": like.device, "dtype": like.dtype}
        self.norm.to(**factory)
        with torch.no_grad():
            for key, buffer in norm.named_buffers(recurse=False):  # the running statistics
                getattr(self.norm, key).copy_(buffer)
        weight = norm.weight.detach() if norm.affine else torch.ones(c, **factory)
        bias = norm.bias.detach() if norm.affine else torch.zeros(c, **factory)
        self.shared = embed_dim is not None
        if self.shared:
            self.gain0 = nn.Parameter(weight.clone())
            self.bias0 = nn.Parameter(bias.clone())
            self.gain_proj = nn.Parameter(torch.zeros(c, embed_dim, **factory))
            self.bias_proj = nn.Parameter(torch.zeros(c, embed_dim, **factory))
        else:
            self.gain = nn.Embedding(num_classes, c, **factory)
            self.bias = nn.Embedding(num_classes, c, **factory)
            with torch.no_grad():
                self.gain.weight.copy_(weight.expand(num_classes, c))
                self.bias.weight.copy_(bias.expand(num_classes, c))
        #: the labels (per-class tables) or the shared embedding e(y) (B × E) of the
        #: current forward pass; None outside one.
        self.condition: torch.Tensor | None = None

    def gains_and_biases(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(γ, β) for each sample, each B × C."""
        if self.shared:
            return (self.gain0 + F.linear(condition, self.gain_proj),
                    self.bias0 + F.linear(condition, self.bias_proj))
        return self.gain(condition), self.bias(condition)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.condition is None:
            raise GantrixError(
                "conditional BatchNorm normalises by class, but no class came with the input: "
                "call the generator it belongs to (ConditionalBatchNormGenerator) with labels=, "
                "not the model inside it")
        out = self.norm(x)
        gain, bias = self.gains_and_biases(self.condition)
        shape = out.shape  # (B, C, ...) of any rank: the per-sample pairs broadcast over "..."
        flat = out.reshape(shape[0], shape[1], -1)
        flat = flat * gain.to(out.dtype).unsqueeze(2) + bias.to(out.dtype).unsqueeze(2)
        return flat.reshape(shape)


class ConditionalBatchNormGenerator(nn.Module):
    """G(z | y): ``wrapped`` with its BatchNorm layers replaced by `ConditionalBatchNorm`
    (done by `condition_batchnorms`), called as ``G(z, labels=y, **inputs)``. Each call hands
    the labels (or, with a shared embedding, e(y) = ``embed(y)``) to its conditional norms
    and calls ``wrapped(z, **inputs)`` (with ``labels=`` too when ``wrapped`` takes them).
    Without labels (sampling), y ~ U{0..K−1}."""

    def __init__(self, wrapped: nn.Module, num_classes: int, embed_dim: int | None = None):
        super().__init__()
        self.wrapped = wrapped
        self.num_classes = num_classes
        self.embed = None
        if embed_dim is not None:
            like = next(m for m in wrapped.modules() if isinstance(m, ConditionalBatchNorm))
            like = like.gain0
            self.embed = nn.Embedding(num_classes, embed_dim, device=like.device,
                                      dtype=like.dtype)
        self.passes_labels = takes_keyword(wrapped, "labels")
        #: the norms each call hands the class to, found once (not a walk of G per step)
        self.norms = [m for m in wrapped.modules() if isinstance(m, ConditionalBatchNorm)]

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, **inputs):
        if labels is None:
            labels = draw_labels(self.num_classes, z.shape[0], z.device)
        labels = labels.long()
        condition = labels if self.embed is None else self.embed(labels)
        for norm in self.norms:
            norm.condition = condition
        if self.passes_labels:
            inputs = {**inputs, "labels": labels}
        try:
            return self.wrapped(z, **inputs)
        finally:
            for norm in self.norms:
                norm.condition = None


def condition_batchnorms(model: nn.Module, num_classes: int,
                         embed_dim: int | None = None) -> int:
    """Replace every BatchNorm of ``model`` by a `ConditionalBatchNorm` of it, in place (a
    BatchNorm registered twice becomes one conditional norm registered twice); returns how
    many were replaced."""
    made: dict[int, ConditionalBatchNorm] = {}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, KINDS) and not isinstance(parent, ConditionalBatchNorm):
                if id(child) not in made:
                    made[id(child)] = ConditionalBatchNorm(child, num_classes, embed_dim)
                setattr(parent, name, made[id(child)])
    return len(made)


class ConditionalBatchNormTrick(Architecture):
    """Conditional batch normalisation in the generator (de Vries et al. 2017; the generator
    of Miyato & Koyama 2018, the cGAN with a projection discriminator; BigGAN's shared
    embedding): every BatchNorm of G takes its gain and bias from the class,

        CBN(x | y) = γ_y · x̂ + β_y,    x̂ = (x − μ) / √(σ² + ε)

    where x̂ is the BatchNorm's own normalisation (batch statistics in training, running
    ones in eval mode, its eps and momentum kept) and (γ_y, β_y):

    - ``shared=false`` (Miyato & Koyama's CategoricalConditionalBatchNormalization): a
      learned pair of C-vectors per class and layer, every class starting at the replaced
      BatchNorm's weight and bias;
    - ``shared=true`` (BigGAN, §3): γ_y = γ₀ + W_γ·e(y), β_y = β₀ + W_β·e(y), with one class
      embedding e (``embed_dim`` dimensions, 128 by default: BigGAN's) shared by all layers
      and bias-free projections W per layer, which start at 0 so each layer starts as the
      BatchNorm it replaced (γ₀, β₀ its weight and bias). BigGAN also concatenates chunks
      of z to e ("hierarchical latent") and spectrally normalises W; neither is done here.

    Any generator with BatchNorm layers (``dcgan``'s, ``resnet``'s, your own): each one is
    replaced in place (its running statistics kept), and G is wrapped so that
    ``G(z, labels=y)`` hands y to them; the model it wraps is ``.wrapped`` (what tricks
    that edit G's layer stack look through). Without labels G draws them uniformly. It
    runs before the other architecture tricks' transforms, so ``projection``, ``acgan``
    and ``cgan`` find a generator that already takes ``labels=`` and leave it as it is (no
    one-hot concatenated to z: the cGAN-with-projection setup); ``cgan`` still
    concatenates the class to the critic's input.

    The fakes' classes: those the critic's trick draws (``projection``'s, ``acgan``'s and
    ``cgan``'s ``fake_labels``: its hook runs after theirs and keeps them), those a sampler
    asks for, else uniform. Needed to sample: yes, G takes the class — ``gantrix sample
    --labels``, ``Trainer.sample(n, labels=...)``, ``G(z, labels=y)``.

    Relations: needs labelled data and a generator with BatchNorm (error findings at build
    time, e.g. ``gantrix check conditional-batchnorm --data ring8``, or the core's generator,
    which has no BatchNorm). Without a trick that gives the critic the labels
    (``projection``, ``acgan``, ``cgan``) it is a warning: nothing ties a sample to its
    class. ``selu`` replaces the BatchNorm layers it conditions: an error.
    """

    name = "conditional-batchnorm"
    summary = "class-conditional gains and biases in G's BatchNorms (per class, or shared: BigGAN)"
    paper = MIYATO
    params = (
        Param("shared", bool, False, "BigGAN's shared class embedding, projected to each "
              "layer's gain and bias (false: one gain and bias per class and layer)"),
        Param("embed_dim", int, 128, "size of the shared class embedding (with shared=true)",
              low=1, high=4096),
    )
    requires = (Requires(
        "critic-labels",
        "G is conditioned on the class but the critic never sees it, so nothing ties samples "
        "to their class (Miyato & Koyama 2018 pair it with projection)",
        MIYATO, severity="warning"),)
    conflicts = (Clash("selu", "selu replaces the generator's BatchNorm layers, which "
                       "conditional-batchnorm conditions on the class: keep one of them",
                       "Klambauer et al. 2017, Self-Normalizing Neural Networks"),)
    needed_to_sample = True  # the generator takes the class

    def __init__(self, **values):
        super().__init__(**values)
        self.num_classes: int | None = None  # from the ModelSpec, at build time

    def validate(self) -> None:
        default = next(p.default for p in self.params if p.name == "embed_dim")
        if not self.shared and self.embed_dim != default:
            raise ParamError(f"{self.name}: parameter 'embed_dim' got {self.embed_dim!r}, but "
                             "it sizes the shared class embedding, which only shared=true "
                             "uses")

    @hookimpl(tryfirst=True)
    def gantrix_transform_model(self, model, role, spec):
        if role != "generator":
            return None
        k = spec.num_classes
        if k is None or k < 2:
            raise ModelTransformError(
                f"{self.name} conditions the generator's BatchNorm layers on the class, so it "
                f"needs labelled data, but the data has {'none' if k is None else k} "
                f"(ModelSpec.num_classes): use labelled data with at least 2 classes (digits, "
                f"mnist, an image folder with a folder per class), or drop {self.name}")
        norms = [m for m in model.modules() if isinstance(m, BATCHNORM)]
        if not norms:
            raise ModelTransformError(
                f"{self.name} conditions the generator's BatchNorm layers, but the generator "
                f"({type(model).__name__}) has none: build one that has them (dcgan, resnet, "
                f"or your own with nn.BatchNorm layers), or condition it on the class by "
                f"concatenation alone (cgan, acgan and projection do, without {self.name})")
        odd = [m for m in norms if not isinstance(m, KINDS)]
        if odd:
            raise ModelTransformError(
                f"{self.name} cannot condition the generator's {type(odd[0]).__name__}: it "
                "replaces nn.BatchNorm1d, BatchNorm2d, BatchNorm3d and SyncBatchNorm (a lazy "
                "one's size is not known before its first pass): use one of those")
        self.num_classes = k
        embed_dim = self.embed_dim if self.shared else None
        condition_batchnorms(model, k, embed_dim)
        return ConditionalBatchNormGenerator(model, k, embed_dim)

    @hookimpl(trylast=True)
    def gantrix_condition(self, batch):
        batch.fake_labels = fake_labels(batch, "uniform", self.num_classes, self.name)
        batch.generator_inputs["labels"] = batch.fake_labels


@hookimpl
def gantrix_register_tricks(register):
    register(ConditionalBatchNormTrick)
