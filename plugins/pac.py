"""PacGAN (Lin, Khetan, Fanti & Oh 2018): the critic judges m samples at once.

A pack of m real samples, or of m generated ones, is one input of the critic. A generator
that collapses onto a few modes produces packs with telltale repeats that a critic seeing
m samples together can spot, while each single sample might pass: packing penalises mode
collapse: the paper shows that the distance between packed distributions grows much faster
with the probability mass a generator misses than with milder differences.
"""
from __future__ import annotations

import torch

from gantrix.plugin import (Architecture, Clash, Finding, GantrixError, ModelTransformError,
                            Param, hookimpl, layer_stack, widen_input)

PAPER = ("Lin, Khetan, Fanti & Oh 2018, PacGAN: The power of two samples in generative "
         "adversarial networks")

PER_SAMPLE = ("the critic sees packs of m samples, so it cannot be given one {what} per "
              "sample: {why}; train the conditional model without pac, or pac without "
              "the conditioning")


def pack(x: torch.Tensor, m: int) -> torch.Tensor:
    """(B, C, ...) → (B/m, m·C, ...): samples b = p·m + j (j < m) form pack p, sample j's
    channels (features) at positions j·C … j·C + C − 1."""
    return x.reshape(x.shape[0] // m, m * x.shape[1], *x.shape[2:])


class Pac(Architecture):
    """PacGAN: the critic scores packs of ``m`` samples (Lin et al. 2018).

        D(x₁, …, x_m): the m samples concatenated along channels (images:
        (B, C, H, W) → (B/m, m·C, H, W)) or features (vectors: (B, D) → (B/m, m·D));
        samples b = p·m … p·m + m − 1 form pack p. Real packs hold real samples only,
        fake packs fakes only.

    ``m`` (int, 2 … 16, default 2): samples per pack. The paper trains with m = 2, 3 and 4,
    and m = 2 already captures all 1,000 Stacked-MNIST modes in its experiments. The
    critic's first layer (``net[0]`` of its layer stack: the core's models, ``dcgan``'s) is
    widened to m times its inputs, its weights kept for the first sample of the pack; any
    other critic is an error.

    The batch is packed in ``gantrix_prepare_batch`` after every other trick's (noise and
    augmentation act on single samples first). The batch size must be a multiple of m: a
    clear error before the run starts (``gantrix_check_settings``), or on the first batch of a
loop that drives `ComposedStep` itself, before any update. ``--batch-size`` counts samples, so
the critic sees batch/m packs per side: PacGAN keeps the number of packs fixed as m grows
(its batch of 64 packs is ``--batch-size`` 64·m here).

    Everything the critic outputs is then per pack, and so is every loss and regularizer:
    E[·] in the loss is a mean over packs, and a gradient penalty is WGAN-GP's definition
    applied to the packed critic — the norm of the critic's input gradient over the whole
    pack (all m samples), with one interpolation weight ε per pack. The critic is kept
    Lipschitz in pack space; R1/R2 likewise penalise the pack gradient's squared norm.

    Relations: conditional critics cannot see packs — ``cgan`` (one label per sample goes
    into the critic) and ``infogan`` (Q must recover each sample's code from the critic's
    features) are errors. ``minibatch-stddev`` works (its groups are groups of packs).
    """

    name = "pac"
    needed_to_sample = False  # it changes only the critic's training
    summary = "PacGAN: the critic judges packs of m samples concatenated (vs mode collapse)"
    paper = PAPER
    params = (Param("m", int, 2, "samples per pack (the critic's input is m samples)",
                    low=2, high=16),)
    conflicts = (
        Clash("conditional", PER_SAMPLE.format(
            what="class label", why="cgan feeds each sample's label to the critic, which "
            "has one score per pack and no place for m different labels"), PAPER),
        Clash("infogan", PER_SAMPLE.format(
            what="latent code", why="infogan's Q head reads the critic's features to "
            "recover each fake's code, and a pack's features mix m fakes' codes"), PAPER),
    )

    @hookimpl
    def gantrix_transform_model(self, model, role, spec):
        if role != "discriminator":
            return None
        try:
            net = layer_stack(model)
            first = net[0]
            inputs = getattr(first, "in_features", getattr(first, "in_channels", None))
            if inputs is None:
                raise TypeError(f"its first layer is a {type(first).__name__}, not a "
                                "Linear or Conv layer that takes the input")
            net[0] = widen_input(first, (self.m - 1) * inputs)
        except TypeError as exc:
            raise ModelTransformError(
                f"cannot make the critic ({type(model).__name__}) take packs of m={self.m} "
                f"samples: {exc}. Keep its layers in a `.net` nn.Sequential whose first layer "
                "(Linear or Conv) takes the input, or give it m times the input "
                "channels/features yourself and drop pac") from None
        return model

    def _batch_error(self, b: int) -> str | None:
        if b % self.m == 0:
            return None
        return (f"pac: the batch size {b} is not a multiple of m={self.m} (the critic sees "
                f"packs of m samples); use a batch size divisible by {self.m}, e.g. "
                f"{b - b % self.m or self.m}, or change m")

    @hookimpl
    def gantrix_check_settings(self, batch_size, processes):
        message = self._batch_error(batch_size)
        if message is None and processes > 1 and batch_size // processes % self.m:
            local = batch_size // processes
            message = (f"pac: each of the {processes} processes gets {local} of the batch of "
                       f"{batch_size}, which is not a multiple of m={self.m} (packs never span "
                       f"two processes); use a batch size divisible by {processes * self.m}")
        return [Finding("error", message, (self.name,), self.paper)] if message else None

    @hookimpl(trylast=True)
    def gantrix_prepare_batch(self, batch):
        message = self._batch_error(batch.batch_size)
        if message:  # a loop of the user's own, which never asked gantrix_check_settings
            raise GantrixError(message)
        given = sorted({k for side in batch.critic_inputs.values() for k in side}
                       | set(batch.codes))
        if given:
            raise GantrixError(
                f"pac: another trick gives the critic per-sample inputs ({', '.join(given)}), "
                f"but the critic sees packs of m={self.m} samples and has no place for m of "
                "them; remove pac or that trick")
        batch.real = pack(batch.real, self.m)
        batch.fake = pack(batch.fake, self.m)


@hookimpl
def gantrix_register_tricks(register):
    register(Pac)
