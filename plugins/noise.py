"""Softening the critic's view: one-sided label smoothing, instance noise, and
differentiable augmentation."""
from __future__ import annotations

import re

import torch

from gantrix import distributed
from gantrix import (GantrixError, ModelTransformError, Param, ParamError, Policy,
                     Regularizer, Requires, hookimpl)

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
    params = (Param("sigma", float, 0.1, "the noise's initial standard deviation", low=0.0),
              Param("anneal_steps", int, 10_000,
                    "generator updates over which sigma falls linearly to 0 (0: never)", low=0))

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


# --------------------------------------------------------------------------- DiffAugment
# Each op maps a batch of images (N, C, H, W) to an augmented batch, differentiably, with
# its own random draw per sample.


def _randn_like(x: torch.Tensor) -> torch.Tensor:
    """N(0, 1) like ``x``, this process's rows of the global batch's draw."""
    return distributed.randn(x.shape[0], *x.shape[1:], device=x.device, dtype=x.dtype)


def _per_sample(x: torch.Tensor) -> torch.Tensor:
    """U[0, 1) of shape (N, 1, 1, 1), one draw per sample."""
    return distributed.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype)


def color(x: torch.Tensor) -> torch.Tensor:
    """Brightness shift in [−0.5, 0.5), saturation ×[0, 2), contrast ×[0.5, 1.5)."""
    x = x + (_per_sample(x) - 0.5)
    gray = x.mean(dim=1, keepdim=True)
    x = (x - gray) * (2 * _per_sample(x)) + gray
    level = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - level) * (_per_sample(x) + 0.5) + level


def _part(length: int, ratio: float) -> int:
    """``ratio`` of ``length`` rounded half up, as DiffAugment's reference code does (Python's
    round would take 0.5 to 0 and 2.5 to 2: 4×4 images never shifted, 20×20 by 2, not 3)."""
    return int(length * ratio + 0.5)


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size in each direction, zero-filled."""
    n, c, h, w = x.shape
    dy, dx = (distributed.randint(-m, m + 1, n, 1, 1, device=x.device)
              for m in (_part(h, ratio), _part(w, ratio)))
    rows = torch.arange(h, device=x.device).view(1, h, 1) - dy  # source row of each output row
    cols = torch.arange(w, device=x.device).view(1, 1, w) - dx
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)  # (N, H, W)
    index = (rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)).view(n, 1, h * w).expand(n, c, h * w)
    moved = x.reshape(n, c, h * w).gather(2, index).view(n, c, h, w)
    return moved * inside.unsqueeze(1).to(x.dtype)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one rectangle of ``ratio`` × the image size at a random place in each image
    (clipped at the borders).

    Its first row is uniform over −⌊s/2⌋ … h − ⌈s/2⌉ (columns alike), so at either extreme
    ⌈s/2⌉ of its s rows lie inside: the top and bottom rows (left and right columns) are cut
    equally often, as in DiffAugment's reference code."""
    n, _, h, w = x.shape
    sh, sw = max(1, _part(h, ratio)), max(1, _part(w, ratio))
    top = distributed.randint(-(sh // 2), h - (sh + 1) // 2 + 1, n, 1, 1, device=x.device)
    left = distributed.randint(-(sw // 2), w - (sw + 1) // 2 + 1, n, 1, 1, device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    cut = (rows >= top) & (rows < top + sh) & (cols >= left) & (cols < left + sw)
    return x * (~cut).unsqueeze(1).to(x.dtype)


def flip(x: torch.Tensor) -> torch.Tensor:
    """Mirror each image left to right with probability ½ (the flip of consistency
    regularization's T, Zhang et al. 2020): for data where a mirror image means the same."""
    mirrored = distributed.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
    return torch.where(mirrored, x.flip(-1), x)


AUGMENTATIONS = {"color": color, "translation": translation, "cutout": cutout, "flip": flip}


def parse_policy(trick, allowed=tuple(AUGMENTATIONS)) -> list[str]:
    """The augmentation names of ``trick.policy`` (joined by ``+`` or ``,``), each one of
    ``allowed``; raises ParamError naming the parameter, the value and the choices."""
    ops = [p.strip() for p in re.split(r"[+,]", trick.policy) if p.strip()]
    if not ops or any(p not in allowed for p in ops):
        raise ParamError(f"{trick.name}: parameter 'policy' got {trick.policy!r}; allowed: "
                         f"augmentations joined by '+' from {', '.join(allowed)}")
    return ops


def augment_images(name: str, ops, x: torch.Tensor) -> torch.Tensor:
    """Images ``x`` (N, C, H, W) through the augmentations ``ops`` in turn; a clear error
    naming the trick ``name`` for anything that is not a batch of images."""
    if x.dim() != 4:
        raise GantrixError(f"{name} augments images (N, C, H, W); got samples of shape "
                           f"{tuple(x.shape)}: remove it for vector data")
    for op in ops:
        x = op(x)
    return x


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
        ops = parse_policy(self)
        self.policy = self.config["policy"] = "+".join(ops)
        self.ops = [AUGMENTATIONS[p] for p in ops]

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, C, H, W) through every op of the policy."""
        return augment_images(self.name, self.ops, x)

    @hookimpl
    def gantrix_transform_model(self, model, role, spec):
        if role == "discriminator" and not spec.is_image:
            raise ModelTransformError(
                f"diffaugment augments images, but the data has shape {spec.shape}: "
                "translation and cutout mean nothing for vectors; remove it")
        return None

    @hookimpl
    def gantrix_prepare_batch(self, batch):
        batch.real = self.augment(batch.real)
        batch.fake = self.augment(batch.fake)


@hookimpl
def gantrix_register_tricks(register):
    for cls in (LabelSmoothing, InstanceNoise, DiffAugment):
        register(cls)
