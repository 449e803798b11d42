"""Keep the generator smaller than the discriminator (Goodfellow 2016, NIPS tutorial §4.4).

The tutorial's advice on balancing G and D: G learns from D's estimate of the ratio of the
data and model densities, which is only right when D is close to optimal, so D is not the
network to keep small; in practice the discriminator is usually the deeper one, sometimes
with more filters per layer than the generator.

To measure the advice, ``critic_scale`` widens or narrows the discriminator by one factor
whoever built it (the core's MLPs on 2-D points, ``dcgan``'s or the core's convnets on
images), so one trick parameter sweeps the D/G capacity ratio on any data.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from gantrix.plugin import (Architecture, Finding, ModelTransformError, Param, find_layers,
                            hookimpl)

PAPER = "Goodfellow 2016, NIPS 2016 Tutorial: Generative Adversarial Networks, §4.4"

#: layers `rescale` rebuilds at another width (their inputs follow the layer before)
LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d,
          nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
#: normalisations `rescale` rebuilds for the new channel count
NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)
#: modules without parameters that do not care how many channels they see
NEUTRAL = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid,
           nn.Identity, nn.Flatten, nn.Dropout, nn.Upsample,
           nn.modules.pooling._AvgPoolNd, nn.modules.pooling._MaxPoolNd,
           nn.modules.padding._ConstantPadNd)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _redrawn(new: torch.Tensor, old: torch.Tensor, gain: float) -> None:
    """Fill ``new`` from a normal with ``old``'s mean and ``gain`` times its std, in place."""
    with torch.no_grad():
        new.normal_(old.mean().item(), old.std(correction=0).item() * gain)


def _layer(old: nn.Module, inp: int, out: int) -> nn.Module:
    """A copy of the layer ``old`` with ``inp`` inputs and ``out`` outputs, its weights (and
    bias) drawn to keep ``old``'s output scale: the old weights' mean and std, the std times
    √(old fan-in / new fan-in), as fan-in initialisers (PyTorch's default, LeCun's) scale
    it; where the fan-in is unchanged, exactly the old distribution (DCGAN's N(0, 0.02))."""
    bias = old.bias is not None
    if isinstance(old, nn.Linear):
        new = nn.Linear(inp, out, bias=bias)
        old_in = old.in_features
    else:
        args = dict(stride=old.stride, padding=old.padding, dilation=old.dilation, bias=bias,
                    padding_mode=old.padding_mode)
        if isinstance(old, nn.modules.conv._ConvTransposeNd):
            args["output_padding"] = old.output_padding
        new = type(old)(inp, out, old.kernel_size, **args)
        old_in = old.in_channels
    new = new.to(device=old.weight.device, dtype=old.weight.dtype)
    gain = math.sqrt(old_in / inp)
    _redrawn(new.weight, old.weight, gain)
    if bias:
        _redrawn(new.bias, old.bias, gain)
    return new


def _norm(old: nn.Module, channels: int) -> nn.Module:
    """A copy of the normalisation ``old`` over ``channels`` channels (affine parameters
    drawn from the old ones' mean and std; fresh running statistics)."""
    if isinstance(old, nn.GroupNorm):
        if old.num_groups not in (1, old.num_channels):
            raise TypeError(f"it cannot regroup a GroupNorm of {old.num_groups} groups")
        groups = 1 if old.num_groups == 1 else channels
        new = nn.GroupNorm(groups, channels, old.eps, old.affine)
    else:
        new = type(old)(channels, old.eps, old.momentum, old.affine, old.track_running_stats)
    if old.affine:
        new = new.to(device=old.weight.device, dtype=old.weight.dtype)
        _redrawn(new.weight, old.weight, 1.0)
        _redrawn(new.bias, old.bias, 1.0)
    return new


def _plain(layer: nn.Module) -> bool:
    """Whether ``layer`` is a `LAYERS` layer `_layer` can copy: ungrouped, its weight not
    reparametrized (spectral norm)."""
    return (isinstance(layer, LAYERS) and getattr(layer, "groups", 1) == 1
            and not hasattr(layer, "parametrizations") and not hasattr(layer, "weight_orig"))


