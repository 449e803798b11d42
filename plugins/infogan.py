"""InfoGAN (Chen et al. 2016): latent codes c beside the noise z, made meaningful by
maximising the mutual information I(c; G(z, c)) through a variational lower bound,

    min_{G,Q} max_D  V(D, G) − λ·L_I(G, Q),
    L_I = E_{c~p(c), x~G(z,c)}[log Q(c | x)] + H(c)  ≤  I(c; G(z, c)),

where Q(c | x) is a small head on the critic's features. Maximising L_I is minimising the
negative log-likelihood of the sampled codes under Q, evaluated on the fakes — a
cross-entropy for a categorical code, a Gaussian NLL for continuous ones.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gantrix.plugin import (Architecture, FeatureCritic, ModelTransformError, Param, ParamError,
                            distributed, hookimpl, layer_stack, takes_keyword, widen_input)

PAPER = ("Chen, Duan, Houthooft, Schulman, Sutskever & Abbeel 2016, InfoGAN: Interpretable "
         "Representation Learning by Information Maximizing Generative Adversarial Nets")

CONV = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
LAYER = (nn.Linear, *CONV)


def sample_codes(n: int, categorical: int, continuous: int, device=None):
    """Codes for ``n`` samples: the category index (n,) ~ U{0..K−1} (None when K = 0), the
    continuous codes (n, continuous) ~ U[−1, 1], and G's input vector [one-hot, continuous]."""
    index = distributed.randint(0, categorical, n, device=device) if categorical else None
    cont = distributed.rand(n, continuous, device=device) * 2 - 1
    parts = [F.one_hot(index, categorical).float()] if categorical else []
    return index, cont, torch.cat(parts + [cont], 1)


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """−log N(x; mean, I), summed over the code dimensions and averaged over the batch."""
    return (0.5 * (x - mean).square() + 0.5 * math.log(2 * math.pi)).sum(1).mean()


class InfoGenerator(nn.Module):
    """G(z, c) = wrapped([z, c]). Without ``codes`` (sampling) c is drawn from its prior."""

    def __init__(self, wrapped: nn.Module, categorical: int, continuous: int):
        super().__init__()
        self.wrapped = wrapped
        self.categorical, self.continuous = categorical, continuous

    def forward(self, z: torch.Tensor, codes: torch.Tensor | None = None, **inputs):
        if codes is None:
            codes = sample_codes(z.shape[0], self.categorical, self.continuous, z.device)[2]
        return self.wrapped(torch.cat([z.flatten(1), codes.to(z.dtype)], 1), **inputs)


def q_head(layer: nn.Module, outputs: int, hidden: int) -> nn.Module:
    """Q's head on the features ``layer`` (the critic's last layer) takes: two layers, the
    first with ``layer``'s own geometry (so on conv features it sees what the logit sees)."""
    if isinstance(layer, nn.Linear):
        first, last = nn.Linear(layer.in_features, hidden), nn.Linear(hidden, outputs)
    else:
        conv = next(c for c in CONV if isinstance(layer, c))
        first = conv(layer.in_channels, hidden, layer.kernel_size, layer.stride, layer.padding)
        last = conv(hidden, outputs, 1)
    return nn.Sequential(first, nn.LeakyReLU(0.2), last)


class InfoCritic(FeatureCritic):
    """The critic with a Q head sharing its body: returns ``{"logits", "q_logits",
    "q_mean"}``. Q reads the input of the critic's last layer (``tap``), kept during the
    critic's own forward pass (`gantrix.models.FeatureCritic`), so the body runs once."""

    def __init__(self, wrapped: nn.Module, tap: nn.Module, categorical: int, continuous: int,
                 hidden: int = 128):
        super().__init__(wrapped, tap, "infogan")
        self.categorical = categorical
        self.q = q_head(tap, categorical + continuous, hidden)

    def forward(self, x: torch.Tensor, **inputs) -> dict:
        out, features = self.critic(x, inputs)
        out = dict(out) if isinstance(out, dict) else {"logits": out}
        q = self.q(features)
        if q.dim() > 2:  # conv head: average any spatial positions left
            q = q.flatten(2).mean(2)
        out["q_logits"], out["q_mean"] = q[:, :self.categorical], q[:, self.categorical:]
        return out


