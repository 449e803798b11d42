"""A third-party gantrix plugin, complete: two tricks and one command.

- ``softplus-margin`` (loss): the hinge loss made smooth. On critic logits r (real) and
  f (fake), with margin m ≥ 0,

      D = mean(softplus(m − r)) + mean(softplus(m + f)),    G = mean(softplus(m − f)).

  softplus(x) = log(1 + eˣ) is a smooth ReLU, so this is the hinge loss of geometric GAN
  (D = mean(relu(1 − r)) + mean(relu(1 + f))) without the kink at the margin: samples beyond
  it keep a small, decaying gradient instead of none. At m = 0 it is exactly the
  non-saturating GAN loss (BCE on logits), so m moves between the two.

- ``drift-penalty`` (regularizer): ε · mean(r²) on the critic's real logits, added to the
  critic loss, which keeps an unbounded critic's outputs from drifting far from zero
  (Progressive GAN, Karras et al. 2018, §A.1: ε = 0.001 with WGAN-GP).

- ``gantrix margin-demo``: prints both losses on random logits for a few margins.

It imports only gantrix's declared plugin API, ``gantrix.plugin``: the kinds, `Param`, the
relation records and ``hookimpl``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import typer

from gantrix.plugin import Clash, Loss, Param, Regularizer, hookimpl

__all__ = ["SoftplusMargin", "DriftPenalty"]


class SoftplusMargin(Loss):
    """Softplus-margin loss: a smooth hinge with margin m on critic logits.

    D = mean(softplus(m − r)) + mean(softplus(m + f));  G = mean(softplus(m − f)).

    m = 0 gives the non-saturating GAN loss; a larger m asks the critic for a wider gap
    between real and fake logits before it stops pushing, as the hinge loss does at m = 1.
    """

    name = "softplus-margin"
    summary = "smooth hinge: softplus(m - r) + softplus(m + f) for D, softplus(m - f) for G"
    paper = "a smooth relaxation of the hinge loss of Lim & Ye 2017, Geometric GAN"
    params = (Param("margin", float, 1.0, "m, the margin the critic aims for", low=0.0),)
    conflicts = (Clash("sigmoid-output", "the loss takes logits; a Sigmoid output squashes "
                       "them into (0, 1), inside any margin"),)
    generator_uses_real = False

    def d_loss(self, real_logits, fake_logits):
        m = self.margin
        return F.softplus(m - real_logits).mean() + F.softplus(m + fake_logits).mean()

    def g_loss(self, real_logits, fake_logits):
        return F.softplus(self.margin - fake_logits).mean()


class DriftPenalty(Regularizer):
    """Drift penalty: ε · mean(D(x)²) on real samples, added to the critic's loss.

    An unbounded critic (Wasserstein, hinge, softplus-margin) is free to shift all its
    outputs by a constant; this small term anchors them near zero. It reads the critic's
    logits that the batch already computed, so it costs no extra forward pass.
    """

    name = "drift-penalty"
    summary = "epsilon * mean(D(x)^2) on real data: keeps critic outputs near zero (ProGAN)"
    paper = "Karras et al. 2018, Progressive Growing of GANs, appendix A.1"
    params = (Param("epsilon", float, 0.001, "the penalty's weight", low=0.0),)

    def d_term(self, batch):
        return self.epsilon * batch.real_logits.square().mean()


@hookimpl
def gantrix_register_tricks(register):
    register(SoftplusMargin)
    register(DriftPenalty)


@hookimpl
def gantrix_register_commands(app):
    @app.command("margin-demo")
    def margin_demo(
        margin: list[float] = typer.Option([0.0, 1.0, 2.0], "--margin", "-m",
                                           help="Margins to show (repeat the option)."),
        batch: int = typer.Option(64, help="How many random logits per side."),
        seed: int = typer.Option(0, help="Random seed."),
    ) -> None:
        """Print the softplus-margin losses on random critic logits (real ~ N(1, 1), fake ~ N(-1, 1))."""
        rng = torch.Generator().manual_seed(seed)
        real = torch.randn(batch, generator=rng) + 1
        fake = torch.randn(batch, generator=rng) - 1
        losses = [SoftplusMargin(margin=m) for m in margin]  # checks m >= 0
        typer.echo(f"{'margin':>8}  {'D loss':>8}  {'G loss':>8}")
        for loss in losses:
            d, g = loss.d_loss(real, fake).item(), loss.g_loss(None, fake).item()
            typer.echo(f"{loss.margin:>8.3g}  {d:>8.4f}  {g:>8.4f}")
