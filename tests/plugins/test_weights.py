"""Weight clipping after critic updates, and the generator's weight average."""
from __future__ import annotations

import copy

import torch
from torch import nn

import gantrix


def test_weight_clip_clamps_every_critic_weight_after_a_critic_step(composed):
    step, data = composed("wgan", "weight-clip:c=0.05", "rmsprop")
    generator_before = copy.deepcopy(step.models.generator.state_dict())
    assert max(p.abs().max() for p in step.models.discriminator.parameters()) > 0.05
    step.discriminator_step(*data())
    critic = list(step.models.discriminator.parameters())
    assert all(p.abs().max() <= 0.05 for p in critic)
    assert any((p.abs() == 0.05).any() for p in critic)  # it did clamp, not merely shrink
    for key, value in step.models.generator.state_dict().items():
        assert torch.equal(value, generator_before[key])  # the generator is never clipped


def _models():
    g = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    return gantrix.Models(g, nn.Linear(3, 1))


def _move(model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
        model[1].running_mean.add_(1.0)


def _flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_ema_matches_a_hand_computed_average():
    trick = gantrix.make("ema", decay=0.9)
    models = _models()
    thetas = []
    for step in range(4):
        _move(models.generator, step)
        thetas.append(_flat(models.generator))
        trick.gantrix_after_generator_step(models=models, step=step)
    t0, t1, t2, t3 = thetas
    want = 0.9 * (0.9 * (0.9 * t0 + 0.1 * t1) + 0.1 * t2) + 0.1 * t3
    ema = models.extra["generator_ema"]
    assert ema is trick.averaged(models)
    torch.testing.assert_close(_flat(ema), want)
    assert torch.equal(ema[1].running_mean, models.generator[1].running_mean)  # buffers copied
    assert not any(p.requires_grad for p in ema.parameters())


def test_ema_follows_the_generator_before_start():
    trick = gantrix.make("ema", decay=0.5, start=2)
    models = _models()
    for step in range(3):
        _move(models.generator, step)
        if step == 1:
            before = _flat(models.generator)
        trick.gantrix_after_generator_step(models=models, step=step)
        if step == 1:
            torch.testing.assert_close(_flat(trick.averaged(models)), before)
    torch.testing.assert_close(_flat(trick.averaged(models)), 0.5 * before + 0.5 * _flat(models.generator))


def test_ema_state_round_trip():
    trick = gantrix.make("ema", decay=0.9)
    models = _models()
    for step in range(3):
        _move(models.generator, step)
        trick.gantrix_after_generator_step(models=models, step=step)
    state = trick.gantrix_state_dict()
    assert set(state) == {"ema/generator"}

    restored = gantrix.make("ema", decay=0.9)
    assert restored.gantrix_state_dict() is None
    fresh = _models()
    restored.gantrix_load_state_dict(state=state, models=fresh)  # before any step
    torch.testing.assert_close(_flat(fresh.extra["generator_ema"]), _flat(trick.averaged(models)))
    assert fresh.extra["generator_ema"] is restored.averaged(fresh)
    assert not torch.equal(_flat(fresh.extra["generator_ema"]), _flat(fresh.generator))


def test_ema_in_the_composed_step(composed):
    step, data = composed("nonsaturating", "ema:decay=0.5")
    step.step(data)
    ema = step.models.extra["generator_ema"]
    first = _flat(ema)
    torch.testing.assert_close(first, _flat(step.models.generator))
    step.step(data)
    torch.testing.assert_close(_flat(ema), 0.5 * first + 0.5 * _flat(step.models.generator))
