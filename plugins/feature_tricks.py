"""Two tricks of Salimans et al. 2016 (Improved Techniques for Training GANs) built on the
critic's features f(x), the input of its last (scoring) layer:

- ``feature-matching`` (§3.1): the generator matches the mean of f on real and generated
  batches, ‖E_x f(x) − E_z f(G(z))‖²₂, as its whole loss or as a term beside the loss;
- ``minibatch-discrimination`` (§3.2): a layer before the critic's output gives each sample
  B similarities to the other samples of its minibatch, o(x_i)_b = Σ_j exp(−‖M_{i,b} −
  M_{j,b}‖₁) with M_i = f(x_i)·T, so the critic can tell a collapsed batch of fakes from a
  varied real one.

Both change only the critic (and the generator's objective): a run trained with them samples
without this plugin.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from gantrix.plugin import (Architecture, BatchStatistic, Clash, FeatureCritic, GantrixError,
                            ModelTransformError, Param, ParamError, Regularizer, distributed,
                            find_layers, hookimpl, insert_before_last, last_layer)

SALIMANS = ("Salimans, Goodfellow, Zaremba, Cheung, Radford & Chen 2016, Improved Techniques "
            "for Training GANs")
GP_PAPER = "Gulrajani et al. 2017, Improved Training of Wasserstein GANs, §4"
PROGAN = ("Karras, Aila, Laine & Lehtinen 2018, Progressive Growing of GANs for Improved "
          "Quality, Stability, and Variation, §3")

#: the key under which the wrapped critic returns its penultimate features.
FEATURES = "features"


# --------------------------------------------------------------------------- feature matching


def feature_layer(model: nn.Module) -> nn.Module:
    """The layer whose input is the critic's penultimate features f(x): its last Linear or
    Conv layer (`last_layer`), or, when layers that append a statistic of the minibatch
    (`BatchStatistic`s: minibatch-discrimination's, minibatch-stddev's) come right before it
    in the layer stack, the first of them. Their statistics are not features of x but of the batch, and
    o(x), up to the batch size on each of its B channels, would outweigh the features.
    Raises TypeError as `last_layer` does."""
    tap = last_layer(model)
    stack = list(find_layers(model))
    i = next((k for k, m in enumerate(stack) if m is tap), None)
    if i is None:  # nested in a block of the stack: nothing appended before it there
        return tap
    while i > 0 and isinstance(stack[i - 1], BatchStatistic):
        i -= 1
    return stack[i]


class MatchedFeatureCritic(FeatureCritic):
    """The critic, returning besides its outputs its penultimate features f(x) — the input of
    ``tap`` (`feature_layer`), flattened to one row per sample — under ``"features"``. They
    are kept by a forward pre-hook on ``tap`` during the critic's own forward pass, so the
    batch's one critic pass per side serves the loss and the feature matching."""

    def __init__(self, wrapped: nn.Module, tap: nn.Module):
        super().__init__(wrapped, tap, "feature-matching")

    def forward(self, x: torch.Tensor, **inputs) -> dict:
        out, features = self.critic(x, inputs)
        out = dict(out) if isinstance(out, dict) else {"logits": out}
        out[FEATURES] = features.flatten(1)
        return out


def side_features(batch, side: str) -> torch.Tensor:
    """f(x) on the batch's ``side`` from the critic's shared outputs, in at least float32."""
    out = batch.outputs(side)
    if FEATURES not in out:
        raise GantrixError(
            "feature-matching reads the critic's penultimate features, but the critic that "
            f"scored the {side} batch returned only {sorted(out)}: it is not the critic "
            "feature-matching wrapped (gantrix.build_models applies the transform)")
    features = out[FEATURES]
    return features.to(torch.promote_types(features.dtype, torch.float32))


TAKES_OVER = ("feature-matching (mode=loss) is the generator's whole loss: the loss trick "
              "trains only the critic (mode=term adds the distance to its generator loss "
              "instead)")


