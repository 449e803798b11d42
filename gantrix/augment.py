"""Differentiable image augmentations, shared by the tricks that augment what the critic
sees (DiffAugment, consistency regularization, ADA) and exported to plugins by
`gantrix.plugin`.

Each op maps a batch of images (N, C, H, W) to an augmented batch, differentiably, with its
own random draw per sample. The draws are this process's rows of a draw for the global batch
(`gantrix.distributed`), so N processes augment as one would.
"""
from __future__ import annotations

import re
from typing import Callable

import torch

from . import distributed
from .errors import ParamError
from .models import require_images

#: an augmentation: images (N, C, H, W) → augmented images of the same shape.
Augmentation = Callable[[torch.Tensor], torch.Tensor]


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


#: every augmentation by the name a ``policy`` parameter uses.
AUGMENTATIONS: dict[str, Augmentation] = {
    "color": color, "translation": translation, "cutout": cutout, "flip": flip}


def parse_policy(trick, allowed=tuple(AUGMENTATIONS),
                 order=None) -> tuple[str, list[Augmentation]]:
    """``trick.policy`` (augmentation names joined by ``+`` or ``,``, each one of
    ``allowed``) as (the policy normalised: the names joined by ``+``, the ops in that
    order). With ``order`` the names are put in that order, each once; otherwise they stay
    as given. Raises `ParamError` naming the trick, the parameter, the value and the choices.

    A trick's ``validate`` stores both: ``self.policy, self.ops = parse_policy(self)`` and
    ``self.config["policy"] = self.policy``."""
    names = [p.strip() for p in re.split(r"[+,]", trick.policy) if p.strip()]
    if not names or any(p not in allowed for p in names):
        raise ParamError(f"{trick.name}: parameter 'policy' got {trick.policy!r}; allowed: "
                         f"augmentations joined by '+' from {', '.join(allowed)}")
    if order is not None:
        names = [name for name in order if name in names]
    return "+".join(names), [AUGMENTATIONS[name] for name in names]


def policy_name(ops) -> str:
    """The policy that names ``ops`` (augmentations of `AUGMENTATIONS`): ``color+cutout``."""
    return "+".join(op.__name__ for op in ops)


def require_augmentable(owner: str, data, ops, does: str = "augments images") -> None:
    """`require_images` for a trick that augments with ``ops``: its refusal of vector data
    (a `ModelSpec` at build time, a batch of samples at run time) says that those
    augmentations mean nothing for vectors."""
    require_images(owner, data, does, f"{policy_name(ops)} means nothing for vectors")


def augment_images(owner: str, ops, x: torch.Tensor) -> torch.Tensor:
    """Images ``x`` (N, C, H, W) through the augmentations ``ops`` in turn; a clear error
    naming the trick ``owner`` for anything that is not a batch of images."""
    require_augmentable(owner, x, ops)
    for op in ops:
        x = op(x)
    return x
