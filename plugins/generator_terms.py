"""Terms on the players' parameters and on the generator's output: BigGAN's orthogonal
regularization, MSGAN's mode-seeking term, and the historical averaging of Salimans et al.

- ``orthogonal-regularization``: β·Σ_W ‖W Wᵀ ⊙ (1 − I)‖²_F over the generator's weight
  matrices, each filter a row (Brock et al. 2019, BigGAN §3.1).
- ``mode-seeking``: λ / (d_I(G(z₁), G(z₂)) / d_z(z₁, z₂) + ε) on pairs of the batch's own
  fakes, added to the generator's loss (Mao et al. 2019, MSGAN eq. 3).
- ``historical-averaging``: λ‖θ − (1/t)Σᵢ θᵢ‖² for each player in its own updates
  (Salimans et al. 2016 §3.3), the running averages checkpointed.

A `gantrix.Batch` carries samples, not models, so the two terms on parameters take the
models when they are checked after building (`gantrix_check_model`, called once per role by
`gantrix.build_models`, after every architecture trick's transform): the modules that train,
spectral normalisation and conditioning included. All three only train: a run trained
with them samples without this plugin.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from gantrix.plugin import ROLES, Clash, Finding, GantrixError, Param, Regularizer, hookimpl

BIGGAN = ("Brock, Donahue & Simonyan 2019, Large Scale GAN Training for High Fidelity Natural "
          "Image Synthesis (BigGAN)")
MSGAN = ("Mao, Lee, Tseng, Ma & Yang 2019, Mode Seeking Generative Adversarial Networks for "
         "Diverse Image Synthesis (MSGAN)")
SALIMANS = "Salimans et al. 2016, Improved Techniques for Training GANs"

#: the layers whose weights are filter matrices: Linear, Conv and ConvTranspose (1-3 d).
WEIGHT_LAYERS = (nn.Linear, nn.modules.conv._ConvNd)


class _ReadsModels(Regularizer):
    """A term on a model's parameters: the models are taken as `gantrix.build_models` checks
    them, since the batch does not carry them."""

    def __init__(self, **values):
        super().__init__(**values)
        self._models: dict[str, nn.Module] = {}

    @hookimpl
    def gantrix_check_model(self, model, role):
        self._models[role] = model
        return self.check(model, role)

    def check(self, model: nn.Module, role: str) -> list[Finding] | None:
        """Findings on the built ``model`` (none by default)."""
        return None

    def model(self, role: str) -> nn.Module:
        """The ``role``'s model, as built for this composition."""
        if role not in self._models:
            raise GantrixError(
                f"{self.name} reads the {role}'s parameters, which it is given when the models "
                "are built: build them with gantrix.build_models (gantrix.Trainer does)")
        return self._models[role]


# --------------------------------------------------------------------------- orthogonal


def raw_weight(layer: nn.Module) -> torch.Tensor:
    """The trained weight tensor of ``layer``: the parameter behind a parametrization (the
    matrix spectral normalisation divides by σ, as BigGAN regularizes it) or behind the older
    hook-based spectral norm (``weight_orig``); else ``layer.weight`` itself."""
    if parametrize.is_parametrized(layer, "weight"):
        original = getattr(layer.parametrizations.weight, "original", None)
        if original is not None:
            return original
    return getattr(layer, "weight_orig", layer.weight)


def filter_matrix(layer: nn.Module) -> torch.Tensor:
    """``layer``'s weight as a (filters, fan-in) matrix: one row per output feature or channel.

    Linear (out, in) is that already; a convolution (out, in/g, k…) becomes (out, in/g·∏k);
    a transposed convolution stores (in, out/g, k…), so its groups' axes are swapped first to
    give (out, in/g·∏k) too.
    """
    w = raw_weight(layer)
    if isinstance(layer, nn.modules.conv._ConvTransposeNd):
        w = w.unflatten(0, (layer.groups, -1)).transpose(1, 2).flatten(0, 1)
    return w.flatten(1)


