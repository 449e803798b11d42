"""Gradient penalties on the critic: WGAN-GP, R1, R2 and DRAGAN.

Each is a penalty on the norm of the critic's input gradient, taken per sample over all
non-batch dimensions and averaged over the batch (`gantrix.kernels.grad_norm_penalty`):

- ``gradient-penalty``: λ·E[(‖∇D(x̂)‖₂ − 1)²] at interpolates x̂ = εx + (1−ε)x̃ (WGAN-GP);
- ``r1`` / ``r2``: γ/2·E[‖∇D(x)‖²] at real (R1) or fake (R2) samples (zero-centred);
- ``dragan``: λ·E[(‖∇D(x̂)‖ − 1)²] at points x̂ around the real data.

Where the penalty is taken at the batch's own samples (R1, R2, interpolate=false), the
input gradient comes from the batch (`Batch.input_grad`) so the critic's forward pass is
shared with the loss; the penalty asks for it in ``gantrix_prepare_batch``.

Relations (declared below, checked before training):

- ``gradient-penalty`` and ``dragan`` replace ``weight-clip``: both are the Lipschitz
  constraint the clipping was a crude stand-in for; naming both explicitly is an error.
- ``r1`` / ``r2`` with ``weight-clip``: a warning — two constraints on the critic, the
  clipped critic's gradients are already bounded, so the penalty costs a double backward
  for little effect.
- A BatchNorm critic (tag ``critic-batchnorm``, and any BatchNorm module found in the built
  critic) is an error under ``gradient-penalty`` (Gulrajani et al. 2017 §4: batch
  normalisation maps a batch to a batch, so the per-sample gradient the penalty constrains
  is no longer the gradient of a per-sample function) and a warning under the others, whose
  papers do not rule on it but whose per-sample norms suffer the same way.
"""
from __future__ import annotations

import torch
from torch import nn

from gantrix.plugin import (Clash, Finding, Param, Regularizer, Replaces, distributed, hookimpl,
                            kernels)

GP_PAPER = "Gulrajani et al. 2017, Improved Training of Wasserstein GANs"
LP_PAPER = "Petzka, Fischer & Lukovnikov 2018, On the regularization of Wasserstein GANs"
R1_PAPER = "Mescheder, Geiger & Nowozin 2018, Which Training Methods for GANs do actually Converge?, §4.1"
DRAGAN_PAPER = "Kodali et al. 2017, On Convergence and Stability of GANs (DRAGAN)"

BN_REASON = ("BatchNorm in the critic makes each output depend on the whole batch, so the "
             "per-sample input gradient the penalty constrains is meaningless; use layer "
             "normalisation (dcgan:critic_norm=layer) or none")
CLIP_REPLACED = ("a gradient penalty enforces the Lipschitz constraint that weight clipping "
                 "only approximates, without clipping's capacity loss and exploding or "
                 "vanishing gradients")
CLIP_REDUNDANT = ("weight clipping already bounds the critic's gradients; a gradient penalty "
                  "on top of it costs a double backward for little effect: use one of them")


