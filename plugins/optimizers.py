"""Optimizer policies: Adam, RMSProp, and the two time-scale update rule.

Each answers ``gantrix_configure_optimizer(params, role)`` with one optimizer per role
(``lr_g``/``lr_d`` override ``lr`` for the generator/critic). Each provides the tag
``"optimizer"`` and clashes with it, so a composition holds at most one; an Adam with
β1 > 0 also provides ``"momentum-optimizer"``, which weight clipping warns about.
"""
from __future__ import annotations

import torch

from gantrix import Clash, Param, Policy, hookimpl
from gantrix.step import adam

ONE_OPTIMIZER = "two optimizer tricks: a composition configures its optimizers once; keep one"
WGAN_PAPER = "Arjovsky, Chintala & Bottou 2017, Wasserstein GAN"
TTUR_PAPER = ("Heusel et al. 2017, GANs Trained by a Two Time-Scale Update Rule Converge to a "
              "Local Nash Equilibrium; Zhang et al. 2019, Self-Attention GANs (lr and betas)")


def _lr_params(lr: float) -> tuple[Param, ...]:
    """``lr`` for both players, and optional per-role overrides."""
    return (Param("lr", float, lr, "learning rate of both players", low=0.0, low_open=True),
            Param("lr_g", float, None, "the generator's learning rate (default: lr)",
                  low=0.0, low_open=True, optional=True),
            Param("lr_d", float, None, "the critic's learning rate (default: lr)",
                  low=0.0, low_open=True, optional=True))


def _betas(beta1: float, beta2: float) -> tuple[Param, ...]:
    """Adam's two decay rates, in [0, 1)."""
    return (Param("beta1", float, beta1, "Adam's first-moment decay (momentum)",
                  low=0.0, high=1.0, high_open=True),
            Param("beta2", float, beta2, "Adam's second-moment decay", low=0.0, high=1.0, high_open=True))


class _Optimizer(Policy):
    """Shared: the per-role learning rate, the optimizer tags and the one-optimizer rule."""

    provides = ("optimizer",)
    conflicts = (Clash("optimizer", ONE_OPTIMIZER),)

    def lr_for(self, role: str) -> float:
        """The learning rate of ``role`` (``"generator"`` or ``"discriminator"``)."""
        own = self.lr_g if role == "generator" else self.lr_d
        return self.lr if own is None else own

    def build(self, params, lr: float) -> torch.optim.Optimizer:
        """The optimizer over ``params`` with learning rate ``lr``."""
        raise NotImplementedError(f"{type(self).__name__} must define build")

    @hookimpl
    def gantrix_configure_optimizer(self, params, role):
        return self.build(params, self.lr_for(role))


class Adam(_Optimizer):
    """Adam (Kingma & Ba 2015) with the DCGAN paper's settings by default: lr 2e-4,
    β1 = 0.5 (the usual 0.9 "resulted in training oscillation and instability"), β2 = 0.999.
    """

    name = "adam"
    summary = "Adam optimizer (defaults: lr 2e-4, betas (0.5, 0.999), as DCGAN)"
    paper = "Kingma & Ba 2015, Adam; Radford et al. 2016, DCGAN §4 (lr and beta1)"
    params = (*_lr_params(2e-4), *_betas(0.5, 0.999))

    def features(self) -> set[str]:
        tags = super().features()
        return tags | {"momentum-optimizer"} if self.beta1 > 0 else tags

    def build(self, params, lr):
        return adam(params, lr, (self.beta1, self.beta2))


class RMSProp(_Optimizer):
    """RMSProp, the WGAN paper's optimizer (lr 5e-5, no momentum). The paper reports, as a
    negative result, that WGAN training became unstable at times with a momentum-based
    optimizer such as Adam (β1 > 0) on the critic: its loss is nonstationary, and as
    training blew up the Adam step turned against the gradient. Hence RMSProp.
    """

    name = "rmsprop"
    summary = "RMSProp (lr 5e-5) for WGAN: the WGAN paper found that momentum hurts"
    paper = WGAN_PAPER + ", Algorithm 1 and its negative result on momentum"
    params = (*_lr_params(5e-5),
              Param("alpha", float, 0.99, "the squared-gradient average's decay", low=0.0, high=1.0,
                    high_open=True))

    def build(self, params, lr):
        return torch.optim.RMSprop(params, lr=lr, alpha=self.alpha)


class TTUR(Adam):
    """The two time-scale update rule (Heusel et al. 2017): separate learning rates, the
    critic's larger than the generator's, under which GAN training converges to a local
    Nash equilibrium (under the paper's assumptions). SAGAN uses it to train with one critic
    step per generator step instead of several. Defaults as in SAGAN: Adam with
    lr_g = 1e-4, lr_d = 4e-4 and betas (0, 0.9) — no momentum unless ``beta1 > 0``.
    """

    name = "ttur"
    summary = "two time-scale update rule: Adam with lr_d 4e-4 > lr_g 1e-4, betas (0, 0.9)"
    paper = TTUR_PAPER
    params = (Param("lr_g", float, 1e-4, "the generator's learning rate", low=0.0, low_open=True),
              Param("lr_d", float, 4e-4, "the critic's learning rate", low=0.0, low_open=True),
              *_betas(0.0, 0.9))


@hookimpl
def gantrix_register_tricks(register):
    for cls in (Adam, RMSProp, TTUR):
        register(cls)
