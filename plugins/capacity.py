"""Keep the generator smaller than the discriminator (Goodfellow 2016, NIPS tutorial §4.4).

The tutorial's advice on balancing G and D: G learns from D's estimate of the ratio of the
data and model densities, which is only right when D is close to optimal, so D is not the
network to keep small; in practice the discriminator is usually the deeper one, sometimes
with more filters per layer than the generator.
"""
from __future__ import annotations

from torch import nn

from gantrix.plugin import Architecture, Finding, Param, hookimpl

PAPER = "Goodfellow 2016, NIPS 2016 Tutorial: Generative Adversarial Networks, §4.4"


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class SmallerGenerator(Architecture):
    """Warn when the generator has more than ``ratio`` times the discriminator's trainable
    parameters (default 1: G must not be bigger than D).

    The count is taken on the built and transformed models (a conditioning embedding or an
    InfoGAN Q head counts where it lives). The core checks the generator first, then the
    discriminator; the warning gives both counts and the ratio. It only checks: shrink G
    with a smaller ``ModelSpec.width`` / ``dcgan:width`` or a narrower model of your own.
    """

    name = "smaller-generator"
    summary = "warn when G has more parameters than ratio x D's (NIPS 2016 tutorial advice)"
    paper = PAPER
    params = (Param("ratio", float, 1.0, "largest allowed G/D parameter ratio", low=0.0,
                    low_open=True),)

    def __init__(self, **values):
        super().__init__(**values)
        self._generator_size: int | None = None  # from the generator's check

    @hookimpl
    def gantrix_check_model(self, model, role):
        if role == "generator":
            self._generator_size = count_parameters(model)
            return None
        g, d = self._generator_size, count_parameters(model)
        self._generator_size = None
        if g is None or g <= self.ratio * d:
            return None
        return [Finding("warning", f"the generator has {g:,} trainable parameters, "
                        f"{g / d:.2f}x the discriminator's {d:,} (allowed: {self.ratio:g}x); "
                        "the discriminator is usually the bigger network: shrink G or grow D",
                        (self.name,), PAPER)]


@hookimpl
def gantrix_register_tricks(register):
    register(SmallerGenerator)
