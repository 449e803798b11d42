"""Model building blocks and the core's default models.

The core builds neutral defaults (an MLP pair for vectors, a strided-conv pair without
normalisation for images) when no architecture trick builds the models; the building
functions take the choices (normalisation, activations, widths) that architecture tricks
such as DCGAN fix by their rules.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .errors import GantrixError, ModelTransformError

ROLES = ("generator", "discriminator")


@dataclass(frozen=True)
class ModelSpec:
    """What a model must fit: the sample shape, the classes (if labelled), the latent size."""

    shape: tuple[int, ...]
    num_classes: int | None = None
    latent_dim: int = 64
    width: int = 64
    #: the models' layout: 2 (now) lets ``refine`` add its 3×3 layers; 1 rebuilds the models
    #: of runs trained before it existed (one layer per doubling, whatever is asked).
    layout: int = 2

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    @property
    def features(self) -> int:
        return math.prod(self.shape)


@dataclass
class Models:
    """The generator, the discriminator (critic), and any extra modules tricks add."""

    generator: nn.Module
    discriminator: nn.Module
    extra: dict[str, nn.Module] = field(default_factory=dict)

    def by_role(self, role: str) -> nn.Module:
        return self.generator if role == "generator" else self.discriminator


def mlp(inp: int, out: int, hidden: int = 256, depth: int = 3,
        act: Callable[[], nn.Module] = nn.ReLU) -> nn.Sequential:
    """``depth`` hidden layers of ``hidden`` units, then a linear output."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(inp if i == 0 else hidden, hidden), act()]
    layers.append(nn.Linear(hidden if depth else inp, out))
    return nn.Sequential(*layers)


class VectorGenerator(nn.Module):
    """z ↦ x for vector data (the 2-D mixtures)."""

    def __init__(self, spec: ModelSpec, hidden: int = 256, depth: int = 3):
        super().__init__()
        self.net = mlp(spec.latent_dim, spec.features, hidden, depth)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class VectorCritic(nn.Module):
    """x ↦ logit for vector data."""

    def __init__(self, spec: ModelSpec, hidden: int = 256, depth: int = 3):
        super().__init__()
        self.net = mlp(spec.features, 1, hidden, depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).squeeze(1)


def _norm(kind: str | None, channels: int, flat: bool = False) -> nn.Module:
    """The normalisation ``kind`` of ``channels`` feature maps (``flat``: of a vector of
    ``channels`` features, after a fully-connected layer)."""
    if kind is None or kind == "none":
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm1d(channels) if flat else nn.BatchNorm2d(channels)
    if kind == "layer":  # over (C, H, W) per sample, as WGAN-GP's critic
        return nn.GroupNorm(1, channels)
    if kind == "instance":
        return nn.GroupNorm(channels, channels)
    raise ValueError(f"unknown normalisation {kind!r}")


#: the sides the models' smallest feature map may take (G starts there, D scores there).
SMALLEST_SIDES = (2, 4)
#: the kernel sizes of the stride-2 layers: 4 (PyTorch's DCGAN) or 5 (DCGAN-tensorflow's).
KERNELS = (4, 5)


