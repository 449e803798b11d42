"""The residual generator and critic of WGAN-GP's and SNGAN's CIFAR-10 experiments
(Gulrajani et al. 2017; Miyato et al. 2018), as a model builder for square images.

Translated from the authors' code (the two papers' CIFAR ResNets share one block topology):

- ``igul222/improved_wgan_training`` at ``fa66c574a54c``: ``gan_cifar_resnet.py``
  (``Generator``, ``Discriminator``, ``ResidualBlock``, ``OptimizedResBlockDisc1``) and
  ``tflib/ops/{conv2d,linear,batchnorm}.py`` (layers and initialisation);
- ``pfnet-research/sngan_projection`` at ``e84b1a5f604d``: ``gen_models/resnet_32.py``,
  ``gen_models/resblocks.py``, ``dis_models/snresnet_32.py``, ``dis_models/resblocks.py``
  (the 32-px files were contributed to that repository and merged by its authors; the
  blocks are theirs).
"""
from __future__ import annotations

import math

from torch import nn

from gantrix.plugin import Architecture, Clash, GantrixError, Param, Replaces, hookimpl

WGAN_GP = "Gulrajani et al. 2017, Improved Training of Wasserstein GANs"
SNGAN = ("Miyato, Kataoka, Koyama & Yoshida 2018, Spectral Normalization for Generative "
         "Adversarial Networks")
PAPER = f"{WGAN_GP} (gan_cifar_resnet.py); {SNGAN} (the CIFAR ResNet)"

#: the image sides built: 4 · 2^k from 8 to 128 (G starts at 4×4 and doubles per block).
SIDES = (8, 16, 32, 64, 128)
#: the side at which D's blocks stop halving (8×8 images: 4×4, after the optimized block).
CRITIC_SIDE = 8
#: each layout's defaults: G's and D's channels, D's global pooling, a bias on D's score,
#: and BatchNorm's eps (tflib's fused BN: 1e-5; Chainer's: 2e-5).
LAYOUTS = {
    "wgan-gp": dict(width=128, critic_width=128, pool="mean", bias=True, eps=1e-5),
    "sngan": dict(width=256, critic_width=128, pool="sum", bias=False, eps=2e-5),
}
#: Xavier-uniform gain of the residual branches' 3×3 convolutions (tflib's ``he_init``,
#: Chainer's ``GlorotUniform(sqrt(2))``); the shortcuts, linears and G's output take 1.
HE_GAIN = math.sqrt(2)


def _init(layer: nn.Module, gain: float = 1.0) -> nn.Module:
    """Xavier-uniform weights with ``gain`` and a zero bias, as both repositories; returns
    ``layer``."""
    nn.init.xavier_uniform_(layer.weight, gain=gain)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def conv3(inp: int, out: int, gain: float = HE_GAIN) -> nn.Conv2d:
    return _init(nn.Conv2d(inp, out, 3, 1, 1), gain)


def conv1(inp: int, out: int) -> nn.Conv2d:
    return _init(nn.Conv2d(inp, out, 1, 1, 0))


def critic_norm_layer(kind: str, channels: int) -> list[nn.Module]:
    """The normalisation ``kind`` of a critic block (none: no layer). ``layer`` is
    GroupNorm(1, C): each sample normalised over (C, H, W) with a per-channel gain and bias,
    the layer norm of WGAN-GP's 64-px critic (``tflib/ops/layernorm.py``)."""
    if kind == "layer":
        return [nn.GroupNorm(1, channels)]
    if kind == "batch":
        return [nn.BatchNorm2d(channels)]
    return []


