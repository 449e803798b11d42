"""``zero-one-data``: train a Tanh generator against data scaled to [0, 1], as PacGAN's
VEEGAN-setting code does (its MNIST loader divides by 255; its generator ends in Tanh).

gantrix serves images in [−1, 1]. Mapping their setting by x ↦ 2x − 1 gives ours: the data
land in [−1, 1] and their generator's output tanh(h) becomes 2·tanh(h) − 1, in [−3, 1]. So
this trick appends that affine map after the generator's Tanh: the generator has to learn
to keep its background at tanh's centre (0 in their scale), where DCGAN's data put it at
tanh's saturated end. Their critic's first layer sees x where ours sees 2x − 1 (the same
functions, its weights at twice the scale). The classifier scores what the generator makes,
as theirs did (theirs also saw values outside the data's range).
"""
from __future__ import annotations

import torch
from torch import nn

from gantrix.plugin import Architecture, find_layers, hookimpl


class ToMinusOneOne(nn.Module):
    """y ↦ 2y − 1: a [0, 1] image in gantrix's [−1, 1] scale."""

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return 2 * y - 1


class ZeroOneData(Architecture):
    """The generator's Tanh output is compared with data in [0, 1] (PacGAN's VEEGAN code)."""

    name = "zero-one-data"
    summary = "a Tanh generator against data in [0, 1], as PacGAN's VEEGAN-setting code"
    paper = "Lin, Khetan, Fanti & Oh 2018, PacGAN (code: stacked_MNIST_experiments/VEEGAN_experiment)"

    @hookimpl
    def gantrix_transform_model(self, model, role, spec):
        if role != "generator":
            return None
        find_layers(model).append(ToMinusOneOne())
        return model


@hookimpl
def gantrix_register_tricks(register):
    register(ZeroOneData)