class InfoGAN(Architecture):
    """InfoGAN's latent codes, Q head and mutual-information term.

    G's input becomes ``[z, c]``: one categorical code with ``categorical`` categories
    (one-hot; 0 for none) and ``continuous`` codes ~ U[−1, 1]. D gets a Q head sharing its
    body: on the features entering D's last layer, a hidden layer of ``q_width`` units
    (LeakyReLU 0.2; on conv features it has the last layer's geometry) and an output of
    the category logits and the continuous codes' means. The paper's Q also has BatchNorm
    after its hidden layer; it is left out here so Q adds no batch coupling to the critic.

    The term, on Q(fake) (the critic's one forward pass on the fakes, shared with the loss):

        L = λ_cat · CE(q_logits, c_cat) + λ_cont · mean_b Σ_j [½(c_j − μ_j)² + ½ log 2π]

    (Q's continuous posterior is a unit-variance Gaussian, as in the paper's experiments).
    It is added to the critic's loss (fakes detached: it trains Q and the shared body) and to
    the generator's (D frozen: it trains G), logged as ``infogan/categorical`` and
    ``infogan/continuous``. λ_cat = ``weight`` = 1 and λ_cont = ``continuous_weight`` = 0.1:
    the paper (§6) keeps λ = 1 for discrete codes and smaller for continuous ones, whose
    differential entropy would otherwise outweigh the GAN objective. A λ of 0 drops its
    term: with both 0, G still takes the codes but nothing makes them meaningful (the
    baseline of an ablation of the term itself, ``--add infogan:weight=0,continuous_weight=0``).

    On digits and mnist, `gantrix eval` measures what the paper does (§5.1): how well the
    categorical code agrees with the digit class the built-in classifier sees, as
    ``code_mi`` (the mutual information over H(c)) and ``code_accuracy`` (under the best
    matching of code values to digits; the paper: 5 % error on MNIST), from samples that
    cycle through the code values (`gantrix_code_inputs`).

    Models are wrapped and the first layer of G's layer stack (``.net``) widened for the
    codes; D's last weight layer is found in its stack. A generator whose ``forward``
    already takes ``codes=`` is left as it is. Sample with ``G(z, codes=c)``.
    """

    name = "infogan"
    summary = "InfoGAN: latent codes + Q head; maximise the mutual information I(c; G(z, c))"
    paper = PAPER
    params = (
        Param("categorical", int, 10, "categories of the categorical code (0: none)",
              low=0, high=1000),
        Param("continuous", int, 2, "continuous codes, each ~ U[-1, 1]", low=0, high=100),
        Param("weight", float, 1.0, "lambda for the categorical code (0: the codes "
              "without their mutual-information term)", low=0.0, high=1e4),
        Param("continuous_weight", float, 0.1, "lambda for the continuous codes",
              low=0.0, high=1e4),
        Param("q_width", int, 128, "hidden units of the Q head", low=1, high=8192),
    )

    def validate(self) -> None:
        if self.categorical == 1:
            raise ParamError("infogan: parameter 'categorical' got 1; a one-category code "
                             "carries no information: use 0 (none) or at least 2")
        if self.categorical + self.continuous == 0:
            raise ParamError("infogan: no codes (categorical=0 and continuous=0); "
                             "set at least one of them")

    @property
    def code_size(self) -> int:
        return self.categorical + self.continuous

    @hookimpl
    def gantrix_transform_model(self, model, role, spec):
        if role == "generator" and takes_keyword(model, "codes"):
            return None
        try:
            net = layer_stack(model)
            if role == "generator":
                net[0] = widen_input(net[0], self.code_size)
                return InfoGenerator(model, self.categorical, self.continuous)
            layers = [m for m in net.modules() if isinstance(m, LAYER)]
            if not layers:
                raise TypeError("its layer stack has no Linear or Conv layer")
            return InfoCritic(model, layers[-1], self.categorical, self.continuous, self.q_width)
        except TypeError as exc:
            need = ("give its forward a codes= keyword" if role == "generator" else
                    "return {'logits', 'q_logits', 'q_mean'} from a Q head of your own")
            raise ModelTransformError(
                f"cannot add InfoGAN's codes to the {role} ({type(model).__name__}): {exc}. "
                f"Keep its layers in a `.net` nn.Sequential that takes the input, or {need}") from None

    @hookimpl
    def gantrix_code_inputs(self, n, device, generator):
        """The categorical code cycling through its K values over ``n`` samples (sample i
        gets i mod K), the continuous codes drawn from U[−1, 1] with ``generator``, as G's
        ``codes`` input; None without a categorical code."""
        if not self.categorical:
            return None
        index = torch.arange(n, device=device) % self.categorical
        cont = torch.rand(n, self.continuous, generator=generator, device=device) * 2 - 1
        return index, {"codes": torch.cat([F.one_hot(index, self.categorical).float(), cont], 1)}

    @hookimpl
    def gantrix_condition(self, batch):
        index, cont, vector = sample_codes(batch.batch_size, self.categorical, self.continuous,
                                           batch.device)
        if index is not None:
            batch.codes["categorical"] = index
        if self.continuous:
            batch.codes["continuous"] = cont
        batch.generator_inputs["codes"] = vector

    def information_terms(self, batch) -> dict[str, torch.Tensor]:
        """λ-weighted negative log-likelihoods of the batch's codes under Q(fake); a code
        whose λ is 0 has no term at all (nothing computed, logged or trained: with both λ
        0, G gets the codes without the mutual-information term, and Q is never trained)."""
        if not (self.categorical and self.weight) and not (self.continuous and
                                                           self.continuous_weight):
            return {}
        out = batch.outputs("fake")
        terms = {}
        if self.categorical and self.weight:
            ce = F.cross_entropy(out["q_logits"], batch.codes["categorical"])
            terms["infogan/categorical"] = self.weight * ce
        if self.continuous and self.continuous_weight:
            nll = gaussian_nll(batch.codes["continuous"], out["q_mean"])
            terms["infogan/continuous"] = self.continuous_weight * nll
        return terms

    @hookimpl
    def gantrix_discriminator_terms(self, batch):
        return self.information_terms(batch)

    @hookimpl
    def gantrix_generator_terms(self, batch):
        return self.information_terms(batch)


@hookimpl
def gantrix_register_tricks(register):
    register(InfoGAN)