class FeatureMatching(Regularizer):
    """Feature matching (Salimans et al. 2016, §3.1): rather than maximise the critic's
    output, the generator matches the statistics of the real data in the critic's features,

        L_G = ‖E_x f(x) − E_z f(G(z))‖²₂

    estimated on each generator update's batches: the mean of f over the real batch and over
    the fakes, the squared difference summed over the features. The critic trains as usual,
    with the composition's loss trick, and so keeps finding the features worth matching.

    f is the critic's penultimate features: the input of its last Linear or Conv layer (the
    layer that makes the logit, found in its ``.net`` layer stack through any ``.wrapped``),
    flattened per sample — the last hidden layer of the core's MLP critic, the 4×4 map the
    scoring conv reads in the core's and dcgan's conv critics. The paper says "an intermediate
    layer"; its reference code (openai/improved-gan, train_*_feature_matching.py) matches the
    layer under the output (on CIFAR-10 the pooled features its last dense layer reads): the
    features the critic's decision is a linear function of, so the generator matches what the
    critic has learnt to tell real from fake. They are taken by a forward pre-hook on that
    layer during the critic's own forward pass (as infogan and acgan read them): the critic
    returns its logits and ``"features"``, and each side's one forward pass is shared with
    the loss. With ``minibatch-stddev`` or
    ``minibatch-discrimination`` in the composition the last layer also reads the statistics
    of the minibatch they append; f is the features they get, without those: they are not
    features of x, and o(x) (up to the batch size on each kernel) would outweigh the rest.

    The real features are the target: detached, so the gradient reaches G only through
    f(G(z)) (the critic is frozen in the generator's update anyway). The generator update's
    real batch is scored by the critic even when the loss trick reads no real logits there
    (``generator_uses_real = False``): this trick asks for that forward pass.

    ``mode``:

    - ``loss`` (default, the paper's): the distance replaces the generator's adversarial
      loss. It answers ``gantrix_generator_loss`` ahead of the loss trick (``tryfirst``,
      whatever the recipe's order); the loss trick still trains the critic. The logged
      generator loss ``g_loss`` is the distance.
    - ``term``: λ·distance (λ = ``weight``) is added to the loss trick's generator loss and
      logged as ``g/feature-matching``; lazy-regularization spaces it like any term.

    Scale: the paper's squared L2 norm, a sum over the features. The reference code averages
    over them instead (mean squared difference on MNIST, mean absolute difference on
    CIFAR-10): a constant factor, which Adam all but cancels on the generator's only loss; in
    ``term`` mode ``weight`` sets the balance.

    Relations: none declared; like every composition it needs a loss trick (for the critic).
    A critic without a ``.net`` layer stack ending in a Linear or Conv layer is an error
    finding. Needed to sample: no (it wraps only the critic).
    """

    name = "feature-matching"
    summary = "G matches the critic's mean penultimate features: ||E f(x) - E f(G(z))||^2"
    paper = SALIMANS + ", §3.1"
    params = (
        Param("mode", str, "loss", "loss: the generator's whole loss (the paper's); term: "
              "weight * distance added to the loss trick's generator loss",
              choices=("loss", "term")),
        Param("weight", float, 1.0, "lambda, the term's weight (mode=term only)",
              low=0.0, high=1e4),
    )
    needed_to_sample = False  # it wraps only the critic

    def validate(self) -> None:
        if self.mode == "loss" and self.weight != 1.0:
            raise ParamError(f"feature-matching: parameter 'weight' got {self.weight!r} with "
                             "mode=loss, where the distance is the generator's whole loss; "
                             "weight applies with mode=term")
        if self.mode == "loss":  # it takes the generator's loss over: say so in the check
            self.conflicts = (*type(self).conflicts,
                              Clash("loss", TAKES_OVER, self.paper, severity="note"))

    @hookimpl
    def gantrix_transform_model(self, model, role, spec):
        if role != "discriminator":
            return None
        try:
            tap = feature_layer(model)
        except TypeError as exc:
            raise ModelTransformError(
                f"feature-matching cannot find the critic's ({type(model).__name__}) "
                f"penultimate features: {exc}. Keep its layers in a `.net` nn.Sequential "
                "(found through `.wrapped`) whose last Linear or Conv layer makes the "
                "logit") from None
        return MatchedFeatureCritic(model, tap)

    def distance(self, batch) -> torch.Tensor:
        """‖mean f(real) − mean f(fake)‖²₂ on ``batch``, the real features detached (the
        means over the global batch when several processes share it)."""
        real = distributed.gather_rows(side_features(batch, "real").detach())
        fake = distributed.gather_rows(side_features(batch, "fake"))
        return (real.mean(0) - fake.mean(0)).square().sum()

    @hookimpl(tryfirst=True)
    def gantrix_generator_loss(self, batch):
        return self.distance(batch) if self.mode == "loss" else None

    def g_term(self, batch):
        return self.weight * self.distance(batch) if self.mode == "term" else None