class GeneratorBlock(nn.Module):
    """x ↦ residual(x) + shortcut(x), doubling the side:
    residual = BN → ReLU → nearest ×2 upsampling → conv 3×3 → BN → ReLU → conv 3×3,
    shortcut = nearest ×2 upsampling → conv 1×1."""

    def __init__(self, inp: int, out: int, eps: float):
        super().__init__()
        self.residual = nn.Sequential(
            nn.BatchNorm2d(inp, eps=eps), nn.ReLU(), nn.Upsample(scale_factor=2), conv3(inp, out),
            nn.BatchNorm2d(out, eps=eps), nn.ReLU(), conv3(out, out))
        self.shortcut = nn.Sequential(nn.Upsample(scale_factor=2), conv1(inp, out))

    def forward(self, x):
        return self.residual(x) + self.shortcut(x)


class CriticBlock(nn.Module):
    """x ↦ residual(x) + shortcut(x), halving the side when ``down``:
    residual = [norm] → ReLU → conv 3×3 (in → in) → [norm] → ReLU → conv 3×3 (in → out)
    → [2×2 mean pooling], shortcut = conv 1×1 → [2×2 mean pooling] when the channels change
    or the side halves, the identity otherwise."""

    def __init__(self, inp: int, out: int, down: bool, norm: str = "none"):
        super().__init__()
        pool = [nn.AvgPool2d(2)] if down else []
        self.residual = nn.Sequential(
            *critic_norm_layer(norm, inp), nn.ReLU(), conv3(inp, inp),
            *critic_norm_layer(norm, inp), nn.ReLU(), conv3(inp, out), *pool)
        self.shortcut = (nn.Sequential(conv1(inp, out), *pool) if down or inp != out
                         else nn.Identity())

    def forward(self, x):
        return self.residual(x) + self.shortcut(x)


class OptimizedBlock(nn.Module):
    """D's first block, on the image itself (no activation before its first convolution):
    residual = conv 3×3 → ReLU → conv 3×3 → 2×2 mean pooling,
    shortcut = 2×2 mean pooling → conv 1×1."""

    def __init__(self, inp: int, out: int):
        super().__init__()
        self.residual = nn.Sequential(conv3(inp, out), nn.ReLU(), conv3(out, out), nn.AvgPool2d(2))
        self.shortcut = nn.Sequential(nn.AvgPool2d(2), conv1(inp, out))

    def forward(self, x):
        return self.residual(x) + self.shortcut(x)


class GlobalPool(nn.Module):
    """(N, C, H, W) ↦ (N, C): the mean (WGAN-GP) or the sum (SNGAN) over the positions."""

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode

    def forward(self, x):
        return x.sum((2, 3)) if self.mode == "sum" else x.mean((2, 3))

    def extra_repr(self) -> str:
        return self.mode


