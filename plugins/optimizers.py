"""Optimizer policies: Adam, RMSProp, SGD, and the two time-scale update rule.

Each answers ``gantrix_configure_optimizer(params, role)`` with one optimizer per role
(``lr_g``/``lr_d`` override ``lr`` for the generator/critic). Each provides the tag
``"optimizer"`` and clashes with it, so a composition holds at most one, and replaces it,
so the one a user adds (``--recipe wgan --trick sgd``) takes the recipe's place; an Adam
with β1 > 0 or an SGD with momentum also provides ``"momentum-optimizer"``, which weight
clipping warns about.
"""
from __future__ import annotations

import torch

from gantrix.plugin import Clash, Param, ParamError, Policy, Replaces, adam, hookimpl

ONE_OPTIMIZER = "two optimizer tricks: a composition configures its optimizers once; keep one"
REPLACED = "a composition configures its optimizers once, with the optimizer you name"
WGAN_PAPER = "Arjovsky, Chintala & Bottou 2017, Wasserstein GAN"
TTUR_PAPER = ("Heusel et al. 2017, GANs Trained by a Two Time-Scale Update Rule Converge to a "
              "Local Nash Equilibrium; Zhang et al. 2019, Self-Attention GANs (lr and betas)")


def _lr_params(lr: float) -> tuple[Param, ...]:
    """``lr`` for both players, and optional per-role overrides."""
    return (Param("lr", float, lr, "learning rate of both players",
                  low=0.0, low_open=True, high=1.0),
            Param("lr_g", float, None, "the generator's learning rate (default: lr)",
                  low=0.0, low_open=True, optional=True, high=1.0),
            Param("lr_d", float, None, "the critic's learning rate (default: lr)",
                  low=0.0, low_open=True, optional=True, high=1.0))


def _betas(beta1: float, beta2: float) -> tuple[Param, ...]:
    """Adam's two decay rates, in [0, 1)."""
    return (Param("beta1", float, beta1, "Adam's first-moment decay (momentum)",
                  low=0.0, high=1.0, high_open=True),
            Param("beta2", float, beta2, "Adam's second-moment decay",
                  low=0.0, high=1.0, high_open=True))


class _Optimizer(Policy):
    """Shared: the per-role learning rate, the optimizer tags and the one-optimizer rule."""

    provides = ("optimizer",)
    conflicts = (Clash("optimizer", ONE_OPTIMIZER),)
    replaces = (Replaces("optimizer", REPLACED),)

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


class SGD(_Optimizer):
    """Stochastic gradient descent, without momentum by default.

    The WGAN paper's negative result (§3): "WGAN training becomes unstable at times when
    one uses a momentum based optimizer such as Adam (with β1 > 0) on the critic, or when
    one uses high learning rates"; it switched to RMSProp. Plain SGD keeps no momentum
    either, the other choice the rule allows; the default lr is the paper's. Measured at
    the wgan recipe's budget on ring8 (docs/results.md), SGD did not match RMSProp at any
    lr from 5e-5 to 0.5: it lacks RMSProp's per-weight step scaling, which matters for a
    clipped critic whose gradients are tiny. ``momentum`` > 0 (with ``nesterov`` if
    wanted) makes it a momentum optimizer again, which weight clipping warns about.
    ``weight_decay`` is L2 decay, as in `torch.optim.SGD`. Added to a recipe
    (``--recipe wgan --trick sgd``) it replaces the recipe's optimizer, with a note.

        v ← μ·v + ∇θ + λ·θ;   θ ← θ − lr·v   (Nesterov: θ ← θ − lr·(∇θ + λ·θ + μ·v))
    """

    name = "sgd"
    summary = "plain SGD (lr 5e-5, no momentum): with RMSProp, the WGAN paper's momentum-free choice"
    paper = WGAN_PAPER + ", §3 and its negative result on momentum"
    params = (*_lr_params(5e-5),
              Param("momentum", float, 0.0, "momentum factor (0: none, as the WGAN rule asks)",
                    low=0.0, high=1.0, high_open=True),
              Param("nesterov", bool, False, "Nesterov momentum (needs momentum > 0)"),
              Param("weight_decay", float, 0.0, "L2 weight decay", low=0.0, high=1.0))

    def validate(self) -> None:
        if self.nesterov and self.momentum == 0:
            raise ParamError(f"{self.name}: nesterov=true needs momentum > 0 (got momentum=0)")

    def features(self) -> set[str]:
        tags = super().features()
        return tags | {"momentum-optimizer"} if self.momentum > 0 else tags

    def build(self, params, lr):
        return torch.optim.SGD(params, lr=lr, momentum=self.momentum, nesterov=self.nesterov,
                               weight_decay=self.weight_decay)


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
    params = (Param("lr_g", float, 1e-4, "the generator's learning rate",
                    low=0.0, low_open=True, high=1.0),
              Param("lr_d", float, 4e-4, "the critic's learning rate",
                    low=0.0, low_open=True, high=1.0),
              *_betas(0.0, 0.9))


@hookimpl
def gantrix_register_tricks(register):
    for cls in (Adam, RMSProp, SGD, TTUR):
        register(cls)
