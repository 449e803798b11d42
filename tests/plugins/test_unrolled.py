"""unrolled: the generator's gradient against a hand-written unroll of a tiny linear critic
(first and second order, float64), the real critic left as it was, the look-ahead's data,
and short runs."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gantrix
from gantrix import ModelSpec
from gantrix.step import ComposedStep

LATENT, FEATURES, BATCH, LR = 3, 2, 8, 0.05
LOSSES = {
    # composition: (hand-written critic objective on (real logits, fake logits, w), G loss)
    ("nonsaturating",): (lambda r, f, w: F.softplus(-r).mean() + F.softplus(f).mean(),
                         lambda f: F.softplus(-f).mean()),
    ("wgan",): (lambda r, f, w: f.mean() - r.mean(), lambda f: -f.mean()),
    # a linear critic's input gradient is w everywhere: WGAN-GP's penalty is 10(‖w‖ − 1)²
    ("wgan", "gradient-penalty"): (lambda r, f, w: f.mean() - r.mean() + 10 * (w.norm() - 1) ** 2,
                                   lambda f: -f.mean()),
}


class LinearCritic(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(FEATURES, 1))

    def forward(self, x):
        return self.net(x).squeeze(1)


class LinearGenerator(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(LATENT, FEATURES))

    def forward(self, z):
        return self.net(z.to(torch.float64))


def _setup(tricks, k, differentiate):
    composition = gantrix.Recipe(*tricks, f"unrolled:k={k},differentiate={differentiate}").compose()
    spec = ModelSpec((FEATURES,), latent_dim=LATENT)
    models = gantrix.build_models(composition, spec, LinearGenerator().double(),
                                  LinearCritic().double())
    optimizers = {"generator": torch.optim.SGD(models.generator.parameters(), lr=0.1),
                  "discriminator": torch.optim.Adam(models.discriminator.parameters(), lr=LR,
                                                    betas=(0.5, 0.9))}
    step = ComposedStep(composition, models, spec, optimizers,
                        generator=torch.Generator().manual_seed(1))
    step.discriminator_step(torch.randn(BATCH, FEATURES, dtype=torch.float64))  # Adam has state
    return step


def _snapshot(step):
    opt = step.optimizers["discriminator"]
    return dict(generator=copy.deepcopy(step.models.generator),
                critic=copy.deepcopy(step.models.discriminator),
                critic_grads=[p.grad.clone() for p in step.models.discriminator.parameters()],
                opt_state=copy.deepcopy(opt.state_dict()), rng=step.rng.get_state())


def _run_generator_step(step, k):
    reals = [torch.randn(BATCH, FEATURES, dtype=torch.float64) for _ in range(k + 1)]
    out = step.generator_step(reals[0], data=iter([(r, None) for r in reals[1:]]))
    return out, reals[1:], [p.grad.clone() for p in step.models.generator.parameters()]


def _critic_unchanged(step, before):
    critic, opt = step.models.discriminator, step.optimizers["discriminator"]
    for p, q, g in zip(critic.parameters(), before["critic"].parameters(), before["critic_grads"]):
        assert torch.equal(p, q) and torch.equal(p.grad, g) and p.requires_grad
    state, old = opt.state_dict()["state"], before["opt_state"]["state"]
    for i in old:
        for key in old[i]:
            assert torch.equal(state[i][key], old[i][key]), key


def _generator_grads(loss, generator):
    return torch.autograd.grad(loss, list(generator.parameters()), retain_graph=True)


@pytest.mark.parametrize("tricks", LOSSES, ids="+".join)
def test_first_order_gradient_is_against_the_critic_after_k_adam_updates(tricks):
    k = 3
    d_objective, g_loss = LOSSES[tricks]
    step = _setup(tricks, k, False)
    before = _snapshot(step)
    out, reals, got = _run_generator_step(step, k)

    gen, critic = before["generator"], copy.deepcopy(before["critic"])
    opt = torch.optim.Adam(critic.parameters(), lr=LR, betas=(0.5, 0.9))
    opt.load_state_dict(copy.deepcopy(before["opt_state"]))  # (it would share the tensors)
    rng = torch.Generator().manual_seed(0)
    rng.set_state(before["rng"])
    for real in reals:  # k Adam updates on fresh batches, fakes drawn as the step draws them
        with torch.no_grad():
            fake = gen(torch.randn(BATCH, LATENT, generator=rng))
        loss = d_objective(critic(real), critic(fake), critic.net[0].weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    fake = gen(torch.randn(BATCH, LATENT, generator=rng))
    want_loss = g_loss(critic(fake))
    want = _generator_grads(want_loss, gen)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out["g_loss"], want_loss.detach(), rtol=1e-10, atol=0)
    plain = _generator_grads(g_loss(before["critic"](fake)), gen)  # the unroll matters
    assert not torch.allclose(plain[0], want[0])
    _critic_unchanged(step, before)


@pytest.mark.parametrize("tricks", [("nonsaturating",), ("wgan",)], ids="+".join)
def test_second_order_gradient_flows_through_k_gradient_steps(tricks):
    k = 2
    d_objective, g_loss = LOSSES[tricks]
    step = _setup(tricks, k, True)
    before = _snapshot(step)
    out, reals, got = _run_generator_step(step, k)

    gen = before["generator"]
    layer = before["critic"].net[0]
    w, b = (t.detach().requires_grad_(True) for t in (layer.weight, layer.bias))
    rng = torch.Generator().manual_seed(0)
    rng.set_state(before["rng"])
    for real in reals:  # θ ← θ − lr·∇L_D(θ), with the graph through G's fakes
        fake = gen(torch.randn(BATCH, LATENT, generator=rng))
        loss = d_objective((real @ w.T + b).squeeze(1), (fake @ w.T + b).squeeze(1), w)
        gw, gb = torch.autograd.grad(loss, (w, b), create_graph=True)
        w, b = w - LR * gw, b - LR * gb
    fake = gen(torch.randn(BATCH, LATENT, generator=rng))
    want_loss = g_loss((fake @ w.T + b).squeeze(1))
    want = _generator_grads(want_loss, gen)
    for g, v in zip(got, want):
        torch.testing.assert_close(g, v, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out["g_loss"], want_loss.detach(), rtol=1e-10, atol=0)
    held = _generator_grads(g_loss((fake @ w.detach().T + b.detach()).squeeze(1)), gen)
    assert not torch.allclose(held[0], want[0])  # the second-order term is there
    _critic_unchanged(step, before)


def test_each_look_ahead_update_pulls_a_fresh_batch(composed):
    step, data = composed("nonsaturating", "unrolled:k=3")
    pulls = []

    def counted():
        pulls.append(1)
        return data()

    step.step(counted)
    assert len(pulls) == 1 + 1 + 3  # the critic update, the generator update, the look-ahead


def test_without_a_data_source_the_look_ahead_reuses_the_generator_batch(composed):
    step, data = composed("nonsaturating", "unrolled:k=2")
    critic = copy.deepcopy(step.models.discriminator.state_dict())
    out = step.generator_step(*data())
    assert torch.isfinite(out["g_loss"])
    for key, value in step.models.discriminator.state_dict().items():
        assert torch.equal(value, critic[key]), key


def test_the_look_ahead_leaves_batchnorm_statistics_alone():
    spec = ModelSpec((1, 8, 8), latent_dim=4, width=4)
    for differentiate in (False, True):
        comp = gantrix.Recipe("nonsaturating", "dcgan",
                              f"unrolled:k=2,differentiate={differentiate}").compose()
        models = gantrix.build_models(comp, spec)
        step = ComposedStep(comp, models, spec)
        state = copy.deepcopy(models.discriminator.state_dict())
        step.generator_step(torch.rand(8, 1, 8, 8) * 2 - 1)
        for key, value in models.discriminator.state_dict().items():
            assert torch.equal(value, state[key]), (differentiate, key)


def test_the_parameters_are_checked():
    with pytest.raises(gantrix.ParamError,
                       match=r"unrolled: parameter 'k' got 0; allowed: int in \[1, 100\]"):
        gantrix.make("unrolled", k=0)
    assert gantrix.make("unrolled").config == {"k": 5, "differentiate": False}


def test_an_optimizer_over_other_parameters_is_a_clear_error():
    critic = LinearCritic()
    stranger = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([*critic.parameters(), stranger], lr=0.1)
    trick = gantrix.make("unrolled", k=1)
    with pytest.raises(gantrix.GantrixError, match="not the critic's"):
        trick.gantrix_generator_critic(critic=critic, optimizer=optimizer, grad_scale=None,
                                       critic_loss=lambda c, **_: c(torch.randn(4, 2)).mean())


@pytest.mark.parametrize("differentiate", [False, True])
def test_under_fp16_the_look_ahead_scales_its_losses_and_stops_at_an_overflow(differentiate):
    """A power-of-two loss scale, divided out again, changes no bit of a float32 look-ahead;
    an overflowing scale stops it before its first update."""
    torch.manual_seed(0)
    critic = LinearCritic()
    optimizer = torch.optim.SGD(critic.parameters(), lr=0.1)
    x = torch.randn(8, 2)
    loss = lambda c, **_: (c(x) ** 2).mean()  # noqa: E731
    trick = gantrix.make("unrolled", k=3, differentiate=differentiate)
    weights = lambda c: [c(torch.eye(2)), c(torch.zeros(1, 2))]  # noqa: E731
    plain = weights(trick.gantrix_generator_critic(critic=critic, optimizer=optimizer,
                                                   critic_loss=loss, grad_scale=None))
    scaled = weights(trick.gantrix_generator_critic(critic=critic, optimizer=optimizer,
                                                    critic_loss=loss, grad_scale=2.0 ** 12))
    for a, b in zip(plain, scaled):
        assert torch.equal(a, b)
    stopped = trick.gantrix_generator_critic(critic=critic, optimizer=optimizer,
                                             critic_loss=loss, grad_scale=float("inf"))
    for a, b in zip(weights(stopped), weights(critic)):
        torch.testing.assert_close(a, b)
    assert not torch.equal(plain[0], weights(critic)[0])  # the look-ahead did move


@pytest.mark.parametrize("tricks, shape", [
    (("wgan", "gradient-penalty", "n-critic:2", "unrolled:k=2"), (2,)),
    (("hinge", "spectral-norm", "unrolled:k=2,differentiate=true"), (2,)),
    (("nonsaturating", "dcgan", "unrolled:k=2,differentiate=true"), (1, 8, 8)),
    (("nonsaturating", "infogan:categorical=3,continuous=1", "unrolled:k=1"), (2,)),
], ids=lambda t: "+".join(t) if isinstance(t, tuple) and isinstance(t[0], str) else None)
def test_compositions_with_unrolled_train(tricks, shape, composed):
    step, data = composed(*tricks, shape=shape, batch=8)
    assert not [f for f in step.composition.findings if f.severity == "error"]
    before = copy.deepcopy(step.models.generator.state_dict())
    for _ in range(2):
        out = step.step(data)
    assert all(torch.isfinite(v) for v in out.values())
    assert any(not torch.equal(v, before[k]) for k, v in step.models.generator.state_dict().items())


def test_a_short_dcgan_run_on_digits():
    trainer = gantrix.Trainer(gantrix.Recipe(recipe="dcgan").extend(["unrolled:k=2"]), "digits",
                              steps=2, batch_size=16, width=8, latent_dim=8, progress=False)
    trainer.fit()
    assert trainer.step == 2 and trainer.sample(4).shape == (4, 1, 8, 8)


@pytest.mark.parametrize("other", ["gradient-penalty", "dragan", "r1", "r2", "rasgan"])
def test_second_order_with_a_once_differentiable_kernel_op_is_an_error(other):
    loss = [] if other == "rasgan" else ["wgan"]
    errors = [f for f in gantrix.Recipe(*loss, other, "unrolled:differentiate=true").check()
              if f.severity == "error"]
    assert len(errors) == 1 and set(errors[0].tricks) == {"unrolled", other}
    assert "not itself differentiable" in errors[0].message
    assert "differentiate=false" in errors[0].message and "Metz" in errors[0].paper
    first_order = gantrix.Recipe(*loss, other, "unrolled").check()
    assert not [f for f in first_order if f.severity == "error"]


def test_weight_clip_gets_a_note_that_the_look_ahead_is_unclipped():
    findings = gantrix.Recipe("wgan", "weight-clip", "rmsprop", "unrolled").check()
    notes = [f for f in findings if set(f.tricks) == {"unrolled", "weight-clip"}]
    assert len(notes) == 1 and notes[0].severity == "note" and "unclipped" in notes[0].message
