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
from torch.nn.utils import parametrize

from gantrix.plugin import (KERNELS, SMALLEST_SIDES, Architecture, ConvCritic, ConvGenerator,
                            Finding, GantrixError, Param, Replaces, find_layers, hookimpl)

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
UPSAMPLE = (nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d)
BATCHNORM = nn.modules.batchnorm._BatchNorm
NORM = (BATCHNORM, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)
ACTIVATION = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU,
              nn.GELU, nn.SiLU, nn.Mish, nn.Softplus, nn.Tanh, nn.Sigmoid, nn.Hardtanh,
              nn.Hardswish, nn.Hardsigmoid, nn.LogSigmoid, nn.Softsign)


#: the hidden activations the act switches choose between (DCGAN's LeakyReLU slope, 0.2)
ACTS = {"relu": nn.ReLU, "leaky": lambda: nn.LeakyReLU(0.2)}


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
        if isinstance(m, LAYER + NORM + ACTIVATION + POOL + UPSAMPLE):
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

    ``output``: ``logit`` (gantrix losses take logits) or ``sigmoid`` (the paper's D(x) as a
    probability; only for code that wants probabilities).

    **One switch per rule.** Each of the §3 guidelines (quoted) is a parameter whose default
    keeps it; its other value builds the model that breaks that rule alone, everything else
    as the defaults build it (an ablation compares ``dcgan`` with ``dcgan:hidden_fc=true``),
    and the check below then warns about exactly that rule:

    - ``resample=pool`` breaks "Replace any pooling layers with strided convolutions
      (discriminator) and fractional-strided convolutions (generator)": D halves the side
      by a stride-1 convolution then 2×2 average pooling, G doubles it by nearest-neighbour
      upsampling then a stride-1 convolution (same kernels and channels);
    - ``generator_norm=none`` and ``critic_norm=none`` break "Use batchnorm in both the
      generator and the discriminator" (the paper: it "proved critical to get deep
      generators to begin learning, preventing the generator from collapsing all samples
      to a single point"), each for one model; ``critic_norm=layer`` is the per-sample
      replacement a gradient penalty needs (it keeps D normalised: no warning);
    - ``hidden_fc=true`` breaks "Remove fully connected hidden layers for deeper
      architectures": G maps z through a hidden fully-connected layer of as many units as
      its first map has channels and a fully-connected projection onto that map (instead of
      the transposed convolution of z), and D scores its flattened last map through a
      hidden fully-connected layer of as many units as the map has channels;
    - ``generator_act=leaky`` and ``generator_output=none`` break "Use ReLU activation in
      generator for all layers except for the output, which uses Tanh" (LeakyReLU(0.2) in
      G's hidden layers; a linear output, unbounded: the paper saw the bounded Tanh "learn
      more quickly to saturate and cover the color space");
    - ``critic_act=relu`` breaks "Use LeakyReLU activation in the discriminator for all
      layers" (ReLU instead).

    The check runs on every convolutional model of the composition, built here or given by
    the user, and warns about each rule broken: pooling or fixed upsampling layers, hidden
    fully-connected layers, G's output not Tanh, activations other than ReLU in G or
    LeakyReLU in D, BatchNorm on G's output or D's input layer ("Directly applying
    batchnorm to all layers however, resulted in sample oscillation and model
    instability"), a generator without BatchNorm, a discriminator without any
    normalisation (layer norm and spectral normalisation count: a gradient penalty or a
    Lipschitz bound rules BatchNorm out there).
    """

    name = "dcgan"
    summary = "DCGAN all-conv G and D: strided convs, BN, ReLU/Tanh in G, LeakyReLU in D"
    paper = PAPER
    #: on a recipe that builds the residual models (sngan), --trick dcgan builds its own
    replaces = (Replaces("resnet", "dcgan builds the models in resnet's place"),)
    params = (
        Param("critic_norm", str, "batch", "rule 2: normalisation in D's hidden layers (layer: "
              "what a gradient penalty needs; none: no normalisation)",
              choices=("batch", "layer", "none")),
        Param("output", str, "logit", "D's output: a logit or a Sigmoid probability",
              choices=("logit", "sigmoid")),
        Param("width", int, None, "base channels (D's first layer); default: ModelSpec.width (64)",
              low=1, high=4096, optional=True),
        Param("critic_width", int, None, "D's base channels when D should differ from G "
              "(PacGAN's Table 3 shrinks D alone); default: width", low=1, high=4096,
              optional=True),
        Param("kernel", int, 4, "kernel size of the stride-2 layers (4: PyTorch's DCGAN "
              "example; 5: DCGAN-tensorflow's)", choices=KERNELS),
        Param("smallest", int, 4, "side of the smallest feature map, where G starts and D "
              "scores (2 on 32×32 images: DCGAN-tensorflow's depth)", choices=SMALLEST_SIDES),
        Param("refine", bool, True, "for images up to 32×32: a 3×3 layer after G's 4×4 start "
              "and a 3×3 output layer, D mirrored (false: the paper's layout)"),
        # one switch per rule of §3, each breaking that rule alone (for ablations)
        Param("resample", str, "strided", "rule 1: strided convs (pool: D pools, G upsamples, "
              "with stride-1 convs)", choices=("strided", "pool")),
        Param("generator_norm", str, "batch", "rule 2: BatchNorm in G's hidden layers (none: "
              "no normalisation)", choices=("batch", "none")),
        Param("hidden_fc", bool, False, "breaks rule 3: a fully-connected hidden layer in G "
              "(after z's projection) and in D (before its score)"),
        Param("generator_act", str, "relu", "rule 4: G's hidden activation (leaky: "
              "LeakyReLU(0.2))", choices=("relu", "leaky")),
        Param("generator_output", str, "tanh", "rule 4: G's output activation (none: linear)",
              choices=("tanh", "none")),
        Param("critic_act", str, "leaky", "rule 5: D's activation (relu: ReLU)",
              choices=("leaky", "relu")),
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
        layout = dict(refine=self.refine, kernel=self.kernel, smallest=self.smallest,
                      resample=self.resample, hidden_fc=self.hidden_fc)
        if role == "generator":
            norm = None if self.generator_norm == "none" else self.generator_norm
            generator = ConvGenerator(spec, norm=norm, act=ACTS[self.generator_act], **layout)
            if self.generator_output == "none":
                del generator.net[-1]  # the Tanh: G's output is its last layer's, linear
            return init_weights(generator)
        norm = None if self.critic_norm == "none" else self.critic_norm
        critic = ConvCritic(spec, norm=norm, act=ACTS[self.critic_act], **layout)
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
    found += [f"{name(p, m)}: fixed upsampling layer; DCGAN replaces it by fractionally-"
              "strided (transposed) convolutions" for p, m in walked if isinstance(m, UPSAMPLE)]
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
        # BatchNorm's replacements count: a gradient penalty needs layer norm instead,
        # spectral normalisation (a parametrization of the weights) normalises too
        if (len(layers) > 2 and not any(isinstance(m, NORM) for _, m in walked)
                and not _reparametrized(model)):  # a hidden layer that could be normalised
            found.append("has no normalisation; DCGAN puts BatchNorm in every discriminator "
                         "layer but the input (layer norm or spectral norm where a gradient "
                         "penalty or a Lipschitz bound rules BatchNorm out)")
    return found


def _reparametrized(model: nn.Module) -> bool:
    """Whether a layer of ``model`` has its weight reparametrized (spectral or weight
    normalisation, as a parametrization or as the older forward pre-hook)."""
    return any(parametrize.is_parametrized(m) or hasattr(m, "weight_orig") or hasattr(m, "weight_g")
               for m in model.modules())


@hookimpl
def gantrix_register_tricks(register):
    register(DCGAN)
