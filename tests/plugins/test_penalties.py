"""Gradient penalties against independent autograd computations on a tiny float64 critic,
the sharing of the critic's forward pass, and the BatchNorm rules."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import gantrix


def _input_grad(critic, x):
    """∇ₓ Σ critic(x), kept in the graph (as a penalty needs it)."""
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return g


def _norms(g):
    return g.reshape(g.shape[0], -1).pow(2).sum(1).sqrt()


def _samples(*shape):
    return (torch.randn(*shape, dtype=torch.float64), torch.randn(*shape, dtype=torch.float64) * 2)


def _weight_grads(value, critic):
    """d value / d every weight matrix (the last bias cannot move an input gradient)."""
    return torch.autograd.grad(value, [p for p in critic.parameters() if p.dim() > 1])


def _same_weight_grads(got, want, critic):
    for g, w in zip(_weight_grads(got, critic), _weight_grads(want, critic)):
        torch.testing.assert_close(g, w, rtol=1e-8, atol=1e-12)
        assert torch.count_nonzero(g) > 0  # the penalty trains the critic


@pytest.mark.parametrize("shape", [(6, 3), (5, 2, 3, 3)], ids=["vector", "image"])
def test_gradient_penalty_value_and_weight_gradients(shape, make_batch, tiny_critic):
    critic = tiny_critic(int(torch.tensor(shape[1:]).prod()))
    real, fake = _samples(*shape)
    eps = torch.rand(shape[0], dtype=torch.float64)
    got = gantrix.make("gradient-penalty").d_term(make_batch(real, fake, critic), eps=eps)

    e = eps.view(-1, *([1] * (len(shape) - 1)))
    x_hat = e * real + (1 - e) * fake
    want = 10 * ((_norms(_input_grad(critic, x_hat)) - 1) ** 2).mean()
    torch.testing.assert_close(got, want, rtol=1e-10, atol=0)
    _same_weight_grads(got, want, critic)


def test_one_sided_gradient_penalty_only_penalises_norms_above_center(critic, make_batch):
    real, fake = _samples(32, 3)
    eps = torch.rand(32, dtype=torch.float64)
    x_hat = eps[:, None] * real + (1 - eps[:, None]) * fake
    norms = _norms(_input_grad(critic, x_hat))
    center = norms.median().item()  # half the norms lie below: those must cost nothing
    trick = gantrix.make("gradient-penalty", weight=3.0, center=center, one_sided=True)
    got = trick.d_term(make_batch(real, fake, critic), eps=eps)
    want = 3 * ((norms - center).clamp(min=0) ** 2).mean()
    two_sided = 3 * ((norms - center) ** 2).mean()
    torch.testing.assert_close(got, want, rtol=1e-10, atol=0)
    assert got < two_sided


def test_gradient_penalty_without_interpolation_shares_the_forward_pass(critic, make_batch):
    real, fake = _samples(8, 3)
    trick = gantrix.make("gradient-penalty", interpolate=False)
    batch = make_batch(real, fake, critic)
    trick.gantrix_prepare_batch(batch=batch)
    loss = batch.fake_logits.mean() - batch.real_logits.mean()
    got = trick.d_term(batch)
    assert critic.calls == 2  # one forward per side, shared by the loss and the penalty
    gr, gf = _input_grad(critic, real), _input_grad(critic, fake)
    want = 0.5 * (10 * ((_norms(gr) - 1) ** 2).mean() + 10 * ((_norms(gf) - 1) ** 2).mean())
    torch.testing.assert_close(got, want, rtol=1e-10, atol=0)
    _same_weight_grads(got, want, critic)
    assert loss.requires_grad


@pytest.mark.parametrize("name,side", [("r1", "real"), ("r2", "fake")])
def test_r1_r2_against_the_explicit_formula(name, side, critic, make_batch):
    real, fake = _samples(8, 3)
    trick = gantrix.make(name, gamma=4.0)
    batch = make_batch(real, fake, critic)
    trick.gantrix_prepare_batch(batch=batch)
    batch.outputs(side)  # the loss's forward pass
    got = trick.d_term(batch)
    assert critic.calls == 1  # the penalty reused it
    x = real if side == "real" else fake
    want = 4.0 / 2 * (_norms(_input_grad(critic, x)) ** 2).mean()
    torch.testing.assert_close(got, want, rtol=1e-10, atol=0)
    _same_weight_grads(got, want, critic)


def test_r1_asks_for_input_gradients_only_in_critic_updates(critic, make_batch):
    real, fake = _samples(4, 3)
    trick = gantrix.make("r1")
    batch = make_batch(real, fake, critic, phase="generator")
    trick.gantrix_prepare_batch(batch=batch)
    batch.outputs("real")
    assert not batch.real.requires_grad


def test_dragan_against_the_reference_construction(critic, make_batch):
    real, fake = _samples(8, 3)
    eps = torch.rand(8, dtype=torch.float64)
    noise = torch.rand_like(real)
    got = gantrix.make("dragan").d_term(make_batch(real, fake, critic), eps=eps, noise=noise)
    perturbed = real + 0.5 * real.std() * noise
    x_hat = real + (1 - eps[:, None]) * (perturbed - real)
    want = 10 * ((_norms(_input_grad(critic, x_hat)) - 1) ** 2).mean()
    torch.testing.assert_close(got, want, rtol=1e-10, atol=0)
    _same_weight_grads(got, want, critic)


def test_dragan_draws_its_own_perturbation(critic, make_batch):
    real, fake = _samples(8, 3)
    value = gantrix.make("dragan").d_term(make_batch(real, fake, critic))
    assert torch.isfinite(value) and value > 0


def test_gradient_penalty_scores_interpolates_with_the_real_conditioning(make_batch):
    seen = []

    def critic(x, labels=None):
        seen.append(labels)
        return x.sum(1)

    real, fake = _samples(4, 3)
    batch = make_batch(real, fake, critic)
    batch.critic_inputs["real"]["labels"] = "real-labels"
    batch.critic_inputs["fake"]["labels"] = "fake-labels"
    gantrix.make("gradient-penalty").d_term(batch)
    assert seen == ["real-labels"]


def _bn_critic():
    return nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))


def test_gradient_penalty_on_a_batchnorm_critic_is_an_error():
    composition = gantrix.Recipe("wgan", "gradient-penalty").compose()
    spec = gantrix.ModelSpec(shape=(2,), latent_dim=4)
    with pytest.raises(gantrix.CompositionError) as info:
        gantrix.build_models(composition, spec, discriminator=_bn_critic())
    message = str(info.value)
    assert "'1' (BatchNorm1d)" in message and "gradient-penalty" in message


@pytest.mark.parametrize("name", ["r1", "r2", "dragan"])
def test_other_penalties_on_a_batchnorm_critic_warn(name):
    composition = gantrix.Recipe("nonsaturating", name).compose()
    spec = gantrix.ModelSpec(shape=(2,), latent_dim=4)
    gantrix.build_models(composition, spec, discriminator=_bn_critic())
    warnings = [f for f in composition.findings if f.severity == "warning" and name in f.tricks]
    assert warnings and "BatchNorm1d" in warnings[0].message


def test_a_critic_without_batchnorm_passes_the_check():
    composition = gantrix.Recipe("wgan", "gradient-penalty").compose()
    models = gantrix.build_models(composition, gantrix.ModelSpec(shape=(2,), latent_dim=4))
    assert not [f for f in composition.findings if f.severity != "note"]
    assert models.discriminator is not None