def _doublings(size: int, smallest: int, kernel: int) -> int:
    """How many stride-2 ``kernel``×``kernel`` layers lead from a ``smallest``×``smallest``
    map to ``size`` (each argument checked)."""
    if size < 8 or size > 256 or size & (size - 1):
        raise ValueError(f"image size must be a power of two from 8 to 256, got {size}")
    if smallest not in SMALLEST_SIDES:
        raise ValueError(f"the smallest map's side must be one of {SMALLEST_SIDES}, got {smallest}")
    if kernel not in KERNELS:
        raise ValueError(f"the stride-2 layers' kernel must be one of {KERNELS}, got {kernel}")
    return int(math.log2(size // smallest))


#: how the models halve (D) and double (G) the side: ``strided`` convolutions (DCGAN's all-
#: convolutional layout) or ``pool``, the layout DCGAN replaced: a stride-1 convolution then
#: 2×2 average pooling in D, 2× nearest-neighbour upsampling then a stride-1 convolution in G.
RESAMPLINGS = ("strided", "pool")


def _check_resample(resample: str) -> None:
    if resample not in RESAMPLINGS:
        raise ValueError(f"resample must be one of {RESAMPLINGS}, got {resample!r}")


def _down(inp: int, out: int, kernel: int, bias: bool = True,
          resample: str = "strided") -> list[nn.Module]:
    """The layer(s) that halve an even side: a stride-2 convolution (``same`` padding for
    either kernel), or for ``resample="pool"`` a stride-1 one then 2×2 average pooling (an
    even kernel, padded by half its size, gives one more row and column, which the pooling
    drops)."""
    if resample == "pool":
        return [nn.Conv2d(inp, out, kernel, 1, kernel // 2, bias=bias), nn.AvgPool2d(2)]
    return [nn.Conv2d(inp, out, kernel, 2, (kernel - 1) // 2, bias=bias)]


def _up(inp: int, out: int, kernel: int, bias: bool = True,
        resample: str = "strided") -> list[nn.Module]:
    """The layer(s) that double the side: a stride-2 transposed convolution (`_down`'s
    transpose), or for ``resample="pool"`` 2× nearest upsampling then a stride-1 convolution
    that keeps the side (an even kernel padded one more on the right and bottom)."""
    if resample == "pool":
        pad = [nn.ZeroPad2d((kernel // 2 - 1, kernel // 2) * 2)] if kernel % 2 == 0 else []
        return [nn.Upsample(scale_factor=2), *pad,
                nn.Conv2d(inp, out, kernel, 1, 0 if pad else kernel // 2, bias=bias)]
    return [nn.ConvTranspose2d(inp, out, kernel, 2, (kernel - 1) // 2,
                               output_padding=kernel % 2, bias=bias)]


#: the largest image side `refine` applies to.
REFINED_UP_TO = 32


def _refined(spec: ModelSpec, refine: bool) -> bool:
    """Whether a model for ``spec`` takes the refined layout: asked for, an image side of at
    most `REFINED_UP_TO`, and a run of layout 2 (`ModelSpec.layout`)."""
    return refine and spec.shape[1] <= REFINED_UP_TO and spec.layout >= 2


class ConvGenerator(nn.Module):
    """z ↦ image by transposed convolutions, ``smallest``×``smallest`` up to ``size``×``size``,
    Tanh output.

    The first layer projects z onto a ``smallest``×``smallest`` map (a transposed
    convolution of a 1×1 input: a linear projection) and each next layer doubles the side
    with a ``kernel``×``kernel`` transposed convolution, halving the channels (the DCGAN
    layout). The defaults, a 4×4 start and 4×4 kernels, are PyTorch's DCGAN example;
    ``smallest=2, kernel=5`` is DCGAN-tensorflow's layout on 32×32 images (it always doubles
    four times, from side / 16): one more layer, of twice the channels, at 2×2.

    Small images leave such models shallow (8×8: a 4×4 start and one upsampling; 32×32: four
    layers), so ``refine`` (up to `REFINED_UP_TO`) adds a 3×3 layer after the start, halving
    its channels, and makes the output with a 3×3 layer from the last upsampling's
    ``width / 2`` channels. With BatchNorm (dcgan) it lifted the samples classified with
    confidence from 58 to 77 % on the 8×8 digits and from 73.6 to 82.5 % on MNIST
    (docs/results.md); without normalisation the deeper models trained worse, so the core's
    neutral models are not refined.

    Two options build the layouts DCGAN's rules replaced, for ablations: ``resample="pool"``
    doubles the side by nearest upsampling and a stride-1 convolution instead of a transposed
    one (`RESAMPLINGS`), and ``hidden_fc`` starts with fully-connected layers, z → ``c``
    units → ``c`` maps of ``smallest``×``smallest`` (``c`` the start's channels), instead of
    the transposed convolution of z (the layer stack then takes z as a vector).
    """

    def __init__(self, spec: ModelSpec, norm: str | None = None,
                 act: Callable[[], nn.Module] = nn.ReLU, refine: bool = False,
                 kernel: int = 4, smallest: int = 4, resample: str = "strided",
                 hidden_fc: bool = False):
        super().__init__()
        channels, size, _ = spec.shape
        levels = _doublings(size, smallest, kernel)
        _check_resample(resample)
        bias = norm is None
        small = _refined(spec, refine)
        width = spec.width * 2 ** (levels if small else levels - 1)
        #: whether the layer stack takes z as a vector (a fully-connected first layer)
        self.flat_input = hidden_fc
        if hidden_fc:
            layers: list[nn.Module] = [
                nn.Linear(spec.latent_dim, width, bias=bias), _norm(norm, width, flat=True), act(),
                nn.Linear(width, width * smallest * smallest, bias=bias),
                nn.Unflatten(1, (width, smallest, smallest)), _norm(norm, width), act()]
        else:
            layers = [nn.ConvTranspose2d(spec.latent_dim, width, smallest, 1, 0, bias=bias),
                      _norm(norm, width), act()]
        if small:
            layers += [nn.Conv2d(width, width // 2, 3, 1, 1, bias=bias), _norm(norm, width // 2), act()]
            width //= 2
        for _ in range(levels if small else levels - 1):
            layers += [*_up(width, width // 2, kernel, bias, resample), _norm(norm, width // 2),
                       act()]
            width //= 2
        layers += [nn.Conv2d(width, channels, 3, 1, 1)] if small else _up(
            width, channels, kernel, resample=resample)
        layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z.flatten(1)
        return self.net(z if self.flat_input else z[:, :, None, None])


class ConvCritic(nn.Module):
    """image ↦ logit by strided convolutions (no pooling, no hidden fully-connected layer).

    The generator's mirror: ``kernel``×``kernel`` stride-2 convolutions halve the side down to
    ``smallest``×``smallest``, doubling the channels, and a convolution over that whole map
    scores it (a linear layer on the flattened map). ``refine`` makes a 3×3 layer of
    ``width / 2`` channels read the image first and a 3×3 layer (doubling the channels) run
    on the smallest map before the scoring layer.

    For ablations of DCGAN's rules: ``resample="pool"`` halves the side by a stride-1
    convolution and 2×2 average pooling (`RESAMPLINGS`), and ``hidden_fc`` scores the
    flattened smallest map with a fully-connected hidden layer (as many units as the map has
    channels, normalised and activated as the convolutions are) and a linear output.
    """

    def __init__(self, spec: ModelSpec, norm: str | None = None,
                 act: Callable[[], nn.Module] = lambda: nn.LeakyReLU(0.2), refine: bool = False,
                 kernel: int = 4, smallest: int = 4, resample: str = "strided",
                 hidden_fc: bool = False):
        super().__init__()
        channels, size, _ = spec.shape
        levels = _doublings(size, smallest, kernel)
        _check_resample(resample)
        bias = norm is None
        small = _refined(spec, refine)
        width = max(spec.width // 2, 1) if small else spec.width
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, 1, 1)] if small else _down(
            channels, width, kernel, resample=resample)
        layers.append(act())
        for _ in range(levels if small else levels - 1):
            layers += [*_down(width, width * 2, kernel, bias, resample), _norm(norm, width * 2),
                       act()]
            width *= 2
        if small:
            layers += [nn.Conv2d(width, width * 2, 3, 1, 1, bias=bias), _norm(norm, width * 2), act()]
            width *= 2
        if hidden_fc:
            layers += [nn.Flatten(), nn.Linear(width * smallest * smallest, width, bias=bias),
                       _norm(norm, width, flat=True), act(), nn.Linear(width, 1)]
        else:
            layers.append(nn.Conv2d(width, 1, smallest, 1, 0))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1).squeeze(1)


def default_model(role: str, spec: ModelSpec) -> nn.Module:
    """The core's neutral model for ``role`` when no architecture trick builds one."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if spec.is_image:
        return ConvGenerator(spec) if role == "generator" else ConvCritic(spec)
    return VectorGenerator(spec) if role == "generator" else VectorCritic(spec)


# --------------------------------------------------------------------------- for tricks
#
# Architecture tricks that add inputs (labels, latent codes) or layers (a minibatch-stddev
# feature, a Q head) to a model need to find its layers and widen one of them. These
# helpers are that shared vocabulary (exported to plugins by `gantrix.plugin`); they name
# no trick.


def require_images(owner: str, data: ModelSpec | torch.Tensor, does: str, why: str) -> None:
    """Refuse data that is not images, for a trick that works on images only.

    ``data`` is the `ModelSpec` at build time (from ``gantrix_transform_model``: raises
    `ModelTransformError`, which becomes ``owner``'s error finding before training) or a
    batch of samples at run time (anything but (N, C, H, W) raises `GantrixError`). The
    message is "``owner`` ``does``, but <the data>: ``why``; use image data, or drop
    ``owner``", e.g. ``require_images("ada", spec, "augments images",
    "translation+color means nothing for vectors")``.
    """
    if isinstance(data, torch.Tensor):
        if data.dim() == 4:
            return
        raise GantrixError(f"{owner} {does} (N, C, H, W), but got samples of shape "
                           f"{tuple(data.shape)}: {why}; use image data, or drop {owner}")
    if not data.is_image:
        raise ModelTransformError(f"{owner} {does}, but the data is vectors of shape "
                                  f"{tuple(data.shape)}: {why}; use image data, or drop {owner}")

#: layer types `widen_input` can give extra inputs.
WIDENABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d,
             nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def find_layers(model: nn.Module) -> nn.Sequential | None:
    """The `nn.Sequential` that runs ``model``'s layers in order, or None.

    The core's models (and those tricks build from them) keep their layers in ``.net`` and
    feed their input (the latent vector, the flattened vector, the image) straight into it;
    a wrapper that adds inputs or outputs around a model exposes the model it wraps as
    ``.wrapped`` and is looked through. A trick that edits ``net[0]`` or ``net[-1]`` relies
    on exactly that contract, so a model without it gets a clear finding instead.
    """
    while model is not None:
        net = getattr(model, "net", None)
        if isinstance(net, nn.Sequential) and len(net):
            return net
        model = getattr(model, "wrapped", None)
    return None


def layer_stack(model: nn.Module) -> nn.Sequential:
    """``model``'s layer stack (`find_layers`); TypeError, saying what is missing, when it
    has none: the reason a trick puts in its `ModelTransformError`."""
    net = find_layers(model)
    if net is None:
        raise TypeError("it has no `.net` layer stack (nn.Sequential fed the input)")
    return net


def widen_first_layer(model: nn.Module, extra: int) -> None:
    """Give the first layer of ``model``'s layer stack ``extra`` more inputs, in place
    (`widen_input`): for a wrapper that concatenates labels or codes to the input. TypeError
    (as `layer_stack` and `widen_input`) when the model has no such layer."""
    net = layer_stack(model)
    net[0] = widen_input(net[0], extra)


def output_module(model: nn.Module) -> nn.Module:
    """The module that makes ``model``'s output: the last module of its layer stack
    (`find_layers`), else the last leaf module of the innermost model it wraps (in
    registration order; the model itself when it has no submodules).

    Looking through ``.wrapped`` first keeps heads beside the model (an InfoGAN Q head,
    registered after the model it wraps) from being taken for its output.
    """
    net = find_layers(model)
    if net is not None:
        return net[-1]
    while getattr(model, "wrapped", None) is not None:
        model = model.wrapped
    return [m for m in model.modules() if not list(m.children())][-1]


def widen_input(layer: nn.Module, extra: int) -> nn.Module:
    """A copy of ``layer`` that takes ``extra`` more input features (channels), appended
    after the existing ones.

    The existing weights and bias are kept, so the new layer computes the same function
    when the extra inputs are zero (concatenating inputs is adding a block of weights). The
    new weights are drawn from a normal with the existing weights' mean and std, so the
    layer's initialisation (DCGAN's N(0, 0.02), PyTorch's default, LeCun's) carries over.
    Raises TypeError for a layer it cannot widen: not in `WIDENABLE`, grouped, or
    parametrized (e.g. already spectrally normalised: widen first, then parametrize).
    """
    from torch.nn.utils import parametrize

    if not isinstance(layer, WIDENABLE):
        raise TypeError(f"cannot add inputs to a {type(layer).__name__}; "
                        f"supported: {', '.join(t.__name__ for t in WIDENABLE)}")
    if parametrize.is_parametrized(layer):
        raise TypeError(f"cannot add inputs to a parametrized {type(layer).__name__} "
                        "(e.g. spectral norm): add the inputs first, then parametrize")
    if getattr(layer, "groups", 1) != 1:
        raise TypeError(f"cannot add inputs to a grouped {type(layer).__name__}")
    old = layer.weight.detach()
    if isinstance(layer, nn.Linear):
        new = nn.Linear(layer.in_features + extra, layer.out_features, bias=layer.bias is not None)
        dim = 1
    else:
        args = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                    bias=layer.bias is not None, padding_mode=layer.padding_mode)
        if isinstance(layer, nn.modules.conv._ConvTransposeNd):
            args["output_padding"] = layer.output_padding
        base = next(t for t in WIDENABLE if isinstance(layer, t))
        new = base(layer.in_channels + extra, layer.out_channels, layer.kernel_size, **args)
        dim = 0 if isinstance(layer, nn.modules.conv._ConvTransposeNd) else 1
    new = new.to(device=old.device, dtype=old.dtype)
    with torch.no_grad():
        new.weight.normal_(old.mean().item(), old.std(correction=0).item())
        new.weight.narrow(dim, 0, old.shape[dim]).copy_(old)
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
    new.train(layer.training)
    return new


def last_widenable(model: nn.Module) -> tuple[nn.Sequential, int]:
    """``model``'s layer stack and the index in it of its last `WIDENABLE` layer (where a
    trick inserts a feature before the output); TypeError when there is none."""
    net = find_layers(model)
    last = None if net is None else next(
        (i for i in reversed(range(len(net))) if isinstance(net[i], WIDENABLE)), None)
    if last is None:
        raise TypeError("it has no `.net` layer stack (nn.Sequential fed the input) "
                        "with a Linear or Conv layer")
    return net, last


class BatchStatistic(nn.Module):
    """Base of the layers that append a statistic of the whole minibatch to each sample's
    features (minibatch stddev, minibatch discrimination). Such a layer makes every output
    depend on the batch; a trick that reads a critic's per-sample features looks past it
    (``isinstance(layer, BatchStatistic)``), whichever plugin defines it."""


def insert_before_last(model: nn.Module, extra: int, make: Callable[[nn.Module], nn.Module],
                       owner: str, *, zero_new: bool = False) -> nn.Module:
    """Insert ``make(last)`` into the critic ``model``'s layer stack right before its last
    `WIDENABLE` layer ``last`` (`last_widenable`), which is replaced by a copy widened by
    ``extra`` inputs (`widen_input`) for the features the inserted layer appends. With
    ``zero_new`` the widened layer's weights for those features start at zero, so the
    critic starts as the function it was. The inserted layer is moved to the last layer's
    device and dtype; ``model`` is returned, changed in place.

    ``make`` runs after the widening (a layer that draws its initial weights draws them
    after the widened layer's). Raises `ModelTransformError` naming ``owner`` when the
    critic has no layer to widen."""
    try:
        net, last = last_widenable(model)
        layer = net[last]
        widened = widen_input(layer, extra)
    except TypeError as exc:
        raise ModelTransformError(f"cannot insert {owner} into the critic "
                                  f"({type(model).__name__}): {exc}") from None
    if zero_new:
        dim = 0 if isinstance(layer, nn.modules.conv._ConvTransposeNd) else 1
        with torch.no_grad():
            widened.weight.narrow(dim, layer.weight.shape[dim], extra).zero_()
    added = make(layer)
    net[last] = widened
    net.insert(last, added.to(device=layer.weight.device, dtype=layer.weight.dtype))
    return model


#: convolution layers (a critic's last layer may be one of these or a Linear).
CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def last_layer(model: nn.Module) -> nn.Module:
    """The critic's last Linear or Conv layer (in its ``.net`` layer stack, looked for
    through ``.wrapped``): ψ, the layer that makes the logit from the penultimate features.
    Raises TypeError when the model has no such layer, or a grouped one."""
    net = layer_stack(model)
    layers = [m for m in net.modules() if isinstance(m, (nn.Linear, *CONV))]
    if not layers:
        raise TypeError("its layer stack has no Linear or Conv layer")
    if getattr(layers[-1], "groups", 1) != 1:
        raise TypeError(f"its last layer is a grouped {type(layers[-1]).__name__}")
    return layers[-1]


class FeatureCritic(nn.Module):
    """A critic wrapper that also gets the critic's penultimate features φ(x): the input of
    its last layer ``tap``, kept by a forward pre-hook during the critic's own forward pass,
    so the critic's body runs once and is shared with the logit. For tricks that read
    features (an auxiliary head, a projection, feature matching); ``owner`` names the trick
    in errors."""

    def __init__(self, wrapped: nn.Module, tap: nn.Module, owner: str):
        super().__init__()
        self.wrapped = wrapped
        self.owner = owner
        self._features: torch.Tensor | None = None
        tap.register_forward_pre_hook(self._keep)

    def _keep(self, module, args):
        self._features = args[0]

    def critic(self, x: torch.Tensor, inputs: dict) -> tuple[torch.Tensor | dict, torch.Tensor]:
        """The wrapped critic's output on ``x`` (its logits, or its dict) and φ(x)."""
        out = self.wrapped(x, **inputs)
        features, self._features = self._features, None
        if features is None:
            raise GantrixError(f"{self.owner}: the critic's last layer, whose input "
                               f"{self.owner} reads, did not run: a trick replaced it "
                               f"after {self.owner} transformed the critic")
        return out, features


def grad_norm(model: nn.Module) -> float | None:
    """The L2 norm of all of ``model``'s parameter gradients together (read back: for log
    lines), or None when none has a gradient."""
    norms = [p.grad.detach().norm() for p in model.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else None
