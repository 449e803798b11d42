"""Softening the critic's view: one-sided label smoothing, instance noise, and
differentiable augmentation."""
from __future__ import annotations

import torch

from gantrix.plugin import (AUGMENTATIONS, Param, Policy, Regularizer, Requires, augment_images,
                            distributed, hookimpl, parse_policy, require_augmentable)

SALIMANS = "Salimans et al. 2016, Improved Techniques for Training GANs, §3.4"
SONDERBY = ("Sønderby et al. 2017, Amortised MAP Inference for Image Super-resolution; "
            "Arjovsky & Bottou 2017, Towards Principled Methods for Training GANs, §4")
DIFFAUG = "Zhao et al. 2020, Differentiable Augmentation for Data-Efficient GAN Training"


class LabelSmoothing(Regularizer):
    """One-sided label smoothing (Salimans et al. 2016): the critic's target on real samples
    is t = ``target`` = 0.9 instead of 1, fakes stay at 0, so the critic is not rewarded for
    ever more confident logits on the data. One-sided: smoothing the fakes' target too would
    reinforce the generator's current mistakes.

    With BCE on logits, BCE(r, t) = t·softplus(−r) + (1−t)·softplus(r) = BCE(r, 1) + (1−t)·r
    exactly (softplus(r) − softplus(−r) = r), so the trick adds (1−t)·mean(r) to a loss
    whose real term is BCE(r, 1) (minimax, nonsaturating: tag ``bce-real-term``). The term
    is part of that loss, so it is added at every update, never lazily.
    """

    name = "label-smoothing"
    summary = "one-sided label smoothing: the critic's real target is 0.9, not 1"
    paper = SALIMANS
    params = (Param("target", float, 0.9, "t, the critic's target on real samples",
                    low=0.0, high=1.0, low_open=True),)
    requires = (Requires("bce-real-term",
                         "it turns the loss's BCE(D(x), 1) into BCE(D(x), t), so the loss must "
                         "have that binary cross-entropy term on real logits", SALIMANS),)

    def d_term(self, batch):
        return (1.0 - self.target) * batch.real_logits.mean()

    @hookimpl
    def gantrix_discriminator_terms(self, batch):
        return {self.name: self.d_term(batch)}


class InstanceNoise(Policy):
    """Instance noise (Sønderby et al. 2017; Arjovsky & Bottou 2017 §4): add N(0, σ²) to the
    real and the generated samples before the critic sees them, in critic and generator
    updates alike, so the two distributions overlap and the critic cannot separate them
    perfectly. σ is annealed linearly from ``sigma`` to 0 over the first ``anneal_steps``
    generator updates (0: constant σ), since the noise also blurs what the critic sees.
    """

    name = "instance-noise"
    needed_to_sample = False  # it changes only the critic's training
    summary = "add N(0, sigma^2) to real and fake samples, sigma annealed linearly to 0"
    paper = SONDERBY
    params = (Param("sigma", float, 0.1, "the noise's initial standard deviation",
                    low=0.0, high=100.0),
              Param("anneal_steps", int, 10_000,
                    "generator updates over which sigma falls linearly to 0 (0: never)",
                    low=0, high=10**9))

    def __init__(self, **values):
        super().__init__(**values)
        self.progress = 0  # generator updates so far

    def sigma_at(self, step: int) -> float:
        """σ after ``step`` generator updates."""
        if self.anneal_steps == 0:
            return self.sigma
        return self.sigma * max(0.0, 1.0 - step / self.anneal_steps)

    @hookimpl
    def gantrix_prepare_batch(self, batch):
        sigma = self.sigma_at(self.progress)
        if sigma > 0:
            batch.real = batch.real + sigma * _randn_like(batch.real)
            batch.fake = batch.fake + sigma * _randn_like(batch.fake)

    @hookimpl
    def gantrix_after_generator_step(self, models, step):
        self.progress = step + 1

    @hookimpl
    def gantrix_state_dict(self):
        return {"instance-noise/progress": self.progress}

    @hookimpl
    def gantrix_load_state_dict(self, state):
        self.progress = int(state.get("instance-noise/progress", self.progress))


def _randn_like(x: torch.Tensor) -> torch.Tensor:
    """N(0, 1) like ``x``, this process's rows of the global batch's draw."""
    return distributed.randn(x.shape[0], *x.shape[1:], device=x.device, dtype=x.dtype)


# --------------------------------------------------------------------------- DiffAugment
# The augmentations are the core's (`gantrix.plugin.AUGMENTATIONS`), shared with
# consistency regularization and ADA.


class DiffAugment(Policy):
    """Differentiable augmentation (Zhao et al. 2020): the same random, differentiable
    transformations T are applied to the real and the generated images every time the
    critic sees them — D(T(x)), D(T(G(z))) — in critic *and* generator updates, so the
    critic cannot memorise a small training set while the generator still gets gradients
    through T. ``policy`` lists the ops, joined by ``+`` (or ``,``): ``color`` (brightness,
    saturation, contrast), ``translation`` (up to 1/8 of the size, zero-filled) and
    ``cutout`` (a square of half the size), the paper's choice for few-shot data.

    Each update draws its own transformations for the real and the fake batch; a gradient
    penalty at interpolates then interpolates between the augmented samples. Images only:
    translation and cutout have no meaning for vector data, so it is an error there.
    """

    name = "diffaugment"
    needed_to_sample = False  # it changes only the critic's training
    summary = "differentiable augmentation (color, translation, cutout) of real and fake images"
    paper = DIFFAUG
    params = (Param("policy", str, "color+translation+cutout",
                    f"augmentations joined by '+': {', '.join(AUGMENTATIONS)}"),)

    def validate(self) -> None:
        self.policy, self.ops = parse_policy(self)
        self.config["policy"] = self.policy

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, C, H, W) through every op of the policy."""
        return augment_images(self.name, self.ops, x)

    @hookimpl
    def gantrix_transform_model(self, model, role, spec):
        if role == "discriminator":
            require_augmentable(self.name, spec, self.ops)
        return None

    @hookimpl
    def gantrix_prepare_batch(self, batch):
        batch.real = self.augment(batch.real)
        batch.fake = self.augment(batch.fake)


@hookimpl
def gantrix_register_tricks(register):
    for cls in (LabelSmoothing, InstanceNoise, DiffAugment):
        register(cls)
