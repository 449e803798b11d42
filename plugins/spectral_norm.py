"""Spectral normalisation (Miyato et al. 2018): every weight matrix divided by its largest
singular value, W̄ = W / σ(W), so each layer is 1-Lipschitz and so is the critic (with
1-Lipschitz activations). σ(W) is estimated by power iteration, one step per forward pass
in training mode, reusing the vectors u, v of the previous step.
"""
from __future__ import annotations

from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from gantrix.plugin import Architecture, Clash, Finding, Param, hookimpl

PAPER = ("Miyato, Kataoka, Koyama & Yoshida 2018, Spectral Normalization for Generative "
         "Adversarial Networks")

LAYER = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d,
         nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def is_spectral_normed(layer: nn.Module) -> bool:
    """Whether ``layer.weight`` is spectrally normalised (by the parametrization, or by the
    older hook-based ``torch.nn.utils.spectral_norm``, which keeps ``weight_orig``)."""
    if hasattr(layer, "weight_orig"):
        return True
    return parametrize.is_parametrized(layer, "weight") and any(
        "SpectralNorm" in type(p).__name__ for p in layer.parametrizations.weight)


def apply_spectral_norm(model: nn.Module, n_power_iterations: int = 1) -> nn.Module:
    """Spectrally normalise every Linear, Conv and ConvTranspose weight of ``model`` in place
    (layers already normalised are left as they are) and return ``model``."""
    for m in list(model.modules()):
        if isinstance(m, LAYER) and not is_spectral_normed(m):
            spectral_norm(m, n_power_iterations=n_power_iterations)
    return model


class SpectralNorm(Architecture):
    """Spectral normalisation of every Linear, Conv and ConvTranspose layer of the critic
    (``role=discriminator``), the generator, or both (``role=both``; SAGAN and BigGAN
    normalise G too, for its conditioning of the training dynamics rather than for a
    Lipschitz bound).

        W̄ = W / σ(W),   σ(W) ≈ uᵀWv by ``n_power_iterations`` power-iteration steps per
        forward pass in training mode (1 in the paper: u, v carry over between steps)

    Uses ``torch.nn.utils.parametrizations.spectral_norm`` (a transposed convolution's
    weight is read with its output channels first). It is applied after every other
    architecture trick's transform, so layers they add or widen (labels, a Q head, a
    minibatch-stddev input) are normalised too; the model check warns about any weight
    layer of a normalised model left without it.

    The critic becomes (about) 1-Lipschitz, the constraint weight clipping approximates
    crudely: using both is redundant (a warning).
    """

    name = "spectral-norm"
    summary = "spectral normalisation of every critic layer: W / sigma(W) by power iteration"
    paper = PAPER
    params = (
        Param("role", str, "discriminator", "which model to normalise",
              choices=("discriminator", "generator", "both")),
        Param("n_power_iterations", int, 1, "power-iteration steps per forward pass",
              low=1, high=100),
    )
    provides = ("lipschitz-constraint",)
    conflicts = (Clash("weight-clip", "spectral normalisation already bounds every layer's "
                       "Lipschitz constant; clipping the normalised weights on top of it only "
                       "removes capacity: use one of them", PAPER,
                       severity="warning"),)

    def _applies(self, role: str) -> bool:
        return self.role in ("both", role)

    def features(self) -> set[str]:
        """A Lipschitz constraint only when the critic is normalised (not ``role=generator``)."""
        tags = super().features()
        return tags if self._applies("discriminator") else tags - {"lipschitz-constraint"}

    @hookimpl(trylast=True)
    def gantrix_transform_model(self, model, role, spec):
        if self._applies(role):
            return apply_spectral_norm(model, self.n_power_iterations)
        return None

    @hookimpl
    def gantrix_check_model(self, model, role):
        if not self._applies(role):
            return None
        missed = [n for n, m in model.named_modules()
                  if isinstance(m, LAYER) and not is_spectral_normed(m)]
        if not missed:
            return None
        return [Finding("warning", f"{role} layers without spectral normalisation: "
                        f"{', '.join(repr(n) for n in missed)} (added after spectral-norm ran?)",
                        (self.name,), PAPER)]


@hookimpl
def gantrix_register_tricks(register):
    register(SpectralNorm)
