"""Policies on the networks' weights: WGAN's weight clipping, and an exponential moving
average of the generator's weights for sampling."""
from __future__ import annotations

import copy

import torch
from torch import nn

from gantrix.plugin import Clash, Param, Policy, hookimpl, kernels

WGAN_PAPER = "Arjovsky, Chintala & Bottou 2017, Wasserstein GAN"
#: where the averaged generator lives in `gantrix.Models.extra`.
EXTRA_KEY = "generator_ema"
#: this trick's key in a checkpoint.
STATE_KEY = "ema/generator"


class WeightClip(Policy):
    """Clamp every critic parameter to [−c, c] after each critic update (WGAN, Algorithm 1,
    c = 0.01), a crude way to keep the critic K-Lipschitz for some K.

    Under a momentum optimizer (Adam with β1 > 0, SGD with momentum) the WGAN paper found
    training unstable at times and recommends RMSProp (SGD works too): a warning. A gradient penalty replaces clipping (Gulrajani
    et al. 2017: clipping wastes capacity and makes gradients explode or vanish).
    """

    name = "weight-clip"
    summary = "clamp every critic weight to [-c, c] after each critic update (WGAN, c = 0.01)"
    paper = WGAN_PAPER + ", Algorithm 1"
    params = (Param("c", float, 0.01, "the clipping bound", low=0.0, low_open=True, high=10.0),)
    provides = ("lipschitz-constraint",)
    conflicts = (Clash("momentum-optimizer",
                       "weight clipping under a momentum optimizer (Adam with beta1 > 0, SGD "
                       "with momentum) made WGAN training unstable at times; the WGAN paper "
                       "uses RMSProp, and SGD works too (add rmsprop or sgd, or adam:beta1=0)",
                       WGAN_PAPER, severity="warning"),)

    @hookimpl
    def gantrix_after_discriminator_step(self, models, step):
        kernels.clip_(models.discriminator.parameters(), self.c)


class EMA(Policy):
    """An exponential moving average of the generator's weights, the network to sample from
    (Karras et al. 2018, ProGAN; Yazıcı et al. 2019 show it improves every GAN they tried):

        θ_ema ← β·θ_ema + (1 − β)·θ   after each generator update from step ``start`` on,

    with β = ``decay``. Before ``start`` the copy follows the generator exactly; buffers
    (BatchNorm statistics) are copied, not averaged. The averaged generator lives in
    ``models.extra["generator_ema"]`` (also `EMA.averaged`) and is checkpointed by this
    trick under ``"ema/generator"``.
    """

    name = "ema"
    summary = "sample from an exponential moving average of G's weights (decay 0.999)"
    paper = ("Yazıcı et al. 2019, The Unusual Effectiveness of Averaging in GAN Training; "
             "Karras et al. 2018, Progressive Growing of GANs")
    params = (Param("decay", float, 0.999, "beta: the weight of the old average per update",
                    low=0.0, high=1.0, high_open=True),
              Param("start", int, 0, "the generator update from which weights are averaged",
                    low=0, high=10**9))

    def __init__(self, **values):
        super().__init__(**values)
        self._model: nn.Module | None = None

    def averaged(self, models) -> nn.Module:
        """The averaged generator, published in ``models.extra["generator_ema"]`` (a copy of
        the generator until the first update)."""
        if self._model is None:
            self._model = copy.deepcopy(models.generator).requires_grad_(False)
        models.extra[EXTRA_KEY] = self._model
        return self._model

    @hookimpl
    def gantrix_after_generator_step(self, models, step):
        fresh = self._model is None
        ema = self.averaged(models)
        if fresh:  # the copy was just taken: it is the generator as it is now
            return
        with torch.no_grad():
            params = list(models.generator.parameters())
            averaged = list(ema.parameters())
            if step < self.start:
                torch._foreach_copy_(averaged, params)
            else:
                torch._foreach_lerp_(averaged, params, 1.0 - self.decay)
            for mine, theirs in zip(ema.buffers(), models.generator.buffers()):
                mine.copy_(theirs)

    @hookimpl
    def gantrix_state_dict(self):
        return None if self._model is None else {STATE_KEY: self._model.state_dict()}

    @hookimpl
    def gantrix_load_state_dict(self, state, models):
        if STATE_KEY in state:
            self.averaged(models).load_state_dict(state[STATE_KEY])


@hookimpl
def gantrix_register_tricks(register):
    for cls in (WeightClip, EMA):
        register(cls)
