"""DCGAN (Radford, Metz & Chintala 2015): the all-convolutional architecture rules that made
GANs on images train reliably, as a model builder and as a check of any model.

The paper's §3 guidelines:

1. replace pooling by strided convolutions (D) and fractionally-strided ones (G);
2. batch normalisation in G and D, except G's output layer and D's input layer;
3. no fully-connected hidden layers (G's first layer may project z, D's last may score);
4. ReLU in G except its output, which is Tanh (data scaled to [−1, 1]);
5. LeakyReLU (slope 0.2) in every layer of D;

plus the training details of §4: weights drawn from N(0, 0.02) (BatchNorm's scales from
N(1, 0.02)) and Adam(2e-4, β1 = 0.5), which is the core's default optimizer.
"""
from __future__ import annotations

import dataclasses

from torch import nn

from gantrix.plugin import (KERNELS, SMALLEST_SIDES, Architecture, ConvCritic, ConvGenerator,
                            Finding, GantrixError, Param, find_layers, hookimpl)

PAPER = ("Radford, Metz & Chintala 2015, Unsupervised Representation Learning with Deep "
         "Convolutional Generative Adversarial Networks")
RULES = PAPER + ", §3"
INIT = PAPER + ", §4"

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
LAYER = CONV + (nn.Linear,)
POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
        nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
        nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
        nn.LPPool1d, nn.LPPool2d, nn.FractionalMaxPool2d, nn.FractionalMaxPool3d)
BATCHNORM = nn.modules.batchnorm._BatchNorm
NORM = (BATCHNORM, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)
ACTIVATION = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU,
              nn.GELU, nn.SiLU, nn.Mish, nn.Softplus, nn.Tanh, nn.Sigmoid, nn.Hardtanh,
              nn.Hardswish, nn.Hardsigmoid, nn.LogSigmoid, nn.Softsign)


def init_weights(model: nn.Module) -> nn.Module:
    """DCGAN's initialisation (§4): conv and linear weights ~ N(0, 0.02), normalisation
    scales ~ N(1, 0.02), biases 0. Returns ``model``."""
    for m in model.modules():
        if isinstance(m, LAYER):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, NORM) and getattr(m, "weight", None) is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
        else:
            continue
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    return model