def rescale(model: nn.Module, factor: float) -> bool:
    """Multiply the width of every hidden layer of ``model``'s layer stack (``.net``) by
    ``factor``, in place: each layer but the last gets ``round(outputs × factor)`` outputs
    (at least 1), each layer's inputs follow the layer before (through a flatten too),
    normalisations follow their channels, and the rebuilt layers are drawn as `_layer`
    says. Returns False, changing nothing, when no size changes.

    Raises TypeError, saying why, for a model it cannot rescale: no layer stack, parameters
    outside it, a module it does not know (an attention block, a minibatch statistic), a
    grouped or reparametrized layer.
    """
    net = find_layers(model)
    if net is None:
        raise TypeError("it has no `.net` layer stack (nn.Sequential fed the input)")
    outside = {id(p) for p in model.parameters()} - {id(p) for p in net.parameters()}
    if outside:
        raise TypeError(f"{len(outside)} of its parameter tensors are outside its layer stack")
    last = max((i for i, m in enumerate(net) if isinstance(m, LAYERS)), default=None)
    if last is None:
        raise TypeError("its layer stack has no Linear or Conv layer")
    plan: list[nn.Module] = []
    old_c = new_c = 1  # the channels (features) the layer before gave, as built and rescaled
    for i, m in enumerate(net):
        if _plain(m):
            old_in = m.in_features if isinstance(m, nn.Linear) else m.in_channels
            if old_in * new_c % old_c:
                raise TypeError(f"layer {i} ({type(m).__name__}) reads {old_in} features, "
                                f"not a multiple of the {old_c} channels before it")
            inp = old_in * new_c // old_c
            old_c = m.out_features if isinstance(m, nn.Linear) else m.out_channels
            new_c = old_c if i == last else max(1, round(old_c * factor))
            plan.append(m if (inp, new_c) == (old_in, old_c) else _layer(m, inp, new_c))
        elif isinstance(m, NORMS):
            plan.append(m if new_c == old_c else _norm(m, new_c))
        elif isinstance(m, NEUTRAL) and not any(True for _ in m.parameters()):
            plan.append(m)
        else:
            raise TypeError(f"it cannot rescale module {i} of the layer stack, a "
                            f"{type(m).__name__} (it rescales plain stacks of Linear and Conv "
                            "layers, normalisations, activations, pooling and flattening)")
    if all(new is old for new, old in zip(plan, net)):
        return False
    for i, new in enumerate(plan):
        new.train(net[i].training)
        net[i] = new
    return True


class SmallerGenerator(Architecture):
    """Warn when the generator has more than ``ratio`` times the discriminator's trainable
    parameters (default 1: G must not be bigger than D); with ``critic_scale``, make D's
    layers that many times wider first, to sweep the D/G capacity ratio.

    The count is taken on the built and transformed models (a conditioning embedding or an
    InfoGAN Q head counts where it lives). The core checks the generator first, then the
    discriminator; the warning gives both counts and the ratio.

    ``critic_scale`` multiplies the width of each of D's hidden layers, whoever built D: the
    units of the core's MLP critic on 2-D data (256 → 256 × scale), the channels of
    ``dcgan``'s critic (any layout or rule switch) or of the core's convolutional one on
    images. G stays as built, so ``critic_scale=0.25`` is PacGAN's "D = ¼ the size of G"
    and a sweep over 0.25 … 4 measures the tutorial's advice with one parameter, on points
    and images alike (parameters grow about as the square of the scale; ``gantrix check``
    shows the warning with both counts). Each rebuilt layer is drawn to keep the old
    layer's output scale (the old weights' mean and std, the std times √(old fan-in / new
    fan-in)), so only the width changes; ``critic_scale=1`` changes nothing. D is rescaled
    before the tricks after it transform it (conditioning, spectral norm, a Q head); list it
    before the tricks that insert layers into D (``minibatch-stddev``, ``self-attention``,
    ``minibatch-discrimination``, which also transform first): a critic it cannot rescale
    (not a plain layer stack) is an error finding before training. (``dcgan``'s
    ``width`` / ``critic_width`` set absolute widths, on images only.)
    """

    name = "smaller-generator"
    needed_to_sample = False  # it changes only the critic
    summary = "warn when G has more parameters than ratio x D's; critic_scale sweeps D's width"
    paper = PAPER
    params = (
        Param("ratio", float, 1.0, "largest allowed G/D parameter ratio", low=0.0,
              low_open=True, high=1e4),
        Param("critic_scale", float, None, "make D's hidden layers this many times wider "
              "(below 1: narrower), on any data; default: as built", low=0.0, low_open=True,
              high=64.0, optional=True),
    )

    def __init__(self, **values):
        super().__init__(**values)
        self._generator_size: int | None = None  # from the generator's check

    @hookimpl(tryfirst=True)
    def gantrix_transform_model(self, model, role):
        if role != "discriminator" or self.critic_scale is None:
            return None
        try:
            rescale(model, self.critic_scale)
        except TypeError as exc:
            raise ModelTransformError(f"smaller-generator cannot make the critic "
                                      f"({type(model).__name__}) {self.critic_scale:g}x as "
                                      f"wide: {exc}; list smaller-generator before the "
                                      "tricks that add layers to the critic (they transform "
                                      "it in the order listed)") from None
        return model

    @hookimpl
    def gantrix_check_model(self, model, role):
        if role == "generator":
            self._generator_size = count_parameters(model)
            return None
        g, d = self._generator_size, count_parameters(model)
        self._generator_size = None
        if g is None or g <= self.ratio * d:
            return None
        return [Finding("warning", f"the generator has {g:,} trainable parameters, "
                        f"{g / d:.2f}x the discriminator's {d:,} (allowed: {self.ratio:g}x); "
                        "the discriminator is usually the bigger network: shrink G or grow D",
                        (self.name,), PAPER)]


@hookimpl
def gantrix_register_tricks(register):
    register(SmallerGenerator)