# ------------------------------------------------------------------ minibatch discrimination


class MinibatchDiscrimination(BatchStatistic):
    """Append o(x) ∈ R^B, each sample's closeness to the samples of its minibatch.

    f(x_i) ∈ R^A is the input itself (a vector) or, for a feature map (N, A, *positions),
    its mean over the positions. M_i = f(x_i)·T ∈ R^{B×C} with the learned T ∈ R^{A×B×C};
    c_b(x_i, x_j) = exp(−‖M_{i,b} − M_{j,b}‖₁) and o(x_i)_b = Σ_j c_b(x_i, x_j) over the
    whole minibatch, j = i included (it adds 1). o is appended as B features (vectors) or B
    channels constant over the positions (maps).

    T starts from N(0, 1/A): each column T[:, b, c] has a norm of about 1, as the reference
    code's weight-normalised T has before its data-dependent rescaling.
    """

    def __init__(self, features: int, kernels: int, dims: int, pool: bool):
        super().__init__()
        self.kernels, self.dims, self.pool = kernels, dims, pool
        self.T = nn.Parameter(torch.randn(features, kernels, dims) / math.sqrt(features))

    def statistic(self, x: torch.Tensor) -> torch.Tensor:
        """o(x) of shape (N, B) for the minibatch ``x``."""
        f = x.flatten(2).mean(2) if self.pool else x
        m = (f @ self.T.flatten(1)).unflatten(1, (self.kernels, self.dims))   # (N, B, C)
        # ‖M_{i,b} − M_{j,b}‖₁ as (B, N, N), one of the C dimensions at a time from a
        # contiguous (C, B, N) copy: half the time of one (N, N, B, C) difference on a CPU,
        # and as differentiable (twice, under an input-gradient penalty)
        l1 = sum((col.unsqueeze(2) - col.unsqueeze(1)).abs()
                 for col in m.permute(2, 1, 0).contiguous())
        return torch.exp(-l1).sum(2).transpose(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.statistic(x).to(x.dtype)
        o = o.reshape(*o.shape, *[1] * (x.dim() - 2)).expand(-1, -1, *x.shape[2:])
        return torch.cat([x, o], 1)

    def extra_repr(self) -> str:
        a = self.T.shape[0]
        return f"A={a}, B={self.kernels}, C={self.dims}" + (", pooled" if self.pool else "")


BATCH_GRADIENT = (
    "minibatch discrimination makes each critic output depend on the whole batch (o(x_i) "
    "sums over every x_j), so the input gradient the penalty takes for each sample also "
    "holds the other samples' outputs' dependence on it: it is no longer the gradient of a "
    "per-sample function, which is what the penalty constrains (Gulrajani et al.'s case "
    "against batch normalisation in the critic)")
AT_OWN_POINTS = (
    BATCH_GRADIENT + "; and the points it is taken at (a batch of interpolates, or of "
    "perturbed reals) are scored against each other, not against the real or the fake batch "
    "the loss sees")


class MinibatchDiscriminationTrick(Architecture):
    """Minibatch discrimination (Salimans et al. 2016, §3.2): a layer before the critic's
    output gives each sample features that measure how close it is to the other samples of
    its minibatch, so the critic can reject a batch of fakes that has collapsed onto a few
    points — which a critic scoring each sample alone cannot see — and the generator is
    pushed towards variety:

        M_i = f(x_i)·T ∈ R^{B×C},              T ∈ R^{A×B×C} learned
        c_b(x_i, x_j) = exp(−‖M_{i,b} − M_{j,b}‖₁)
        o(x_i)_b = Σ_{j=1}^{n} c_b(x_i, x_j),   o(x_i) ∈ R^B

    and the output layer reads [f(x_i), o(x_i)]. The sum runs over the whole minibatch, j = i
    included, as the paper writes it (the reference code, openai/improved-gan's
    ``nn.MinibatchLayer``, leaves j = i out: a constant 1 per kernel, which the output
    layer's bias absorbs). The real and the generated batches are scored in separate critic
    passes, so o compares each sample with its own side only, as in the paper.

    Placement: inserted before the critic's last Linear or Conv layer (in its ``.net`` layer
    stack: the core's critics, dcgan's), which is widened by B inputs. f is that layer's
    input: a vector for a Linear; for a conv, its channels averaged over the positions (A =
    the channel count), as the reference code pools its features before this layer — so T's
    size does not depend on the image size, and o is appended as B channels constant over the
    positions. The widened layer keeps its weights; those it gets for o start at zero, since
    o ranges up to the batch size: the critic starts as the function it was and learns how
    far to trust o (the reference code's data-dependent initialisation likewise centres o to
    add nothing on average at first). T starts from N(0, 1/A), each kernel's column of norm
    about 1 as in the reference code's weight-normalised T. It runs before the other
    architecture tricks' transforms (so a Q head, a projection or spectral norm added later
    sees the widened layer; feature-matching reads the features before it, without o);
    another critic is an error finding.

    Parameters: ``kernels`` B = 16 and ``dims`` C = 5. The reference code uses B = 100 and
    C = 5, on CIFAR-10's 192 pooled features at batches of 100. The layer costs N²·B·C per
    critic pass for a batch of N, and gantrix trains the 2-D data at batches of 256: there
    B = 16 already makes a CPU step about 4× dearer (measured with the core's 2-D models:
    about 15 → 65 ms), B = 100 about 50×; at the image batches of 64 either is cheap. T
    holds A·B·C weights: 20k beside the 133k of the core's 2-D critic, 5k–10k on the core's
    and dcgan's 8×8 and 32×32 conv critics. Raise B for larger critics and smaller batches.

    Relations: with ``minibatch-stddev``, a warning: the same idea twice (ProGAN's §3 offers
    minibatch stddev as the simpler, parameter-free version of this layer); keep one. With a
    per-sample input-gradient penalty the batch coupling breaks the penalty's premise, as
    BatchNorm in the critic does (Gulrajani et al. §4): each sample's input gradient also
    carries the other samples' outputs, and ``gradient-penalty``'s interpolates and
    ``dragan``'s perturbed reals are scored as a batch of their own. An error with
    ``gradient-penalty`` (for WGAN-GP, minibatch-stddev is the statistic ProGAN trained
    with), a warning with ``r1``, ``r2`` and ``dragan``: the severities of the penalties'
    own BatchNorm rule. Needed to sample: no (it changes only the critic).
    With N processes (``--nproc``, torchrun) each sample is compared with its own process's
    B/N samples only, so the run is not the one-process run (the checker warns).
    """

    name = "minibatch-discrimination"
    #: each sample is compared with its own process's slice of the batch
    provides = (distributed.PER_RANK_BATCH,)
    summary = "critic sees each sample's closeness to the rest of its batch (Salimans 2016)"
    paper = SALIMANS + ", §3.2"
    params = (
        Param("kernels", int, 16, "B, the number of kernels: features o(x) appended (the "
              "reference code's: 100)", low=1, high=1024),
        Param("dims", int, 5, "C, the dimensions per kernel (the reference code's: 5)",
              low=1, high=1024),
    )
    conflicts = (
        Clash("minibatch-stddev", "minibatch-stddev and minibatch-discrimination both give "
              "the critic a statistic of the minibatch before its output, against mode "
              "collapse; minibatch stddev is the parameter-free simplification of "
              "minibatch discrimination: keep one of them", PROGAN, severity="warning"),
        Clash("gradient-penalty", AT_OWN_POINTS + ". For WGAN-GP with a minibatch statistic "
              "use minibatch-stddev, one statistic averaged over the batch, as ProGAN does",
              GP_PAPER),
        Clash("r1", BATCH_GRADIENT, GP_PAPER, severity="warning"),
        Clash("r2", BATCH_GRADIENT, GP_PAPER, severity="warning"),
        Clash("dragan", AT_OWN_POINTS, GP_PAPER, severity="warning"),
    )
    needed_to_sample = False  # it changes only the critic

    @hookimpl(tryfirst=True)
    def gantrix_transform_model(self, model, role, spec):
        if role != "discriminator":
            return None
        return insert_before_last(model, self.kernels, self.layer_for, self.name, zero_new=True)

    def layer_for(self, layer: nn.Module) -> MinibatchDiscrimination:
        """The minibatch-discrimination layer before ``layer``, on the features it reads."""
        linear = isinstance(layer, nn.Linear)
        features = layer.in_features if linear else layer.in_channels
        return MinibatchDiscrimination(features, self.kernels, self.dims, pool=not linear)


@hookimpl
def gantrix_register_tricks(register):
    register(FeatureMatching)
    register(MinibatchDiscriminationTrick)