def _walk(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers, norms, activations and poolings of ``model`` in registration order (the
    forward order for sequential models), without a parametrization's internals."""
    found = []
    for path, m in model.named_modules():
        if "parametrizations" in path.split("."):
            continue
        if isinstance(m, LAYER + NORM + ACTIVATION + POOL):
            found.append((path or type(model).__name__, m))
    return found


class DCGAN(Architecture):
    """Build DCGAN's generator and discriminator for image data, and check any model
    against the DCGAN rules.

    Builds (for images whose side is a power of two from 8 to 256, any channel count):

    - G: z → ConvTranspose 4×4 (1×1 → 4×4) → [ConvTranspose 4×4 stride 2 → BN → ReLU]… →
      ConvTranspose to the image's channels → Tanh (BN after every layer but the last);
    - D: Conv 4×4 stride 2 → LeakyReLU(0.2) → [Conv 4×4 stride 2 → norm → LeakyReLU(0.2)]…
      → Conv 4×4 on the 4×4 map → one logit (no norm on the input layer);

    with ``width`` channels at D's first (G's last hidden) layer, doubling per scale, and
    N(0, 0.02) initialisation. ``critic_width`` sizes D alone: ``dcgan:width=16,critic_width=2``
    gives G 64/32/16 channels at 4/8/16 pixels and D 2/4/8 at 16/8/4 pixels, the widths of
    PacGAN's "D = ¼ the size of G" Stacked-MNIST setting (``critic_width=4``: "½"). For
    vector data it builds nothing (the core's MLPs are used), so recipes stay data-agnostic.

    ``refine`` (default on) deepens the models of images up to 32×32, which one layer per
    doubling leaves shallow (8×8: two layers): a 3×3 layer after G's 4×4 start (G starts
    at twice the channels and halves them there) and a 3×3 output layer from ``width / 2``
    channels; D reads the image with a 3×3 layer of ``width / 2`` channels and adds a 3×3
    layer at 4×4. Measured with dcgan's defaults: 8×8 digits 58 → 77 % of samples
    classified with confidence, MNIST 73.6 → 82.5 % (docs/results.md). ``refine=false`` keeps
    the paper's layout (what PacGAN's settings in ``bench/stacked-mnist/`` use).

    ``kernel`` and ``smallest`` choose between the two layouts DCGAN's code was published in:
    4×4 kernels doubling from a 4×4 map (the default: PyTorch's DCGAN example) or 5×5 kernels
    doubling from side / 16 (DCGAN-tensorflow's, which PacGAN's and VEEGAN's Stacked-MNIST
    experiments use: ``kernel=5,smallest=2`` on 32×32 images gives each model one more
    layer, of ``8 · width`` channels at 2×2).

    ``critic_norm``: ``batch`` (the paper's), ``layer`` (per-sample, what a gradient penalty
    needs) or ``none``. ``output``: ``logit`` (gantrix losses take logits) or ``sigmoid``
    (the paper's D(x) as a probability; only for code that wants probabilities).

    The check runs on every convolutional model of the composition, built here or given by
    the user, and warns about each rule broken: pooling, hidden fully-connected layers,
    G's output not Tanh, activations other than ReLU in G or LeakyReLU in D, BatchNorm on
    G's output or D's input layer, a generator without BatchNorm (the critic's
    normalisation is left to ``critic_norm``: a gradient penalty needs it off).
    """

    name = "dcgan"
    summary = "DCGAN all-conv G and D: strided convs, BN, ReLU/Tanh in G, LeakyReLU in D"
    paper = PAPER
    params = (
        Param("critic_norm", str, "batch", "normalisation in D's hidden layers",
              choices=("batch", "layer", "none")),
        Param("output", str, "logit", "D's output: a logit or a Sigmoid probability",
              choices=("logit", "sigmoid")),
        Param("width", int, None, "base channels (D's first layer); default: ModelSpec.width (64)",
              low=1, optional=True),
        Param("critic_width", int, None, "D's base channels when D should differ from G "
              "(PacGAN's Table 3 shrinks D alone); default: width", low=1, optional=True),
        Param("kernel", int, 4, "kernel size of the stride-2 layers (4: PyTorch's DCGAN "
              "example; 5: DCGAN-tensorflow's)", choices=KERNELS),
        Param("smallest", int, 4, "side of the smallest feature map, where G starts and D "
              "scores (2 on 32×32 images: DCGAN-tensorflow's depth)", choices=SMALLEST_SIDES),
        Param("refine", bool, True, "for images up to 32×32: a 3×3 layer after G's 4×4 start "
              "and a 3×3 output layer, D mirrored (false: the paper's layout)"),
    )

    def features(self) -> set[str]:
        tags = super().features()
        if self.critic_norm == "batch":
            tags.add("critic-batchnorm")
        if self.output == "sigmoid":
            tags.add("sigmoid-output")
        return tags

    @hookimpl
    def gantrix_build_model(self, role, spec):
        if not spec.is_image:
            return None
        height, width = spec.shape[1:]
        if height != width or height < 8 or height > 256 or height & (height - 1):
            raise GantrixError(f"dcgan builds square images whose side is a power of two from "
                               f"8 to 256; the data has shape {tuple(spec.shape)}")
        width = self.critic_width if role == "discriminator" and self.critic_width else self.width
        if width is not None:
            spec = dataclasses.replace(spec, width=width)
        layout = dict(refine=self.refine, kernel=self.kernel, smallest=self.smallest)
        if role == "generator":
            return init_weights(ConvGenerator(spec, norm="batch", act=nn.ReLU, **layout))
        norm = None if self.critic_norm == "none" else self.critic_norm
        critic = ConvCritic(spec, norm=norm, act=lambda: nn.LeakyReLU(0.2), **layout)
        if self.output == "sigmoid":
            critic.net.append(nn.Sigmoid())
        return init_weights(critic)

    @hookimpl
    def gantrix_check_model(self, model, role):
        walked = _walk(model)
        if not any(isinstance(m, CONV) for _, m in walked):
            return [Finding("note", f"the {role} has no convolutions; the DCGAN rules are for "
                            "convolutional models and were not checked", (self.name,), RULES)]
        return [Finding("warning", f"{role} {msg}", (self.name,), RULES)
                for msg in _violations(model, walked, role)]


def _violations(model: nn.Module, walked: list[tuple[str, nn.Module]], role: str) -> list[str]:
    """One message per broken rule, each naming the module path.

    Positions (input layer, output layer, output activation) are read in the model's layer
    stack (`gantrix.models.find_layers`, else the whole model) in registration order, so
    heads beside the stack (an InfoGAN Q head) are not mistaken for the output.
    """
    def name(path, m):
        return f"{path!r} ({type(m).__name__})"

    stack = [m for _, m in _walk(find_layers(model) or model)]
    if not any(isinstance(m, LAYER) for m in stack):
        stack = [m for _, m in walked]
    layers = [i for i, m in enumerate(stack) if isinstance(m, LAYER)]
    last = stack[layers[-1]]
    after_last = {id(m) for m in stack[layers[-1] + 1:]}  # G's output block
    input_block = {id(m) for m in stack[layers[0] + 1:layers[1] if len(layers) > 1 else None]}

    found = [f"{name(p, m)}: pooling layer; DCGAN replaces pooling by strided convolutions"
             for p, m in walked if isinstance(m, POOL)]
    # G's first layer may be a linear projection of z, D's last a linear score.
    allowed = next(m for _, m in walked if isinstance(m, LAYER)) if role == "generator" else last
    found += [f"{name(p, m)}: hidden fully-connected layer; DCGAN removes them (only G's "
              "first projection of z and D's last scoring layer may be linear)"
              for p, m in walked if isinstance(m, nn.Linear) and m is not allowed]
    acts = [(p, m) for p, m in walked if isinstance(m, ACTIVATION)]
    if role == "generator":
        out = [(p, m) for p, m in acts if id(m) in after_last]
        if not out or not isinstance(out[-1][1], nn.Tanh):
            what = f"ends in {name(*out[-1])}" if out else "has no output activation"
            found.append(f"{what}; DCGAN's generator ends in Tanh (data scaled to [-1, 1])")
        found += [f"{name(p, m)}: hidden activation is not ReLU; DCGAN's generator uses ReLU"
                  for p, m in acts if id(m) not in after_last and type(m) is not nn.ReLU]
        found += [f"{name(p, m)}: BatchNorm on the output layer; DCGAN leaves it out there "
                  "(it made samples oscillate)" for p, m in walked
                  if id(m) in after_last and isinstance(m, BATCHNORM)]
        if not any(isinstance(m, BATCHNORM) for _, m in walked):
            found.append("has no BatchNorm; DCGAN normalises every generator layer but the "
                         "output (it keeps the generator from collapsing to one point)")
    else:
        # the discriminator may end in a Sigmoid (the paper's D(x) is a probability)
        found += [f"{name(p, m)}: activation is not LeakyReLU; DCGAN's discriminator uses "
                  "LeakyReLU(0.2) in every layer" for p, m in acts
                  if not isinstance(m, nn.LeakyReLU)
                  and not (id(m) in after_last and isinstance(m, nn.Sigmoid))]
        found += [f"{name(p, m)}: BatchNorm on the input layer; DCGAN leaves it out there "
                  "(it made samples oscillate)" for p, m in walked
                  if id(m) in input_block and isinstance(m, BATCHNORM)]
    return found


@hookimpl
def gantrix_register_tricks(register):
    register(DCGAN)
