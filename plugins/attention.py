"""Self-attention (Zhang, Goodfellow, Metaxas & Odena 2019, SAGAN §3): a block that lets
every position of a feature map draw on every other position, so G can make distant parts
of an image consistent and D can check them, which convolutions, local by design, only do
through many layers.
"""
from __future__ import annotations

import torch
from torch import nn

from gantrix.plugin import (WIDENABLE, Architecture, Finding, GantrixError, ModelTransformError,
                            Param, find_layers, hookimpl, require_images)

PAPER = ("Zhang, Goodfellow, Metaxas & Odena 2019, Self-Attention Generative Adversarial "
         "Networks")
EQUATIONS = PAPER + ", §3, eqs. 1-3"


class SelfAttention(nn.Module):
    """SAGAN's self-attention block on a (B, C, H, W) map; N = H·W positions, C̄ = C / k.

        f(x) = W_f x,  g(x) = W_g x,  h(x) = W_h x        (1×1 convolutions, C → C̄)
        s_ij = f(x_i)ᵀ g(x_j),   β_j,i = exp(s_ij) / Σ_i exp(s_ij)              (eq. 1)
        o_j = W_v Σ_i β_j,i h(x_i)                         (W_v: 1×1, C̄ → C; eq. 2)
        y_j = γ o_j + x_j,   γ a learned scalar, 0 at first                     (eq. 3)

    β_j,i is how much position j attends to position i: a softmax over i for each j. With
    γ = 0 the block is the identity, so inserting it leaves a model's function unchanged;
    training then lets γ grow and the network rely on distant evidence gradually (§3).

    This follows the equations: h(x) has C̄ channels, like f and g. The authors' released
    code differs in two economies: h has C/2 channels (W_v maps them back to C), and the
    keys f and values h are max-pooled 2×2, so each position attends to N/4 pooled ones.
    The weights have no bias (the equations have none; nor has the code) and start from
    Xavier-uniform, the code's initializer. C̄ is at least 1, for narrow models.

    ``size``, when given, records the map size the block was placed for (shown in its
    repr and in the self-attention trick's model check); the block itself takes any size.
    """

    def __init__(self, channels: int, k: int = 8, size: tuple[int, int] | None = None):
        super().__init__()
        inner = max(channels // k, 1)
        self.channels, self.inner, self.size = channels, inner, size
        self.f = nn.Conv2d(channels, inner, 1, bias=False)
        self.g = nn.Conv2d(channels, inner, 1, bias=False)
        self.h = nn.Conv2d(channels, inner, 1, bias=False)
        self.v = nn.Conv2d(inner, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))
        for conv in (self.f, self.g, self.h, self.v):
            nn.init.xavier_uniform_(conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, height, width = x.shape
        keys = self.f(x).flatten(2)                       # (B, C̄, N): f(x_i)
        queries = self.g(x).flatten(2)                    # (B, C̄, N): g(x_j)
        values = self.h(x).flatten(2)                     # (B, C̄, N): h(x_i)
        beta = (keys.transpose(1, 2) @ queries).softmax(dim=1)   # [b, i, j] = β_j,i
        o = self.v((values @ beta).view(b, self.inner, height, width))
        return x + self.gamma * o

    def extra_repr(self) -> str:
        at = f", at {self.size[0]}×{self.size[1]}" if self.size else ""
        return f"channels={self.channels}, inner={self.inner}{at}"


def feature_shapes(model: nn.Module, net: nn.Sequential, example: torch.Tensor
                   ) -> list[tuple[int, int, int] | None]:
    """The (C, H, W) map each module of ``net`` outputs when ``model`` runs on ``example``
    (None where the output is not a 4-D map), from one forward pass in eval mode without
    gradients, through forward hooks; every module's mode is restored.

    Running the model, rather than reading strides, counts what really happens: kernel,
    padding, output padding, upsampling, reshapes, whatever layers the stack holds.
    """
    shapes: list[tuple[int, int, int] | None] = [None] * len(net)

    def keeper(i: int):
        def keep(module, args, output):
            if isinstance(output, torch.Tensor) and output.dim() == 4:
                shapes[i] = tuple(output.shape[1:])
        return keep

    handles = [m.register_forward_hook(keeper(i)) for i, m in enumerate(net)]
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
        for m, training in modes.items():
            m.training = training
    return shapes


def _sizes(shapes) -> str:
    """``4×4, 8×8``: the distinct map sizes in ``shapes``, in the order met."""
    return ", ".join(dict.fromkeys(f"{h}×{w}" for _, h, w in shapes))


class SelfAttentionTrick(Architecture):
    """Insert SAGAN's self-attention block (§3) into the generator and/or the critic, after
    the layer whose feature maps have side ``resolution``.

        y = γ · W_v(h(x) β) + x,   β = softmax over positions of f(x)ᵀ g(x),   γ₀ = 0

    (f, g, h: 1×1 convolutions to C/k channels, k = 8 as in the paper; W_v back to C; see
    `SelfAttention` for the equations and where the authors' code differs). γ starts at 0,
    so the models compute at first exactly what they did without the block.

    Where: the models' layer stack (``.net``: the core's models, ``dcgan``'s) is run once
    on a probe batch (zeros: latent vectors for G, samples for D; eval mode, no gradient)
    with forward hooks recording each layer's output map. The block goes right after the
    last layer whose maps are ``resolution`` × ``resolution`` — the end of that stage,
    after its normalisation and activation — but never after the model's last weight layer
    (G's output layer, D's scoring layer), which leaves no hidden maps to attend over.
    ``resolution=none`` (the default) is half the image side: 32 for 64×64 images, 16 for
    the 32×32 MNIST data, 4 for the 8×8 digits, sizes the core's and dcgan's models have
    in both G and D. SAGAN (128×128 ImageNet) found attention on the larger maps best
    (32×32 and 64×64 over 8×8 and 16×16, Table 1); half the side is the larger of those,
    scaled; its released code uses 32×32, a quarter. A side no hidden layer has is an
    error naming the sizes the model has. The cost grows as (side²)² per sample.

    Images only: vector data (the 2-D mixtures) has no positions to attend over, an error.
    The transform runs early (like ``minibatch-stddev``; among those, in recipe order),
    before tricks that wrap the models with labels or codes (the probe needs a model that
    runs on its plain input), and before ``spectral-norm``, which then normalises the
    block's four convolutions too, as SAGAN does. The model check notes where each block
    sits. ``role``: ``both`` (SAGAN), ``generator`` or ``discriminator``.
    """

    name = "self-attention"
    summary = "SAGAN self-attention block in G and D: y = gamma * attention(x) + x, gamma from 0"
    paper = EQUATIONS
    params = (
        Param("resolution", int, None, "side of the feature maps the block attends over "
              "(default: half the image side: 32 for 64×64 images)",
              low=2, optional=True, high=1024),
        Param("role", str, "both", "which model gets the block",
              choices=("both", "generator", "discriminator")),
        Param("k", int, 8, "f, g and h have C/k channels (at least 1)", low=1, high=1024),
    )

    def _applies(self, role: str) -> bool:
        return self.role in ("both", role)

    @hookimpl(tryfirst=True)
    def gantrix_transform_model(self, model, role, spec):
        if not self._applies(role):
            return None
        require_images(self.name, spec, "attends over the positions of image feature maps",
                       f"the {role} has no feature maps")
        side = self.resolution or spec.shape[1] // 2
        what = f"the {role} ({type(model).__name__})"
        net = find_layers(model)
        if net is None:
            raise ModelTransformError(f"cannot insert self-attention into {what}: it has no "
                                      "`.net` layer stack (nn.Sequential fed the input)")
        weights = [i for i, m in enumerate(net)
                   if any(isinstance(layer, WIDENABLE) for layer in m.modules())]
        if not weights:
            raise ModelTransformError(f"cannot insert self-attention into {what}: its layer "
                                      "stack has no Linear or Conv layer")
        param = next(model.parameters(), torch.zeros(()))
        shape = (spec.latent_dim,) if role == "generator" else tuple(spec.shape)
        example = torch.zeros(2, *shape, device=param.device, dtype=param.dtype)
        try:
            shapes = feature_shapes(model, net, example)
        except (GantrixError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            raise ModelTransformError(
                f"cannot find the feature-map sizes of {what}: it failed on a probe batch of "
                f"shape {tuple(example.shape)} alone ({exc})") from None
        hidden = [(i, s) for i, s in enumerate(shapes[:weights[-1]]) if s is not None]
        at = [i for i, (_, h, w) in hidden if h == w == side]
        if not at:
            has = _sizes(s for _, s in hidden) or "none"
            asked = (f"resolution={side}" if self.resolution else
                     f"resolution=none: half the image side, {side}")
            raise ModelTransformError(
                f"no hidden layer of {what} makes {side}×{side} feature maps ({asked}); its "
                f"hidden feature maps are {has}: set self-attention's resolution to one of "
                "those sides")
        i = at[-1]
        block = SelfAttention(shapes[i][0], self.k, (side, side))
        net.insert(i + 1, block.to(device=param.device, dtype=param.dtype))
        return model

    @hookimpl
    def gantrix_check_model(self, model, role):
        if not self._applies(role):
            return None
        return [Finding("note", f"{role}: self-attention block {path!r} on "
                        f"{m.size[0]}×{m.size[1]} maps of {m.channels} channels "
                        f"(f, g, h: {m.inner} channels)", (self.name,), PAPER)
                for path, m in model.named_modules()
                if isinstance(m, SelfAttention) and m.size is not None]


@hookimpl
def gantrix_register_tricks(register):
    register(SelfAttentionTrick)
