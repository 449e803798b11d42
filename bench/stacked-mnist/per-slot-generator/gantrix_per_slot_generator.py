"""``per-slot-generator``: in training, the generator makes each pack slot's samples in a
call of its own, as PacGAN's VEEGAN-setting code does (``G_sep``: one generator call per
slot, concatenated along channels).

gantrix's ``pac`` packs samples b = p·m … p·m + m − 1 into pack p, all made by one
generator call, so a BatchNorm layer normalises over the whole batch of B samples. Their
code calls the generator m times on B/m latent vectors each, so slot j's samples (b ≡ j
mod m) are normalised over their own B/m. This trick wraps the generator to do the same;
in eval mode (sampling, scoring) it is one call, with the running statistics, as their
sampler.
"""
from __future__ import annotations

import torch
from torch import nn

from gantrix.plugin import Architecture, Finding, GantrixError, Param, hookimpl


class PerSlotGenerator(nn.Module):
    """Runs ``wrapped`` once per slot j on the latent vectors z[j::m], in training."""

    def __init__(self, wrapped: nn.Module, m: int):
        super().__init__()
        self.wrapped = wrapped
        self.m = m

    def forward(self, z: torch.Tensor, **inputs) -> torch.Tensor:
        if not self.training:
            return self.wrapped(z, **inputs)
        if inputs:
            raise GantrixError("per-slot-generator: the generator gets per-sample inputs "
                               f"({', '.join(sorted(inputs))}); it splits only the latent batch")
        if z.shape[0] % self.m:
            raise GantrixError(f"per-slot-generator: the latent batch of {z.shape[0]} is not "
                               f"a multiple of m={self.m}")
        slots = [self.wrapped(z[j::self.m]) for j in range(self.m)]
        # slot j's sample of pack p goes back to position p·m + j
        return torch.stack(slots, dim=1).flatten(0, 1)


class PerSlotGeneratorTrick(Architecture):
    """The generator runs once per pack slot in training (PacGAN's VEEGAN code)."""

    name = "per-slot-generator"
    summary = "one generator call per pack slot, BatchNorm statistics per slot (PacGAN's code)"
    paper = "Lin, Khetan, Fanti & Oh 2018, PacGAN (code: stacked_MNIST_experiments/VEEGAN_experiment)"
    params = (Param("m", int, 2, "pack slots (pac's m)", low=2, high=16),)

    @hookimpl
    def gantrix_check_settings(self, batch_size, processes):
        if batch_size // processes % self.m == 0:
            return None
        return [Finding("error", f"per-slot-generator: each process's batch of "
                        f"{batch_size // processes} is not a multiple of m={self.m} (one "
                        "generator call per pack slot); use a batch divisible by "
                        f"{processes * self.m}", (self.name,), self.paper)]

    @hookimpl
    def gantrix_transform_model(self, model, role, spec):
        if role != "generator":
            return None
        return PerSlotGenerator(model, self.m)


@hookimpl
def gantrix_register_tricks(register):
    register(PerSlotGeneratorTrick)
