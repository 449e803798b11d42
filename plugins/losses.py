"""The classic adversarial losses, on critic logits r (real) and f (fake).

Binary cross-entropy is taken on logits (``softplus``), which is the numerically stable
form of the papers' log D(x); so every loss here wants a critic *without* a final Sigmoid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from gantrix.plugin import Clash, Finding, Loss, Requires, hookimpl, output_module

SIGMOID_REASON = (
    "the critic ends in a Sigmoid: a Wasserstein critic must be unbounded (its output is "
    "an estimate of the Earth-Mover distance, not a probability)"
)
WGAN_PAPER = "Arjovsky, Chintala & Bottou 2017, Wasserstein GAN, §3"
LIPSCHITZ_REASON = (
    "the critic must be K-Lipschitz for its loss to estimate the Earth-Mover distance; "
    "without a constraint its outputs grow without bound and give the generator no "
    "useful gradient"
)
LIPSCHITZ_PAPERS = WGAN_PAPER + "; Gulrajani et al. 2017, Improved Training of Wasserstein GANs"


def ends_in_sigmoid(model: torch.nn.Module) -> bool:
    """True when the module that makes ``model``'s output (`output_module`) is a Sigmoid."""
    return isinstance(output_module(model), torch.nn.Sigmoid)


class _LogitLoss(Loss):
    """Shared check: gantrix losses take logits, so a final Sigmoid is always a mistake."""

    sigmoid_message = ("the critic ends in a Sigmoid, but gantrix losses take logits "
                       "(BCE is computed on logits for stability): remove the Sigmoid")
    sigmoid_paper = ""

    @hookimpl
    def gantrix_check_model(self, model, role):
        if role == "discriminator" and ends_in_sigmoid(model):
            return [Finding("error", self.sigmoid_message, (self.name,), self.sigmoid_paper)]
        return None


class Minimax(_LogitLoss):
    """The original GAN game (Goodfellow et al. 2014): D maximises log D(x) + log(1 − D(G(z))),
    G minimises log(1 − D(G(z))). G's gradient vanishes when D is confident, which is why
    the paper itself recommends the non-saturating form for G.

    D = BCE(r, 1) + BCE(f, 0);  G = mean(log(1 − σ(f))) = −mean(softplus(f)).
    """

    name = "minimax"
    summary = "original GAN loss: G minimises log(1 - D(G(z))) (saturates early in training)"
    paper = "Goodfellow et al. 2014, Generative Adversarial Nets, eq. 1"
    provides = ("bce-real-term", "target-labels")
    generator_uses_real = False

    def d_loss(self, real_logits, fake_logits):
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()

    def g_loss(self, real_logits, fake_logits):
        return -F.softplus(fake_logits).mean()


class NonSaturating(Minimax):
    """The non-saturating GAN loss: G maximises log D(G(z)) instead of minimising
    log(1 − D(G(z))), giving strong gradients early in training (Goodfellow et al. 2014, §3).
    The discriminator's loss is the minimax one.

    D = BCE(r, 1) + BCE(f, 0);  G = BCE(f, 1).
    """

    name = "nonsaturating"
    summary = "non-saturating GAN loss: G maximises log D(G(z)) (the DCGAN default)"
    paper = "Goodfellow et al. 2014, Generative Adversarial Nets, §3"

    def g_loss(self, real_logits, fake_logits):
        return F.softplus(-fake_logits).mean()


class Wasserstein(_LogitLoss):
    """The Wasserstein GAN loss: the critic estimates the Earth-Mover distance between the
    real and generated distributions; it must be (approximately) 1-Lipschitz, which weight
    clipping or a gradient penalty enforces, and unbounded (no Sigmoid, no log).

    D = mean(f) − mean(r);  G = −mean(f).
    """

    name = "wgan"
    summary = "Wasserstein loss: critic without sigmoid or log; needs a Lipschitz constraint"
    paper = "Arjovsky, Chintala & Bottou 2017, Wasserstein GAN"
    provides = ("wasserstein-loss",)
    requires = (Requires("lipschitz-constraint", LIPSCHITZ_REASON, LIPSCHITZ_PAPERS,
                         severity="warning"),)
    conflicts = (Clash("sigmoid-output", SIGMOID_REASON, WGAN_PAPER),)
    generator_uses_real = False
    sigmoid_message = SIGMOID_REASON
    sigmoid_paper = WGAN_PAPER

    def d_loss(self, real_logits, fake_logits):
        return fake_logits.mean() - real_logits.mean()

    def g_loss(self, real_logits, fake_logits):
        return -fake_logits.mean()


class Hinge(_LogitLoss):
    """The hinge loss of geometric GAN / SAGAN / BigGAN: the critic only cares about samples
    inside the margin.

    D = mean(relu(1 − r)) + mean(relu(1 + f));  G = −mean(f).
    """

    name = "hinge"
    summary = "hinge loss (SAGAN, BigGAN): margin 1 for D, -mean D(G(z)) for G"
    paper = "Lim & Ye 2017, Geometric GAN; Miyato et al. 2018"
    conflicts = (Clash("sigmoid-output", "a hinge critic's margin is meaningless on a "
                       "Sigmoid output in (0, 1)", "Lim & Ye 2017"),)
    generator_uses_real = False

    def d_loss(self, real_logits, fake_logits):
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()

    def g_loss(self, real_logits, fake_logits):
        return -fake_logits.mean()


class LeastSquares(_LogitLoss):
    """The least-squares GAN (a-b-c = 0-1-1 coding): penalises samples by their distance to
    the decision boundary, giving gradients even to samples on the right side of it.

    D = ½ mean((r − 1)²) + ½ mean(f²);  G = ½ mean((f − 1)²).
    """

    name = "lsgan"
    summary = "least-squares GAN loss (0-1-1 coding)"
    paper = "Mao et al. 2017, Least Squares Generative Adversarial Networks, eq. 9"
    provides = ("target-labels",)
    generator_uses_real = False

    def d_loss(self, real_logits, fake_logits):
        return 0.5 * (real_logits - 1).square().mean() + 0.5 * fake_logits.square().mean()

    def g_loss(self, real_logits, fake_logits):
        return 0.5 * (fake_logits - 1).square().mean()


@hookimpl
def gantrix_register_tricks(register):
    for cls in (Minimax, NonSaturating, Wasserstein, Hinge, LeastSquares):
        register(cls)
