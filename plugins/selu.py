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
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from gantrix.plugin import Architecture, Clash, GantrixError, find_layers, hookimpl

PAPER = "Klambauer, Unterthiner, Mayr & Hochreiter 2017, Self-Normalizing Neural Networks"

LAYER = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d,
         nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
NORM = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm,
        nn.modules.instancenorm._InstanceNorm, nn.LocalResponseNorm)
ACTIVATION = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.GELU,
              nn.SiLU, nn.Mish, nn.Softplus, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish,
              nn.Hardsigmoid, nn.Softsign)
DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


CONV_FN = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d,
           nn.ConvTranspose1d: F.conv_transpose1d, nn.ConvTranspose2d: F.conv_transpose2d,
           nn.ConvTranspose3d: F.conv_transpose3d}


def taps_per_output(layer: nn.Module, size: tuple[int, ...]) -> float:
    """How many input positions (of one input channel) feed one output position of a
    convolution, on average over its output map, for an input of spatial ``size``.

    Counted by running the layer's geometry (stride, padding, dilation, output padding) with
    all-ones weights on an all-ones input: every output position then holds its own count. For
    a transposed convolution it depends on the input size: the generator's first layer,
    1×1 → 4×4 with a 4×4 kernel and stride 1, gives each output position exactly one tap (not
    4·4), and small maps lose taps at their borders.
    """
    transposed = isinstance(layer, nn.modules.conv._ConvTransposeNd)
    if not transposed and layer.padding_mode != "zeros":  # padded with real data: full kernels
        return float(math.prod(layer.kernel_size))
    ones = torch.ones(1, 1, *size, dtype=torch.float64)
    kernel = torch.ones(1, 1, *layer.kernel_size, dtype=torch.float64)
    extra = {"output_padding": layer.output_padding} if transposed else {}
    counts = CONV_FN[type(layer)](ones, kernel, stride=layer.stride, padding=layer.padding,
                                  dilation=layer.dilation, **extra)
    return counts.mean().item()


def fan_in(layer: nn.Module, size: tuple[int, ...] | None = None) -> float:
    """How many weighted inputs meet in one output unit (on average over the output map).

    Linear: in_features. Convolution: in_channels/groups · `taps_per_output` for the spatial
    ``size`` of its input; without ``size``, the large-map limit: ∏kernel, or ∏(kernel/stride)
    for a transposed convolution (PyTorch's own fan-in formula reads the transposed weight the
    wrong way round and gives the fan-out).
    """
    if isinstance(layer, nn.Linear):
        return float(layer.in_features)
    n = layer.in_channels // layer.groups
    if size is not None:
        return n * taps_per_output(layer, size)
    if isinstance(layer, nn.modules.conv._ConvTransposeNd):
        return n * math.prod(layer.kernel_size) / math.prod(layer.stride)
    return float(n * math.prod(layer.kernel_size))


def input_sizes(model: nn.Module, example: torch.Tensor) -> dict[int, tuple[int, ...]]:
    """The spatial size of the input each convolution of ``model`` sees on ``example`` (by
    ``id`` of the layer), from one forward pass in eval mode without gradients; empty when
    the model cannot run on ``example`` alone (e.g. a critic that needs labels)."""
    sizes: dict[int, tuple[int, ...]] = {}
    convs = [m for m in model.modules() if type(m) in CONV_FN]
    if not convs:
        return sizes

    def record(layer, args):
        sizes.setdefault(id(layer), tuple(args[0].shape[2:]))

    hooks = [m.register_forward_pre_hook(record) for m in convs]
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    except (GantrixError, TypeError, ValueError, RuntimeError, IndexError):
        return {}
    finally:
        for h in hooks:
            h.remove()
        for m, training in modes.items():
            m.training = training
    return sizes


def lecun_normal_(layer: nn.Module, size: tuple[int, ...] | None = None) -> None:
    """w ~ N(0, 1/fan_in), bias 0 — on the raw weight when the layer is parametrized; ``size``
    is the spatial size of the layer's input, when known (see `fan_in`)."""
    weight = (layer.parametrizations.weight.original
              if parametrize.is_parametrized(layer, "weight") else layer.weight)
    with torch.no_grad():
        weight.normal_(0.0, fan_in(layer, size) ** -0.5)
        if layer.bias is not None:
            layer.bias.zero_()


def selu_transform(model: nn.Module, example: torch.Tensor | None = None) -> nn.Module:
    """Make ``model`` self-normalising in place and return it.

    Every hidden activation becomes SELU; the output activation (G's Tanh, a critic's
    Sigmoid: any activation after the last weight layer of the model's layer stack,
    `gantrix.models.find_layers`, else of the whole model) stays. Normalisation layers
    become Identity, dropout becomes alpha dropout (which keeps the fixed point), linear
    and conv weights get LeCun-normal initialisation and zero biases. With an ``example``
    input, each convolution's fan-in is counted for the map size it really sees (so every
    pre-activation has unit variance on average over its map); without one, or when the
    model cannot run on it alone, the large-map limit is used.
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
    sizes = {} if example is None else input_sizes(model, example)
    for m in model.modules():
        if isinstance(m, LAYER):
            lecun_normal_(m, sizes.get(id(m)))
    return model


def example_input(model: nn.Module, role: str, spec) -> torch.Tensor | None:
    """Two random inputs for ``model`` in ``role`` (latent vectors for the generator, samples
    for the critic) on its device and dtype, or None without a spec."""
    if spec is None:
        return None
    param = next(model.parameters(), None)
    shape = (spec.latent_dim,) if role == "generator" else tuple(spec.shape)
    return torch.randn(2, *shape, device=param.device if param is not None else None,
                       dtype=param.dtype if param is not None else None)


class SELU(Architecture):
    """Self-normalising G and D: SELU activations, LeCun-normal weights, no normalisation.

    Applied to both models, whoever built them (the core's MLPs, ``dcgan``'s convnets, a
    user's): every hidden activation (ReLU, LeakyReLU, ELU, PReLU, ...) becomes SELU and the
    output activation (G's Tanh, a Sigmoid) stays; BatchNorm and the other normalisation
    layers become Identity; dropout becomes alpha dropout; weights w ~ N(0, 1/fan_in),
    biases 0, with each convolution's fan-in counted for the map size it sees (the
    generator's 1×1 → 4×4 layer has one tap per output, not 16). It runs after the other architecture tricks' transforms (beside
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
        return selu_transform(model, example_input(model, role, spec))


@hookimpl
def gantrix_register_tricks(register):
    register(SELU)
