"""Minibatch standard deviation (Karras et al. 2018, ProGAN §3): give the critic a
statistic of the whole minibatch, so it can tell a batch of near-identical fakes from a
varied real batch and the generator is pushed towards variety (against mode collapse).
"""
from __future__ import annotations

import torch

from gantrix.plugin import (Architecture, BatchStatistic, Param, ParamError, distributed,
                            hookimpl, insert_before_last)

PAPER = ("Karras, Aila, Laine & Lehtinen 2018, Progressive Growing of GANs for Improved "
         "Quality, Stability, and Variation, §3")


def group_size(batch: int, group: int) -> int:
    """The group size for a batch of ``batch`` samples: ``group``, or the whole batch when it
    is smaller (as ProGAN's code does). A ``group`` that does not tile the batch is a
    `ParamError` naming the sizes that would: shrinking the group silently would weaken the
    statistic, down to a constant for a prime batch (groups of one sample have no spread)."""
    if batch <= group:
        return batch
    if batch % group:
        fits = [d for d in range(2, batch + 1) if batch % d == 0]
        raise ParamError(f"minibatch-stddev: parameter 'group' is {group}, which does not divide "
                         f"the batch of {batch} samples into whole groups; allowed for this "
                         f"batch: {', '.join(map(str, fits))} (or make the batch size a multiple "
                         f"of {group})")
    return group


class MinibatchStdDev(BatchStatistic):
    """Append one feature: the mean over features of each feature's std over its group.

    The batch is split into groups of ``group`` samples (sample b belongs to group
    b mod (B/group), as in ProGAN's code; a batch smaller than ``group`` is one group, and a
    batch that ``group`` does not divide is an error, see `group_size`); in each group, the standard deviation of every
    feature (channel × position) over the group's samples, sqrt(Var + 1e-8) with the biased
    variance, is averaged to one number, which every sample of the group gets as an extra
    channel (constant over positions, for images) or an extra feature (vectors).
    """

    def __init__(self, group: int = 4, eps: float = 1e-8):
        super().__init__()
        self.group, self.eps = group, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        g = group_size(b, self.group)
        y = x.reshape(g, b // g, *x.shape[1:])
        std = (y.var(0, correction=0) + self.eps).sqrt()          # (B/g, C, *spatial)
        s = std.flatten(1).mean(1)                                # (B/g,)
        s = s.repeat(g).reshape(b, 1, *[1] * (x.dim() - 2))       # sample b gets s[b mod B/g]
        return torch.cat([x, s.expand(b, 1, *x.shape[2:]).to(x.dtype)], 1)

    def extra_repr(self) -> str:
        return f"group={self.group}"


class MinibatchStdDevTrick(Architecture):
    """Insert a minibatch-stddev layer before the critic's last weight layer (ProGAN §3).

    The layer appends the mean, over all features, of each feature's standard deviation
    over a group of ``group`` samples (4 in ProGAN) as one extra channel (images) or
    feature (vectors); ``group`` must divide the batch size. The recipe check cannot know the
    batch size, so a group that does not divide it is refused at the critic's first forward
    pass (before any update), with the group sizes that would fit. The following layer is widened by one input, its weights kept. For
    the critic's layer stack (``.net``: the core's models, ``dcgan``'s); another critic is an
    error. It runs before the other architecture tricks' transforms, so a Q head or a
    spectral norm added later sees the widened layer. The critic's output then depends on the
    whole batch, as with BatchNorm: keep per-sample penalties in mind (ProGAN itself trained
    with WGAN-GP and this layer). With N processes (``--nproc``, torchrun) the groups are
    taken within each process's B/N samples, so the run is not the one-process run (the
    checker warns).
    """

    name = "minibatch-stddev"
    #: its groups are within each process's slice of the batch (`gantrix.distributed`)
    provides = (distributed.PER_RANK_BATCH,)
    needed_to_sample = False  # it changes only the critic's training
    summary = "critic sees the batch's feature std as an extra channel (ProGAN; vs mode collapse)"
    paper = PAPER
    params = (Param("group", int, 4, "samples per group (must divide the batch size; capped at "
                    "it)", low=2, high=4096),)

    @hookimpl(tryfirst=True)
    def gantrix_transform_model(self, model, role, spec):
        if role != "discriminator":
            return None
        return insert_before_last(model, 1, lambda layer: MinibatchStdDev(self.group), self.name)


@hookimpl
def gantrix_register_tricks(register):
    register(MinibatchStdDevTrick)
