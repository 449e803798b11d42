"""End to end: every loss, and the built-in tricks around it, stepped through the composed
training step on 2-D data with the core's default models."""
from __future__ import annotations

import math

import pytest

import gantrix

LOSSES = ["minimax", "nonsaturating", "wgan", "hinge", "lsgan", "rsgan", "rasgan", "ralsgan", "rahinge"]


def _run(step, data, n=3):
    for _ in range(n):
        out = step.step(data)
    assert out and all(math.isfinite(v.item()) for v in out.values()), out
    return out


def test_every_loss_trick_is_covered():
    assert set(LOSSES) <= set(gantrix.tricks("loss"))


@pytest.mark.parametrize("loss", LOSSES)
def test_each_loss_trains(loss, composed):
    step, data = composed(loss)
    out = _run(step, data)
    assert {"d_loss", "g_loss"} <= set(out)


@pytest.mark.parametrize("tricks", [
    ("wgan", "gradient-penalty", "n-critic:2", "adam:beta1=0,beta2=0.9"),
    ("wgan", "gradient-penalty:interpolate=false,one_sided=true", "ttur"),
    ("wgan", "weight-clip", "rmsprop", "n-critic:2"),
    ("nonsaturating", "r1", "lazy-regularization:every=2", "ema"),
    ("rasgan", "r2", "instance-noise:sigma=0.1,anneal_steps=2"),
    ("minimax", "dragan", "label-smoothing"),
    ("nonsaturating", "label-smoothing", "ttur"),
], ids=lambda t: "+".join(t))
def test_compositions_train(tricks, composed):
    step, data = composed(*tricks)
    out = _run(step, data)
    regularizers = [t.name for t in step.composition.tricks if t.kind == "regularizer"]
    for name in regularizers:
        assert f"d/{name}" in out


@pytest.mark.parametrize("recipe", ["wgan", "wgan-gp", "rsgan", "rasgan", "ralsgan", "rahinge"])
def test_data_agnostic_recipes_train_on_vectors(recipe, composed):
    step, data = composed(recipe=recipe)
    _run(step, data, n=2)


def test_diffaugment_trains_on_images(composed):
    step, data = composed("nonsaturating", "diffaugment", "r1", shape=(1, 8, 8), batch=8)
    _run(step, data, n=2)


@pytest.mark.parametrize("recipe", ["dcgan", "selu-gan", "cgan", "infogan"])
def test_image_recipes_train_on_small_images(recipe, composed):
    step, data = composed(recipe=recipe, shape=(1, 8, 8), batch=8, classes=3)
    _run(step, data, n=2)
