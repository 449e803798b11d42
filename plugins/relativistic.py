"""Relativistic losses (Jolicoeur-Martineau 2018, "The relativistic discriminator: a key
element missing from standard GAN").

A standard critic says how real a sample is; a relativistic one says how much *more*
real than the other side it is. D widens the gap between real and fake logits, G narrows
it — so G's loss also pushes the real logits down, and reads them (``generator_uses_real``).
With r the critic's logits on real samples and f on fakes, "mean" over the batch and BCE
on logits:

- RSGAN (pairwise):     D = BCE(r − f, 1);  G = BCE(f − r, 1).
- RaSGAN (average):     D = ½[BCE(r − mean f, 1) + BCE(f − mean r, 0)],
                        G = ½[BCE(r − mean f, 0) + BCE(f − mean r, 1)].
- RaLSGAN:              D = ½[mean((r − mean f − 1)²) + mean((f − mean r + 1)²)],
                        G = ½[mean((f − mean r − 1)²) + mean((r − mean f + 1)²)].
- RaHinge:              D = ½[mean(relu(1 − (r − mean f))) + mean(relu(1 + (f − mean r)))],
                        G = ½[mean(relu(1 − (f − mean r))) + mean(relu(1 + (r − mean f)))].

The ½ is the mean of the two terms, as in the paper's reference code. All four run through
`gantrix.kernels.relativistic_loss` (one fused pass on the GPU).
"""
from __future__ import annotations

import torch

from gantrix.plugin import Clash, Finding, Loss, distributed, hookimpl, kernels, output_module

PAPER = "Jolicoeur-Martineau 2018, The relativistic discriminator: a key element missing from standard GAN"
LOGITS_REASON = ("the critic ends in a Sigmoid, but relativistic losses compare raw logits "
                 "(the paper's C(x) is the critic before its activation): remove the Sigmoid")


class _Relativistic(Loss):
    """Shared body: the kernel call and the logits-only rule."""

    #: ``"sgan"``, ``"lsgan"`` or ``"hinge"``: the loss applied to the relative logits.
    relativistic_kind = "sgan"
    #: compare each sample with the other side's batch mean (True) or pairwise (False).
    average = True
    conflicts = (Clash("sigmoid-output", LOGITS_REASON, PAPER),)
    generator_uses_real = True

    def d_loss(self, real_logits, fake_logits):
        # the batch means are the global batch's when processes share it (gather_rows)
        real_logits, fake_logits = map(distributed.gather_rows, (real_logits, fake_logits))
        return kernels.relativistic_loss(real_logits, fake_logits, kind=self.relativistic_kind,
                                         average=self.average, for_generator=False)

    def g_loss(self, real_logits, fake_logits):
        real_logits, fake_logits = map(distributed.gather_rows, (real_logits, fake_logits))
        return kernels.relativistic_loss(real_logits, fake_logits, kind=self.relativistic_kind,
                                         average=self.average, for_generator=True)

    @hookimpl
    def gantrix_check_model(self, model, role):
        if role == "discriminator" and isinstance(output_module(model), torch.nn.Sigmoid):
            return [Finding("error", LOGITS_REASON, (self.name,), PAPER)]
        return None


class RSGAN(_Relativistic):
    """Relativistic standard GAN: the probability that a real sample is more realistic than
    a fake one, taken pairwise (real i against fake i).

    D = BCE(r − f, 1) = mean(softplus(f − r));  G = BCE(f − r, 1) = mean(softplus(r − f)).
    """

    name = "rsgan"
    summary = "relativistic standard GAN: D(x_r, x_f) = sigmoid(C(x_r) - C(x_f)), pairwise"
    paper = PAPER + ", §4.1"
    average = False


class RaSGAN(_Relativistic):
    """Relativistic average standard GAN: each sample is compared with the mean logit of
    the other side, so a whole batch is judged at once.

    D = ½[BCE(r − mean f, 1) + BCE(f − mean r, 0)];  G = ½[BCE(r − mean f, 0) + BCE(f − mean r, 1)].
    """

    name = "rasgan"
    summary = "relativistic average standard GAN: compare each logit with the other side's mean"
    paper = PAPER + ", §4.2"


class RaLSGAN(_Relativistic):
    """Relativistic average least-squares GAN.

    D = ½[mean((r − mean f − 1)²) + mean((f − mean r + 1)²)];
    G = ½[mean((f − mean r − 1)²) + mean((r − mean f + 1)²)].
    """

    name = "ralsgan"
    summary = "relativistic average least-squares GAN"
    paper = PAPER + ", §4.2"
    relativistic_kind = "lsgan"


class RaHinge(_Relativistic):
    """Relativistic average hinge GAN.

    D = ½[mean(relu(1 − (r − mean f))) + mean(relu(1 + (f − mean r)))];
    G = ½[mean(relu(1 − (f − mean r))) + mean(relu(1 + (r − mean f)))].
    """

    name = "rahinge"
    summary = "relativistic average hinge GAN"
    paper = PAPER + ", §4.2"
    relativistic_kind = "hinge"


@hookimpl
def gantrix_register_tricks(register):
    for cls in (RSGAN, RaSGAN, RaLSGAN, RaHinge):
        register(cls)
