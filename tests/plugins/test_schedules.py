"""Step schedules: critic updates per generator update, lazy regularization, lr decay."""
from __future__ import annotations

import pytest
import torch

import gantrix


@pytest.mark.parametrize("spec,n", [("n-critic", 5), ("n-critic:5", 5), ("n-critic:3", 3),
                                    ("n-critic:n=2", 2)])
def test_n_critic_counts_critic_updates(spec, n, composed):
    step, data = composed("wgan", spec)
    for i in range(1, 3):
        step.step(data)
        assert (step.d_steps, step.g_steps) == (n * i, i)


@pytest.mark.parametrize("spec,n", [("n-generator", 2), ("n-generator:3", 3)])
def test_n_generator_counts_generator_updates_per_training_step(spec, n, composed):
    step, data = composed("nonsaturating", "n-critic:2", spec)
    for i in range(1, 3):
        step.step(data)
        assert (step.steps, step.d_steps, step.g_steps) == (i, 2 * i, n * i)


def test_n_generator_updates_draw_fresh_latents_and_both_models_train(composed, add_tricks):
    seen = []

    class Spy(gantrix.Policy):
        name, summary = "spy-latents", "record each generator batch's latent vectors"

        @gantrix.hookimpl
        def gantrix_prepare_batch(self, batch):
            if batch.phase == "generator":
                seen.append((batch.z.clone(), batch.step))

    add_tricks(Spy)
    step, data = composed("nonsaturating", "n-generator:2", "spy-latents")
    critic_before = [p.clone() for p in step.models.discriminator.parameters()]
    generator_before = [p.clone() for p in step.models.generator.parameters()]
    step.step(data)
    (z0, s0), (z1, s1) = seen
    assert (s0, s1) == (0, 1) and not torch.equal(z0, z1)
    assert step.d_steps == 1  # the critic's parameters moved once, in its own update
    assert any(not torch.equal(a, b) for a, b in
               zip(generator_before, step.models.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in
               zip(critic_before, step.models.discriminator.parameters()))


def test_lr_decay_follows_training_steps_with_several_generator_updates(composed):
    step, data = composed("nonsaturating", "n-generator:3", "lr-decay", "adam:lr=0.01")
    step.total_steps = 4
    step.step(data)
    step.step(data)  # training step 1 of 4 (six generator updates done): factor 0.75
    lrs = [g["lr"] for opt in step.optimizers.values() for g in opt.param_groups]
    assert lrs == pytest.approx([0.0075] * len(lrs), rel=1e-12)


def test_n_generator_rejects_zero():
    with pytest.raises(gantrix.ParamError, match="'n' got 0"):
        gantrix.Recipe("nonsaturating", "n-generator:0").check()


def test_n_critic_rejects_zero():
    with pytest.raises(gantrix.ParamError, match="'n' got 0"):
        gantrix.Recipe("wgan", "n-critic:0").check()


def _r1(batch, gamma=10.0):
    x = batch.real.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(batch.critic(x).sum(), x)
    return gamma / 2 * g.pow(2).sum(1).mean()


def test_lazy_regularization_applies_every_k_steps_scaled_by_k(critic, make_batch):
    composition = gantrix.Recipe("nonsaturating", "r1", "lazy-regularization:every=4").compose()
    real, fake = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)
    for s in range(9):
        batch = make_batch(real, fake, critic, step=s, hook=composition.hook)
        composition.hook.gantrix_prepare_batch(batch=batch)
        terms = [t for t in composition.hook.gantrix_discriminator_terms(batch=batch) if t]
        if s % 4:
            assert terms == [] and not batch.real.requires_grad
        else:
            (term,) = terms
            torch.testing.assert_close(term["r1"], 4 * _r1(batch), rtol=1e-10, atol=0)


def test_lazy_regularization_in_the_composed_step(composed):
    step, data = composed("nonsaturating", "r1", "lazy-regularization:every=3")
    seen = [("d/r1" in step.discriminator_step(*data())) for _ in range(7)]
    assert seen == [True, False, False, True, False, False, True]


def test_lazy_regularization_only_touches_the_named_regularizers(critic, make_batch):
    composition = gantrix.Recipe("nonsaturating", "r1", "r2",
                                 "lazy-regularization:every=2,only=r1").compose()
    real, fake = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    batch = make_batch(real, fake, critic, step=1, hook=composition.hook)
    composition.hook.gantrix_prepare_batch(batch=batch)
    names = {n for t in composition.hook.gantrix_discriminator_terms(batch=batch) if t for n in t}
    assert names == {"r2"}


def test_lazy_regularization_needs_a_regularizer():
    errors = [f for f in gantrix.Recipe("wgan", "lazy-regularization").check() if f.severity == "error"]
    assert len(errors) == 1 and "requires regularizer" in errors[0].message


def test_lazy_regularization_only_must_name_present_tricks():
    findings = gantrix.Recipe("wgan", "gradient-penalty", "lazy-regularization:only=r1+r2").check()
    errors = sorted(f.message for f in findings if f.severity == "error")
    assert len(errors) == 2 and "requires r1" in errors[0] and "requires r2" in errors[1]


@pytest.mark.parametrize("to", [0.0, 0.25])
def test_lr_decay_is_linear_from_the_initial_lr_to_the_final_fraction(to, composed):
    step, data = composed("nonsaturating", f"lr-decay:to={to}", "adam:lr=0.01")
    step.total_steps = 4
    seen = []
    for _ in range(4):
        step.step(data)
        seen.append([g["lr"] for opt in step.optimizers.values() for g in opt.param_groups])
    # generator update t (0-based) and the critic update before it: 0.01 · (1 − (1 − to)·t/4)
    expected = [0.01 * (1 - (1 - to) * t / 4) for t in range(4)]
    for lrs, lr in zip(seen, expected):
        assert lrs == pytest.approx([lr] * len(lrs), rel=1e-12)
    assert all(g["initial_lr"] == 0.01 for o in step.optimizers.values() for g in o.param_groups)


def test_lr_factors_of_several_tricks_multiply(composed, add_tricks):
    class Halve(gantrix.Policy):
        name, summary = "halve-generator-lr", "half the generator's lr"

        @gantrix.hookimpl
        def gantrix_lr_factor(self, role, step, total):
            return 0.5 if role == "generator" else None

    add_tricks(Halve)
    step, data = composed("nonsaturating", "lr-decay", "halve-generator-lr", "adam:lr=0.01")
    step.total_steps = 10
    step.step(data)
    step.step(data)  # the second update: decay factor 0.9
    assert step.optimizers["generator"].param_groups[0]["lr"] == pytest.approx(0.01 * 0.9 * 0.5)
    assert step.optimizers["discriminator"].param_groups[0]["lr"] == pytest.approx(0.01 * 0.9)


def test_without_a_schedule_the_optimizers_lr_is_left_alone(composed):
    step, data = composed("nonsaturating", "adam:lr=0.01")
    step.step(data)
    group = step.optimizers["generator"].param_groups[0]
    assert group["lr"] == 0.01 and "initial_lr" not in group


def test_lr_decay_without_the_runs_length_is_a_clear_error(composed):
    step, data = composed("nonsaturating", "lr-decay")
    with pytest.raises(gantrix.GantrixError, match="lr-decay needs the run's length"):
        step.step(data)


def test_lr_decay_rejects_a_final_fraction_above_one():
    with pytest.raises(gantrix.ParamError, match="'to' got 2"):
        gantrix.Recipe("wgan", "lr-decay:to=2").check()
