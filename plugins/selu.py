"""Self-normalising networks (Klambauer et al. 2017) for both GAN models.

SELU, selu(x) = λ·x for x > 0 and λ·α·(eˣ − 1) otherwise (α ≈ 1.6733, λ ≈ 1.0507), has a
stable fixed point at zero mean and unit variance: activations of a network with
LeCun-normal weights (w ~ N(0, 1/fan_in)) converge towards it layer after layer, so no
normalisation layer is needed. The GAN papers that tried it found training steadier
without BatchNorm's batch coupling.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from gantrix import Architecture, Clash, hookimpl
from gantrix.models import find_layers

PAPER = "Klambauer, Unterthiner, Mayr & Hochreiter 2017, Self-Normalizing Neural Networks"

LAYER = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d,
         nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
NORM = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm,
        nn.modules.instancenorm._InstanceNorm, nn.LocalResponseNorm)
ACTIVATION = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.GELU,
              nn.SiLU, nn.Mish, nn.Softplus, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish,
              nn.Hardsigmoid, nn.Softsign)
DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def fan_in(layer: nn.Module) -> float:
    """How many weighted inputs meet in one output unit.

    Linear: in_features; convolution: in_channels/groups · ∏kernel; transposed
    convolution: in_channels/groups · ∏(kernel/stride), the average number of taps that
    land on one output position (PyTorch's own fan-in formula reads the transposed weight
    the wrong way round and gives the fan-out).
    """
    if isinstance(layer, nn.Linear):
        return float(layer.in_features)
    n = layer.in_channels // layer.groups * math.prod(layer.kernel_size)
    if isinstance(layer, nn.modules.conv._ConvTransposeNd):
        return n / math.prod(layer.stride)
    return float(n)


def lecun_normal_(layer: nn.Module) -> None:
    """w ~ N(0, 1/fan_in), bias 0 — on the raw weight when the layer is parametrized."""
    weight = (layer.parametrizations.weight.original
              if parametrize.is_parametrized(layer, "weight") else layer.weight)
    with torch.no_grad():
        weight.normal_(0.0, fan_in(layer) ** -0.5)
        if layer.bias is not None:
            layer.bias.zero_()


def selu_transform(model: nn.Module) -> nn.Module:
    """Make ``model`` self-normalising in place and return it.

    Every hidden activation becomes SELU; the output activation (G's Tanh, a critic's
    Sigmoid: any activation after the last weight layer of the model's layer stack,
    `gantrix.models.find_layers`, else of the whole model) stays. Normalisation layers
    become Identity, dropout becomes alpha dropout (which keeps the fixed point), linear
    and conv weights get LeCun-normal initialisation and zero biases.
    """
    stack = list((find_layers(model) or model).modules())
    layers = [i for i, m in enumerate(stack) if isinstance(m, LAYER)]
    outputs = {id(m) for m in stack[layers[-1] + 1:]} if layers else set()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ACTIVATION) and id(child) not in outputs:
                setattr(parent, name, nn.SELU())
            elif isinstance(child, NORM):
                setattr(parent, name, nn.Identity())
            elif isinstance(child, DROPOUT):
                setattr(parent, name, nn.AlphaDropout(child.p))
    for m in model.modules():
        if isinstance(m, LAYER):
            lecun_normal_(m)
    return model


class SELU(Architecture):
    """Self-normalising G and D: SELU activations, LeCun-normal weights, no normalisation.

    Applied to both models, whoever built them (the core's MLPs, ``dcgan``'s convnets, a
    user's): every hidden activation (ReLU, LeakyReLU, ELU, PReLU, ...) becomes SELU and the
    output activation (G's Tanh, a Sigmoid) stays; BatchNorm and the other normalisation
    layers become Identity; dropout becomes alpha dropout; weights w ~ N(0, 1/fan_in),
    biases 0. It runs after the other architecture tricks' transforms (beside
    ``spectral-norm``, in recipe order), so the layers they add — a conditioning input, an
    InfoGAN Q head — are made self-normalising too. With ``dcgan`` it keeps DCGAN's layout
    but replaces its activations and BatchNorm, so DCGAN's rule check warns about them (a
    note says so up front).
    """

    name = "selu"
    summary = "self-normalising G and D: SELU activations, LeCun-normal init, no BatchNorm"
    paper = PAPER
    conflicts = (
        Clash("dcgan", "selu replaces dcgan's ReLU/LeakyReLU by SELU and removes its BatchNorm "
              "(dcgan then only sets the layout), so dcgan's rule check warns about both",
              PAPER, severity="note"),
        Clash("spectral-norm", "spectral normalisation rescales every weight matrix to unit "
              "spectral norm, which undoes the LeCun-normal variance SELU's self-normalising "
              "fixed point relies on", PAPER, severity="warning"),
    )

    @hookimpl(trylast=True)
    def gantrix_transform_model(self, model, role, spec):
        return selu_transform(model)


@hookimpl
def gantrix_register_tricks(register):
    register(SELU)