def weight_matrices(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """(layer name, filter matrix) of every Linear, Conv and ConvTranspose layer of ``model``."""
    return [(name, filter_matrix(m)) for name, m in model.named_modules()
            if isinstance(m, WEIGHT_LAYERS)]


def off_diagonal_gram(w: torch.Tensor) -> torch.Tensor:
    """‖W Wᵀ ⊙ (1 − I)‖²_F: the squared inner products between distinct rows of ``w``."""
    gram = w @ w.transpose(0, 1)
    off = 1 - torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return (gram * off).square().sum()


class OrthogonalRegularization(_ReadsModels):
    """Orthogonal regularization of the generator (Brock et al. 2019, BigGAN, §3.1):

        β · Σ_W ‖W Wᵀ ⊙ (1 − I)‖²_F,   β = ``beta`` = 1e-4,

    over the generator's weight matrices W, one row per filter: Linear weights as they are
    (out, in), convolution weights reshaped to (out, in·k·k), transposed convolutions' to the
    same (out, in·k·k) layout. The term pushes distinct filters towards orthogonality without
    constraining their norms (the full penalty ‖WᵀW − I‖² of Brock et al. 2017 also fixes
    the norms, which BigGAN found too limiting); BigGAN adds it so that G becomes amenable to
    the truncation trick.

    Orientation: the paper's aim is "the pairwise cosine similarity between filters", so its
    WᵀW is the Gram matrix of the filters, read with the filters as W's columns (the (in,
    out) layout of TensorFlow's dense weights). PyTorch stores a layer's filters as rows
    (out, in), where that matrix is W Wᵀ: the choice of BigGAN's PyTorch reference code
    (``utils.ortho``: ``w = param.view(param.shape[0], -1)``, then ``w @ w.t()``). Taken
    literally on (out, in·k·k), WᵀW would instead decorrelate the input positions.

    Which parameters: the weights of Linear, Conv and ConvTranspose layers only. Biases,
    normalisation layers' affine parameters (both 1-D), embeddings (BigGAN's reference code
    leaves its shared class embedding out) and any other parameter are not regularized. A
    spectrally normalised layer (``spectral-norm:role=both``) is regularized on the weight it
    trains, before the division by σ(W), as in BigGAN. A layer with more filters than inputs
    (the first layer of a generator with a 2-D latent) cannot have all its filters
    orthogonal; there the term keeps their inner products small.

    The value is the paper's formula. BigGAN's code adds the gradient 2β·(W Wᵀ ⊙ (1 − I))·W
    directly, half this formula's gradient 4β·(W Wᵀ ⊙ (1 − I))·W: its strength 1e-4 is
    ``beta=5e-5`` here. A model check warns when the generator has no such layer (the term
    adds nothing).
    """

    name = "orthogonal-regularization"
    summary = "BigGAN: beta * sum ||W W^T * (1 - I)||_F^2 over G's weights (decorrelated filters)"
    paper = BIGGAN + ", §3.1"
    params = (Param("beta", float, 1e-4, "beta, the weight of the penalty", low=0.0, high=1e4),)

    def check(self, model, role):
        if role != "generator" or weight_matrices(model):
            return None
        return [Finding("warning", f"the generator ({type(model).__name__}) has no Linear, Conv "
                        "or ConvTranspose layer: orthogonal-regularization has nothing to "
                        "regularize (it adds no term)", (self.name,), self.paper)]

    def value(self, generator: nn.Module) -> torch.Tensor | None:
        """β · Σ_W ‖W Wᵀ ⊙ (1 − I)‖²_F over ``generator``'s weight layers (None without any)."""
        terms = [off_diagonal_gram(w) for _, w in weight_matrices(generator)]
        return self.beta * torch.stack(terms).sum() if terms else None

    def g_term(self, batch):
        return self.value(self.model("generator"))


# --------------------------------------------------------------------------- mode seeking

CONDITIONAL_PAIRS = (
    "mode-seeking pairs the two halves of the batch, whose class labels mostly differ: the "
    "image distance then also counts the change of class, which weakens the term against "
    "collapse within a class (MSGAN pairs two latents under the same condition)")


class ModeSeeking(Regularizer):
    """Mode-seeking regularization (Mao et al. 2019, MSGAN, eq. 3): the generator maximises

        d_I(G(z₁), G(z₂)) / d_z(z₁, z₂),

    how far apart two latents' samples land relative to the latents' own distance, so that
    nearby latents stop collapsing onto one mode. As in the authors' code, the generator
    minimises its inverse, added to its loss:

        λ / (r + ε),   r = mean|G(z₁) − G(z₂)| / mean|z₁ − z₂|,

    with λ = ``weight`` = 1 and ε = ``eps`` = 1e-5. The means run over every element of the
    pairs (the mean absolute difference over sample dimensions and over latent dimensions,
    averaged over the pairs: the authors' ``torch.mean(torch.abs(...))`` on whole batches).

    The pairs are the batch's own: sample i with sample i + ⌊B/2⌋ of the generator update's
    batch (z from ``batch.z``), no extra generator pass; a batch of odd size B uses its first
    2⌊B/2⌋ samples, and a batch of one sample adds nothing. The latent distance is taken
    as at least ε, so that a pair of identical latents (0/0) gives r = 0 and the finite term
    λ/ε instead of NaN; for latents drawn from N(0, I) it is about 1.13 and ε changes
    nothing. It applies to generator updates only.

    The distances are taken on the generator's output itself, before any trick changes what
    the critic sees (``instance-noise``, ``diffaugment``, ``pac``'s packing). The pairs'
    other generator inputs are whatever the batch gives them: under ``cgan`` their class
    labels mostly differ (a warning), under ``infogan`` their codes do.
    """

    name = "mode-seeking"
    summary = "MSGAN: G minimises lambda / (mean|G(z1) - G(z2)| / mean|z1 - z2| + eps)"
    paper = MSGAN + ", eq. 3"
    params = (
        Param("weight", float, 1.0, "lambda, the weight of the term", low=0.0, high=1e4),
        Param("eps", float, 1e-5, "epsilon in 1 / (ratio + eps), also the least latent distance",
              low=0.0, low_open=True, high=1.0),
    )
    conflicts = (Clash("conditional", CONDITIONAL_PAIRS, MSGAN + ", eq. 3", severity="warning"),)

    def __init__(self, **values):
        super().__init__(**values)
        self._generated: tuple | None = None  # (batch, the generator's output on it)

    @hookimpl(tryfirst=True)
    def gantrix_prepare_batch(self, batch):
        if batch.phase == "generator" and batch.step % batch.regularization_interval(self) == 0:
            self._generated = (batch, batch.fake)

    def value(self, fake: torch.Tensor, z: torch.Tensor) -> torch.Tensor | None:
        """λ / (r + ε) for the pairs (i, i + ⌊B/2⌋) of ``fake`` and their latents ``z``;
        None for fewer than two samples."""
        half = fake.shape[0] // 2
        if half == 0:
            return None
        d_image = (fake[:half] - fake[half:2 * half]).abs().mean()
        d_latent = (z[:half] - z[half:2 * half]).abs().mean().clamp_min(self.eps)
        return self.weight / (d_image / d_latent + self.eps)

    def g_term(self, batch):
        seen, fake = self._generated or (None, None)
        self._generated = None
        if seen is not batch:  # a batch no gantrix_prepare_batch ran on: its fakes are G's
            fake = batch.fake
        if batch.z is None or batch.z.shape[0] != fake.shape[0]:
            got = None if batch.z is None else tuple(batch.z.shape)
            raise GantrixError(f"mode-seeking pairs the generated samples with their latent "
                               f"vectors, but the batch has {fake.shape[0]} samples and "
                               f"latents of shape {got}")
        return self.value(fake, batch.z)


# --------------------------------------------------------------------------- averaging

class HistoricalAveraging(_ReadsModels):
    """Historical averaging (Salimans et al. 2016, §3.3): each player's cost gets the term

        λ · ‖θ − (1/t) Σᵢ₌₁ᵗ θ[i]‖²

    where θ is all its parameters (the generator's in generator updates, the critic's in
    critic updates) and θ[i] their value at its i-th update so far, the current one
    included: at a player's first update the average is θ itself and the term is 0. It
    penalises parameters for straying far from their own past mean, a gradient 2λ(θ − θ̄)
    that damps the oscillations of gradient descent on a game (the paper finds equilibria of
    low-dimensional games that plain gradient descent circles, and motivates it by fictitious
    play).

    λ = ``weight``. The paper writes the term without a weight and gives none for its
    experiments. Unweighted (λ = 1) it is a sum over every parameter: the core's 2-D models
    (1.3·10⁵ weights each) drift about 0.02 from their mean within 3000 updates, so the term
    reaches 25 to 75, tens of times the adversarial loss, with a gradient 2(θ − θ̄) as large
    as the adversarial gradients (RMS 10⁻² to 7·10⁻² per weight). Since the mean of all past
    values moves ever more slowly, a strong term anchors each player near its first
    parameters. Measured on ``ring8`` (nonsaturating, 3000 updates, seeds 0 and 1): samples
    of high quality 76 % and 81 % without the term; 91 % and 74 % at λ = 1e-3; 40 % and 50 %
    at 1e-2; under 4 % at 0.1 and 1. The default 1e-3 is the largest of those that stays
    within the seeds' spread (the term is then a few hundredths); raise it where the
    players oscillate rather than learn slowly.

    The averages are running means over all of each player's updates (every update, also
    under ``lazy-regularization``, which only spaces out the term), folded in after each
    optimizer step, and checkpointed under ``historical-averaging/generator`` and
    ``historical-averaging/discriminator``: a resumed run continues with the same averages.
    ``unrolled``'s look-ahead copies of the critic are updated without the term's pull (it
    reads the real critic's parameters, constant for the copies): a note. ``ema`` averages
    the generator too, but for sampling only; the two compose.
    """

    name = "historical-averaging"
    needed_to_sample = False  # it keeps training state only
    summary = "lambda * ||theta - mean of past theta||^2 for G and D (Salimans et al. 2016)"
    paper = SALIMANS + ", §3.3"
    params = (Param("weight", float, 1e-3,
                    "lambda, the weight of the term (the paper gives none)", low=0.0, high=1e4),)
    conflicts = (Clash("unrolled", "unrolled's look-ahead critic copies are updated without "
                       "historical-averaging's term (it reads the real critic's parameters): "
                       "the look-ahead omits the pull towards the critic's past mean",
                       severity="note"),)

    def __init__(self, **values):
        super().__init__(**values)
        self._average: dict[str, dict[str, torch.Tensor]] = {}
        self._count: dict[str, int] = {}

    def average(self, role: str) -> dict[str, torch.Tensor]:
        """The running mean of the ``role``'s parameters by name (started from their current
        values when the trick first needs it)."""
        if role not in self._average:
            self._average[role] = {n: p.detach().clone()
                                   for n, p in self.model(role).named_parameters()}
            self._count[role] = 1
        return self._average[role]

    def count(self, role: str) -> int:
        """How many parameter values the ``role``'s average holds (0 before the first)."""
        return self._count.get(role, 0)

    def value(self, role: str) -> torch.Tensor:
        """λ · ‖θ − θ̄‖² for the ``role``'s parameters θ and their running mean θ̄."""
        average = self.average(role)
        return self.weight * sum((p - average[n]).square().sum()
                                 for n, p in self.model(role).named_parameters())

    def d_term(self, batch):
        return self.value("discriminator")

    def g_term(self, batch):
        return self.value("generator")

    def _fold(self, role: str) -> None:
        """Add the ``role``'s parameters as they are now to its running mean."""
        fresh = role not in self._average
        average = self.average(role)
        if fresh:  # the mean was just started from these very values
            return
        self._count[role] += 1
        with torch.no_grad():
            for n, p in self.model(role).named_parameters():
                average[n].lerp_(p, 1.0 / self._count[role])

    @hookimpl
    def gantrix_after_discriminator_step(self):
        self._fold("discriminator")

    @hookimpl
    def gantrix_after_generator_step(self):
        self._fold("generator")

    @hookimpl
    def gantrix_state_dict(self):
        return {f"{self.name}/{role}": {"count": self._count[role],
                                        "average": {n: t.clone() for n, t in average.items()}}
                for role, average in self._average.items()} or None

    @hookimpl
    def gantrix_load_state_dict(self, state, models):
        for role in ROLES:
            saved = state.get(f"{self.name}/{role}")
            if saved is None:
                continue
            params = dict(models.by_role(role).named_parameters())
            if set(saved["average"]) != set(params):
                raise GantrixError(
                    f"{self.name}: the checkpoint's average of the {role}'s parameters does not "
                    f"fit this {role} (parameters "
                    f"{sorted(set(saved['average']) ^ set(params))} are in only one of them)")
            self._models[role] = models.by_role(role)
            self._average[role] = {n: t.to(params[n].device, params[n].dtype, copy=True)
                                   for n, t in saved["average"].items()}
            self._count[role] = int(saved["count"])


@hookimpl
def gantrix_register_tricks(register):
    for cls in (OrthogonalRegularization, ModeSeeking, HistoricalAveraging):
        register(cls)
