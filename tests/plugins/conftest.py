"""Shared helpers for the built-in tricks' tests: seeded RNG, a tiny smooth critic in float64,
batches built by hand, and a composed run on 2-D data with the core's default models."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import gantrix
from gantrix.step import ComposedStep


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


class CountingCritic(nn.Module):
    """A small smooth (tanh) critic on vectors or images, counting its forward passes."""

    def __init__(self, features: int, hidden: int = 8):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(features, hidden), nn.Tanh(),
                                 nn.Linear(hidden, 1))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.net(x).squeeze(1)


@pytest.fixture
def tiny_critic():
    """``tiny_critic(features)``: a float64 `CountingCritic`."""
    return lambda features: CountingCritic(features).double()


@pytest.fixture
def critic(tiny_critic):
    """A float64 critic on 3-vectors."""
    return tiny_critic(3)


@pytest.fixture
def make_batch():
    """``make_batch(real, fake, critic, phase=, step=, hook=)``: a `gantrix.Batch` over
    given samples (the fake's graph kept as it is)."""

    def make(real, fake, critic, *, phase="discriminator", step=0, hook=None):
        batch = gantrix.Batch(real=real, critic=critic, phase=phase, step=step, hook=hook)
        batch.fake = fake
        return batch

    return make


@pytest.fixture
def composed():
    """``composed(*tricks, shape=, batch=, classes=, recipe=)``: (ComposedStep, data source)
    for a composition on random data (with random labels when ``classes`` is given) and the
    models the composition builds (the core's defaults unless a trick builds them)."""

    def make(*tricks, shape=(2,), batch=32, classes=None, **recipe):
        composition = gantrix.Recipe(*tricks, **recipe).compose()
        spec = gantrix.ModelSpec(shape=shape, num_classes=classes, latent_dim=8, width=8)
        models = gantrix.build_models(composition, spec)

        def data():
            labels = None if classes is None else torch.randint(classes, (batch,))
            return torch.randn(batch, *shape).clamp(-1, 1), labels

        return ComposedStep(composition, models, spec), data

    return make
