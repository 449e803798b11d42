"""Step schedules: critic updates per generator update, and lazy regularization."""
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