class ResNetGenerator(nn.Module):
    """z ↦ image: ``.net`` = [Linear(z → 4·4·width), Unflatten to (width, 4, 4),
    `GeneratorBlock` × log2(side / 4), BN, ReLU, conv 3×3 → channels, Tanh]."""

    def __init__(self, channels: int, side: int, latent_dim: int, width: int, eps: float):
        super().__init__()
        blocks = int(math.log2(side // 4))
        self.net = nn.Sequential(
            _init(nn.Linear(latent_dim, 4 * 4 * width)), nn.Unflatten(1, (width, 4, 4)),
            *(GeneratorBlock(width, width, eps) for _ in range(blocks)),
            nn.BatchNorm2d(width, eps=eps), nn.ReLU(), conv3(width, channels, gain=1.0), nn.Tanh())

    def forward(self, z):
        return self.net(z.flatten(1))


class ResNetCritic(nn.Module):
    """image ↦ score: ``.net`` = [`OptimizedBlock` (halves the side), down `CriticBlock`s
    to 8×8 (4×4 for 8-px images), two `CriticBlock`s that keep the side, ReLU,
    `GlobalPool`, Linear(width → 1)]."""

    def __init__(self, channels: int, side: int, width: int, pool: str, bias: bool,
                 norm: str = "none"):
        super().__init__()
        smallest = min(CRITIC_SIDE, side // 2)
        downs = int(math.log2(side // 2 // smallest))
        self.net = nn.Sequential(
            OptimizedBlock(channels, width),
            *(CriticBlock(width, width, True, norm) for _ in range(downs)),
            *(CriticBlock(width, width, False, norm) for _ in range(2)),
            nn.ReLU(), GlobalPool(pool), _init(nn.Linear(width, 1, bias=bias)))

    def forward(self, x):
        return self.net(x).squeeze(1)


class ResNet(Architecture):
    """Build the residual G and D of WGAN-GP's and SNGAN's CIFAR-10 experiments, as the
    authors' code builds them (igul222/improved_wgan_training at fa66c574,
    pfnet-research/sngan_projection at e84b1a5f; the module's docstring names the files).

    Builds, for square images whose side is 4 · 2^k from 8 to 128 px (any channel count;
    32 is the papers' setting, 8 and 16 are for quick runs on the 8×8 digits):

    - G: z → Linear(z → 4·4·``width``) → reshape to 4×4 → log2(side / 4) up blocks (BN →
      ReLU → nearest ×2 upsampling → conv 3×3 → BN → ReLU → conv 3×3; shortcut: upsampling
      → conv 1×1) → BN → ReLU → conv 3×3 to the image's channels → Tanh;
    - D: the optimized block (conv 3×3 → ReLU → conv 3×3 → 2×2 mean pooling; shortcut:
      mean pooling → conv 1×1) halves the side, down blocks (ReLU → conv 3×3 → ReLU →
      conv 3×3 → mean pooling; shortcut: conv 1×1 → mean pooling) halve it to 8×8 (4×4 for
      8-px images), two blocks keep it (identity shortcut), then ReLU → global pooling →
      Linear(``critic_width`` → 1). At 32 px that is the papers' 32 → 16 → 8, 8, 8.

    ``layout`` sets the defaults of the others: ``wgan-gp`` (gan_cifar_resnet.py: 128
    channels in G and D, global mean pooling, a bias on D's score, BatchNorm eps 1e-5) or
    ``sngan`` (resnet_32.py / snresnet_32.py: 256 channels in G, 128 in D, global sum
    pooling, no bias on D's score, eps 2e-5). At 32×32×3 with a 128-d z they have the
    authors' parameter counts: G 1,204,483 and D 1,053,825 (wgan-gp), G 4,276,739 and D
    1,053,824 (sngan). ``width`` sets G's channels (the run's ``--width``, which sizes the
    core's models, is not read), ``critic_width`` D's. The width is the same in every block
    at every size: SNGAN's own 64- and 128-px models (resnet_64.py, resnet.py) grow the
    channels with depth (64 → 1024), to 10-32 M parameters per model; this trick keeps the
    CIFAR layout's constant width, so a larger image asks for a larger ``width``.

    Initialisation as both repositories: Xavier-uniform weights, gain √2 for the residual
    branches' 3×3 convolutions, gain 1 for the 1×1 shortcuts, the linears and G's output
    convolution; zero biases; BatchNorm gains 1 and biases 0. Spectral normalisation is
    not part of the model: SNGAN is this ``layout=sngan`` plus ``spectral-norm`` (the
    ``sngan`` recipe), which wraps every convolution (shortcuts included) and the linear.

    ``critic_norm`` normalises D's residual blocks before each ReLU (never the optimized
    block, which reads the image): ``none`` (both papers' CIFAR critics), ``layer``
    (GroupNorm(1, C): each sample over (C, H, W) with a per-channel gain and bias, the layer
    norm of WGAN-GP's 64-px critic; per sample, so a gradient penalty allows it) or
    ``batch`` (BatchNorm2d: tagged ``critic-batchnorm``, which a gradient penalty refuses).

    For vector data it builds nothing (the core's MLPs are used), so recipes stay
    data-agnostic. G's layer stack starts with the Linear that projects z and D's ends with
    the Linear that scores the pooled features, so ``cgan``/``acgan`` can widen G's input
    and ``projection``/``acgan`` read D's pooled features. (``cgan`` cannot condition this
    critic: its first layer is a residual block, which concatenated label maps cannot
    widen; use ``projection``, the SNGAN authors' conditional critic.)

    What differs from the authors' code:

    - sampling: WGAN-GP's G normalises with batch statistics at sampling time too (it never
      passes ``is_training``); torch's eval mode, which gantrix samples in, uses the running
      statistics, as SNGAN does (Chainer's ``train=False``);
    - G's batch: both papers train G on 128 samples per update (twice D's 64); gantrix
      trains G on the run's batch size;
    - the 64- and 128-px models are not SNGAN's (see ``width`` above) nor WGAN-GP's
      (gan_64x64.py: other blocks, layer norm in D, a flattened score); the down blocks here
      are the CIFAR ones at every size;
    - the ResidualBlock without resampling of WGAN-GP's code maps in → out in its first
      convolution, SNGAN's in → in; with the constant width here they are the same layer;
    - the layer norm: WGAN-GP's CIFAR file has no normalisation in D (its layer-norm path is
      off and would fail as written); ``critic_norm=layer`` follows its 64-px critic;
    - no conditional variant (class-conditional BatchNorm and the ACGAN head are other
      tricks: ``conditional-batchnorm`` replaces these BatchNorms, ``acgan`` adds the head).
    """

    name = "resnet"
    summary = "WGAN-GP/SNGAN CIFAR ResNet G and D: up/down residual blocks, BN in G, pooled score"
    paper = PAPER
    params = (
        Param("layout", str, "wgan-gp", "whose CIFAR model: sets width, critic_width, pool and "
              "D's score bias (wgan-gp: 128/128, mean, bias; sngan: 256/128, sum, no bias)",
              choices=tuple(LAYOUTS)),
        Param("width", int, None, "G's channels in every block; default: the layout's",
              low=1, high=4096, optional=True),
        Param("critic_width", int, None, "D's channels in every block; default: the layout's",
              low=1, high=4096, optional=True),
        Param("pool", str, None, "D's global pooling before its score; default: the layout's",
              choices=("mean", "sum"), optional=True),
        Param("critic_norm", str, "none", "normalisation in D's residual blocks (layer: "
              "GroupNorm(1, C), allowed under a gradient penalty; batch: BatchNorm2d)",
              choices=("none", "layer", "batch")),
    )
    replaces = (Replaces("dcgan", "resnet builds the models in dcgan's place"),)
    conflicts = (Clash("dcgan", "resnet and dcgan both build the models and only one can: "
                       "keep one of them (on a recipe that builds one, --trick with the other "
                       "replaces it)"),)

    def features(self) -> set[str]:
        tags = super().features()
        if self.critic_norm == "batch":
            tags.add("critic-batchnorm")
        return tags

    def _setting(self, key: str):
        """The value of ``key``: the parameter when given, else the layout's default."""
        value = getattr(self, key, None)
        return LAYOUTS[self.layout][key] if value is None else value

    @hookimpl
    def gantrix_build_model(self, role, spec):
        if not spec.is_image:
            return None
        channels, height, width = spec.shape
        if height != width or height not in SIDES:
            raise GantrixError(f"resnet builds square images whose side is 4 · 2^k from 8 to "
                               f"128 px ({', '.join(map(str, SIDES))}); the data has shape "
                               f"{tuple(spec.shape)}: resize the images, or use dcgan")
        if role == "generator":
            return ResNetGenerator(channels, height, spec.latent_dim, self._setting("width"),
                                   LAYOUTS[self.layout]["eps"])
        return ResNetCritic(channels, height, self._setting("critic_width"),
                            self._setting("pool"), LAYOUTS[self.layout]["bias"], self.critic_norm)


@hookimpl
def gantrix_register_tricks(register):
    register(ResNet)