def batchnorm_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(qualified name, module) of every batch-normalisation layer in ``model``."""
    return [(n or type(model).__name__, m) for n, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)]


class _InputGradientPenalty(Regularizer):
    """Shared rule: find BatchNorm in the built critic (an error or a warning). The penalty
    differentiates the critic's input gradient: the critic's forward pass twice."""

    differentiates_twice = ("discriminator",)

    #: severity of a BatchNorm critic under this penalty.
    batchnorm_severity = "warning"
    batchnorm_paper = ""

    @hookimpl
    def gantrix_check_model(self, model, role):
        if role != "discriminator":
            return None
        found = batchnorm_modules(model)
        if not found:
            return None
        where = ", ".join(f"{n!r} ({type(m).__name__})" for n, m in found)
        return [Finding(self.batchnorm_severity, f"the critic has batch normalisation at {where}: "
                        + BN_REASON, (self.name,), self.batchnorm_paper)]

    def _due(self, batch) -> bool:
        """Whether this penalty is computed on ``batch`` (a critic update on a lazy-regularization
        step), so the input gradient is requested only when it will be used."""
        return batch.phase == "discriminator" and batch.step % batch.regularization_interval(self) == 0


class GradientPenalty(_InputGradientPenalty):
    """WGAN-GP's gradient penalty (Gulrajani et al. 2017, Algorithm 1):

        λ · E[(‖∇ₓ D(x̂)‖₂ − c)²],   x̂ = εx + (1−ε)x̃,  ε ~ U[0, 1] per sample,

    with λ = ``weight`` = 10 and c = ``center`` = 1. The norm is per sample over all
    non-batch dimensions. ``one_sided`` penalises only norms above c, max(0, ‖∇‖ − c)²: the
    Lipschitz penalty of Petzka et al. 2018, which does not push the gradient up where the
    critic is flatter than allowed. ``interpolate=false`` penalises at the real and the fake
    samples themselves instead of interpolates — ½(P(real) + P(fake)), the mean over both —
    reusing the input gradients of the critic's one forward pass on the batch (cheaper: no
    third forward pass).

    The interpolates are scored with the real samples' conditioning (class labels under
    ``cgan``). A critic with BatchNorm is an error (the paper's §4: "no critic batch
    normalization"); use layer normalisation.
    """

    name = "gradient-penalty"
    summary = "WGAN-GP: lambda * E[(||grad D(x_hat)|| - 1)^2] at real/fake interpolates"
    paper = GP_PAPER
    params = (
        Param("weight", float, 10.0, "lambda, the penalty's weight", low=0.0, high=1e4),
        Param("center", float, 1.0, "the target gradient norm (the Lipschitz constant)",
              low=0.0, high=100.0),
        Param("one_sided", bool, False,
              "penalise only norms above center: max(0, ||grad|| - center)^2 (Petzka et al. 2018)"),
        Param("interpolate", bool, True,
              "penalise at random interpolates (true) or at the real and fake samples (false)"),
    )
    provides = ("lipschitz-penalty", "lipschitz-constraint")
    replaces = (Replaces("weight-clip", CLIP_REPLACED, GP_PAPER + ", §3"),)
    conflicts = (Clash("critic-batchnorm", BN_REASON, GP_PAPER + ", §4"),)
    batchnorm_severity = "error"
    batchnorm_paper = GP_PAPER + ", §4"

    @hookimpl
    def gantrix_prepare_batch(self, batch):
        if not self.interpolate and self._due(batch):
            batch.require_input_grad("real")
            batch.require_input_grad("fake")

    def d_term(self, batch, eps: torch.Tensor | None = None):
        """The penalty on ``batch``; ``eps`` (shape (B,)) fixes the interpolation weights,
        which are otherwise drawn U[0, 1) per sample."""
        opts = dict(weight=self.weight, center=self.center, one_sided=self.one_sided)
        if not self.interpolate:
            return 0.5 * (kernels.grad_norm_penalty(batch.input_grad("real"), **opts)
                          + kernels.grad_norm_penalty(batch.input_grad("fake"), **opts))
        return kernels.gradient_penalty(lambda x: batch.critic(x, "real"),
                                        batch.sample("real"), batch.sample("fake"),
                                        eps=distributed.rand if eps is None else eps,
                                        grad_scale=batch.grad_scale, **opts)


class R1(_InputGradientPenalty):
    """R1 (Mescheder et al. 2018): a zero-centred penalty on the critic's gradient at the
    real data,

        γ/2 · E_real[‖∇ₓ D(x)‖²],   γ = ``gamma`` = 10,

    which makes GAN training locally convergent where WGAN-GP's is not. The gradient is
    taken from the critic's forward pass on the real batch (shared with the loss). With
    ``lazy-regularization`` it is computed every k-th critic update, scaled by k (StyleGAN2).
    """

    name = "r1"
    summary = "R1: gamma/2 * E[||grad D(x)||^2] on real data (zero-centred, Mescheder et al. 2018)"
    paper = R1_PAPER
    params = (Param("gamma", float, 10.0, "gamma; the penalty is gamma/2 * E||grad||^2",
                    low=0.0, high=1e4),)
    conflicts = (Clash("weight-clip", CLIP_REDUNDANT, R1_PAPER, severity="warning"),
                 Clash("critic-batchnorm", BN_REASON, severity="warning"))
    #: which side's samples the penalty is taken at.
    side = "real"

    @hookimpl
    def gantrix_prepare_batch(self, batch):
        if self._due(batch):
            batch.require_input_grad(self.side)

    def d_term(self, batch):
        return kernels.grad_norm_penalty(batch.input_grad(self.side), center=0.0,
                                         weight=self.gamma / 2)


class R2(R1):
    """R2 (Mescheder et al. 2018): R1's zero-centred penalty taken at the generated samples,

        γ/2 · E_fake[‖∇ₓ D(x̃)‖²],   γ = ``gamma`` = 10.
    """

    name = "r2"
    summary = "R2: gamma/2 * E[||grad D(x)||^2] on generated data (zero-centred)"
    side = "fake"


class DRAGAN(_InputGradientPenalty):
    """DRAGAN (Kodali et al. 2017): a gradient penalty in a neighbourhood of the real data,
    where the paper finds the sharp gradients of mode collapse,

        λ · E[(‖∇ₓ D(x̂)‖ − 1)²],   x̂ = x + (1−ε)(x_p − x),   x_p = x + c·std(x)·u,

    with u ~ U[0, 1) per element, std taken over the whole real batch, ε ~ U[0, 1) per
    sample, c = ``scale`` = 0.5 and λ = ``weight`` = 10, as in the paper's reference
    implementation.
    """

    name = "dragan"
    summary = "DRAGAN: lambda * E[(||grad D(x + noise)|| - 1)^2] around the real data"
    paper = DRAGAN_PAPER
    params = (
        Param("weight", float, 10.0, "lambda, the penalty's weight", low=0.0, high=1e4),
        Param("scale", float, 0.5, "c: the perturbation is c * std(x) * U[0, 1)",
              low=0.0, low_open=True, high=10.0),
    )
    provides = ("lipschitz-penalty", "lipschitz-constraint")
    replaces = (Replaces("weight-clip", CLIP_REPLACED, DRAGAN_PAPER),)
    conflicts = (Clash("critic-batchnorm", BN_REASON, severity="warning"),)

    def d_term(self, batch, eps: torch.Tensor | None = None, noise: torch.Tensor | None = None):
        """The penalty on ``batch``; ``eps`` (B,) and ``noise`` (like the real batch, in
        [0, 1)) fix the random draws, which are otherwise sampled."""
        real = batch.sample("real").detach()
        if noise is None:
            noise = distributed.rand(real.shape[0], *real.shape[1:], device=real.device, dtype=real.dtype)
        perturbed = real + self.scale * _std(real) * noise
        return kernels.gradient_penalty(lambda x: batch.critic(x, "real"), real, perturbed,
                                        eps=distributed.rand if eps is None else eps,
                                        weight=self.weight, center=1.0,
                                        grad_scale=batch.grad_scale)


def _std(x: torch.Tensor) -> torch.Tensor:
    """``x.std()`` (over every element, with Bessel's correction) of the global batch when
    processes share it (`gantrix.distributed`): from the mean of the processes' first and
    second moments."""
    if not distributed.active():
        return x.std()
    moments = distributed.mean_across_ranks(torch.stack([x.mean(), x.square().mean()]))
    n = x.numel() * distributed.world_size()
    return ((moments[1] - moments[0].square()).clamp_min(0) * (n / (n - 1))).sqrt()


@hookimpl
def gantrix_register_tricks(register):
    for cls in (GradientPenalty, R1, R2, DRAGAN):
        register(cls)
