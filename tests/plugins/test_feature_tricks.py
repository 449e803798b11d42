"""feature-matching and minibatch-discrimination (Salimans et al. 2016, §3.1 and §3.2): the
feature distance and o(x) against independent transcriptions in float64, the generator loss
feature matching takes over, the critics minibatch discrimination changes, the relations,
bad parameters and short runs."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gantrix
from gantrix import CompositionError, ModelSpec, ParamError
from gantrix.models import ConvCritic, VectorCritic
from gantrix.plugins.feature_tricks import FEATURES, MinibatchDiscrimination

SMALL = dict(steps=3, batch_size=16, width=8, latent_dim=8, sample_every=0, log_every=1,
             progress=False)
F64 = torch.float64


# --------------------------------------------------------------------------- feature matching


def mlp_features(critic, x):
    """φ(x) of the core's MLP critic, by hand: every Linear but the last, each with a ReLU."""
    h = x.flatten(1)
    for layer in [m for m in critic.net if isinstance(m, nn.Linear)][:-1]:
        h = (h @ layer.weight.T + layer.bias).clamp_min(0)
    return h


def conv_features(critic, x):
    """φ(x) of the core's 8×8 conv critic, by hand: its 4×4 stride-2 conv (padding 1), a
    LeakyReLU of slope 0.2, flattened per sample."""
    conv = critic.net[0]
    h = F.conv2d(x, conv.weight, conv.bias, stride=2, padding=1)
    return torch.where(h > 0, h, 0.2 * h).flatten(1)


def wrapped(critic, trick="feature-matching", **params):
    """(the configured trick, ``critic`` transformed by it)."""
    trick = gantrix.make(trick, **params)
    return trick, trick.gantrix_transform_model(model=critic, role="discriminator", spec=None)


@pytest.mark.parametrize("shape, build, features", [
    ((2,), lambda: VectorCritic(ModelSpec((2,)), hidden=6, depth=2), mlp_features),
    ((1, 8, 8), lambda: ConvCritic(ModelSpec((1, 8, 8), width=3)), conv_features),
])
def test_feature_matching_value_and_gradient_match_the_formula(make_batch, shape, build,
                                                               features):
    critic = build().double()
    trick, scored = wrapped(critic)
    critic.requires_grad_(False)  # frozen, as in the generator's update
    generator = nn.Linear(3, math.prod(shape)).double()
    z = torch.randn(10, 3, dtype=F64)
    real = torch.randn(12, *shape, dtype=F64)
    batch = make_batch(real, generator(z).reshape(10, *shape), scored, phase="generator")

    value = trick.gantrix_generator_loss(batch=batch)
    fake = generator(z).reshape(10, *shape)
    expected = (features(critic, real).mean(0) - features(critic, fake).mean(0)).square().sum()

    assert batch.outputs("real")[FEATURES].shape == features(critic, real).shape
    torch.testing.assert_close(value, expected)
    assert value > 0
    got = torch.autograd.grad(value, list(generator.parameters()))
    want = torch.autograd.grad(expected, list(generator.parameters()))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
        assert g.abs().sum() > 0


def test_the_real_features_are_detached(make_batch):
    """The real batch's features are the target: no gradient flows into them (nor into the
    real samples), while the fakes and the critic's parameters get one through f(G(z))."""
    critic = VectorCritic(ModelSpec((2,)), hidden=5, depth=1).double()
    trick, scored = wrapped(critic, mode="term", weight=2.0)
    real = torch.randn(6, 2, dtype=F64, requires_grad=True)
    fake = torch.randn(6, 2, dtype=F64, requires_grad=True)
    batch = make_batch(real, fake, scored, phase="generator")
    (term,) = trick.gantrix_generator_terms(batch=batch).values()
    assert batch.outputs("real")[FEATURES].requires_grad  # the graph was there to cut
    term.backward()
    assert real.grad is None
    assert fake.grad.abs().sum() > 0
    first = critic.net[0]
    with torch.no_grad():
        phi_real = mlp_features(critic, real)
    expected = 2.0 * (phi_real.mean(0) - mlp_features(critic, fake).mean(0)).square().sum()
    (want,) = torch.autograd.grad(expected, first.weight)
    torch.testing.assert_close(first.weight.grad, want)


def composed_step(*tricks):
    """(ComposedStep, composition) on 3-vectors with the core's models."""
    composition = gantrix.Recipe(*tricks).compose()
    spec = ModelSpec((3,), latent_dim=4, width=8)
    models = gantrix.build_models(composition, spec)
    return gantrix.ComposedStep(composition, models, spec), composition


def spy(monkeypatch, obj, name):
    """Record every value ``obj.name`` returns (a list, filled as it is called)."""
    seen = []
    method = getattr(obj, name)

    def recorded(*args, **kwargs):
        seen.append(method(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(obj, name, recorded)
    return seen


def test_mode_loss_replaces_the_generator_loss(monkeypatch):
    """Listed after the loss, feature matching still answers the generator loss: the logged
    g_loss is the distance, the loss trick's g_loss is not called, no term is added; the
    critic scores the real batch in the generator update although nonsaturating reads no
    real logits there."""
    step, composition = composed_step("nonsaturating", "feature-matching")
    distances = spy(monkeypatch, composition.get("feature-matching"), "distance")
    g_losses = spy(monkeypatch, composition.get("nonsaturating"), "g_loss")
    passes = []
    step.models.discriminator.register_forward_hook(lambda m, args, out: passes.append(args[0]))

    real = torch.randn(8, 3)
    out = step.generator_step(real)
    assert len(distances) == 1 and g_losses == []
    assert out["g_loss"] == distances[0].detach() and out["g_loss"] > 0
    assert not any(k.startswith("g/") for k in out)
    assert len(passes) == 2 and torch.equal(passes[0], real)  # the real batch, then the fakes


def test_mode_term_adds_the_weighted_distance(monkeypatch):
    step, composition = composed_step("feature-matching:mode=term,weight=0.25", "nonsaturating")
    distances = spy(monkeypatch, composition.get("feature-matching"), "distance")
    g_losses = spy(monkeypatch, composition.get("nonsaturating"), "g_loss")
    out = step.generator_step(torch.randn(8, 3))
    assert len(distances) == 1 and len(g_losses) == 1
    assert out["g_loss"] == g_losses[0].detach()
    torch.testing.assert_close(out["g/feature-matching"], 0.25 * distances[0].detach())
    step.discriminator_step(torch.randn(8, 3))
    assert len(distances) == 1  # a generator objective only


# ------------------------------------------------------------------ minibatch discrimination


def o_by_loops(x, T):
    """o(x) by explicit loops over i, j, b (and a, c), in Python floats: f(x_i) is x_i, or its
    channels' means over the positions for a map; j runs over the whole batch, i included."""
    x, T = x.tolist(), T.tolist()
    n, a, b, c = len(x), len(T), len(T[0]), len(T[0][0])

    def pooled(v):
        """A channel's f: the number itself (a vector) or its mean over the positions."""
        if not isinstance(v, list):
            return v
        cells = [cell for row in v for cell in row]
        return sum(cells) / len(cells)

    f = [[pooled(x[i][k]) for k in range(a)] for i in range(n)]
    m = [[[sum(f[i][k] * T[k][bb][cc] for k in range(a)) for cc in range(c)]
          for bb in range(b)] for i in range(n)]
    o = [[0.0] * b for _ in range(n)]
    for i in range(n):
        for j in range(n):
            for bb in range(b):
                o[i][bb] += math.exp(-sum(abs(m[i][bb][cc] - m[j][bb][cc]) for cc in range(c)))
    return torch.tensor(o, dtype=F64)


@pytest.mark.parametrize("shape, pool", [((5, 4), False), ((5, 4, 3, 2), True)])
def test_minibatch_features_match_the_double_loop(shape, pool):
    layer = MinibatchDiscrimination(4, 3, 2, pool=pool).double()
    with torch.no_grad():
        layer.T.mul_(3)  # distances of order 1: neither every c_b near 1 nor near 0
    x = torch.randn(*shape, dtype=F64)
    y = layer(x)
    assert y.shape == (5, 7, *shape[2:])
    torch.testing.assert_close(y[:, :4], x)
    expected = o_by_loops(x, layer.T)
    assert 1.5 < expected.mean() < 4.5
    torch.testing.assert_close(layer.statistic(x), expected)
    extra = expected.reshape(5, 3, *[1] * (len(shape) - 2)).expand_as(y[:, 4:])
    torch.testing.assert_close(y[:, 4:], extra)
    # j = i is in the sum: a sample alone is exactly 1 close to its batch
    torch.testing.assert_close(layer.statistic(x[:1]), torch.ones(1, 3, dtype=F64))


def dcgan_critic():
    spec = ModelSpec((1, 8, 8), width=4)
    return gantrix.make("dcgan", critic_norm="layer").gantrix_build_model(role="discriminator",
                                                                          spec=spec)


@pytest.mark.parametrize("build, shape", [
    (lambda: VectorCritic(ModelSpec((2,)), hidden=16), (2,)),
    (lambda: ConvCritic(ModelSpec((1, 8, 8), width=4)), (1, 8, 8)),
    (dcgan_critic, (1, 8, 8)),
])
def test_inserted_before_the_output_layer(build, shape):
    """Before the last layer, which is widened by B with its weights kept and the new ones
    zero (so the critic starts as the function it was); one logit per sample, which depends
    on the other samples of the batch once the output layer reads o."""
    critic = build()
    original = copy.deepcopy(critic)
    before = critic.net[-1].weight.detach().clone()
    a = before.shape[1]
    trick = gantrix.make("minibatch-discrimination", kernels=3, dims=2)
    assert trick.gantrix_transform_model(model=critic, role="discriminator", spec=None) is critic
    layer, out = critic.net[-2], critic.net[-1]
    assert isinstance(layer, MinibatchDiscrimination) and layer.T.shape == (a, 3, 2)
    assert layer.pool == (len(shape) == 3)
    assert out.weight.shape[1] == a + 3
    torch.testing.assert_close(out.weight[:, :a], before)
    assert not out.weight[:, a:].any()

    x = torch.randn(6, *shape)
    others = torch.cat([x[:1], torch.randn(5, *shape)])
    torch.testing.assert_close(critic(x), original(x))
    assert critic(x).shape == (6,)
    assert original(others)[0] == original(x)[0]  # per sample before
    with torch.no_grad():
        out.weight[:, a:].normal_()
    assert critic(x).shape == (6,)
    assert not torch.isclose(critic(others)[0], critic(x)[0])
    assert not torch.isclose(critic(x[:1])[0], critic(x)[0])


def test_an_unknown_critic_is_an_error_for_both():
    for trick in ("feature-matching", "minibatch-discrimination"):
        composition = gantrix.Recipe("nonsaturating", trick).compose()
        with pytest.raises(CompositionError, match=trick):
            gantrix.build_models(composition, ModelSpec((2,)), discriminator=nn.Linear(2, 1))


# --------------------------------------------------------------------------- relations


@pytest.mark.parametrize("other, severity, says", [
    ("minibatch-stddev", "warning", "parameter-free simplification"),
    ("gradient-penalty", "error", "a batch of interpolates"),
    ("r1", "warning", "no longer the gradient of a per-sample function"),
    ("r2", "warning", "no longer the gradient of a per-sample function"),
    ("dragan", "warning", "perturbed reals"),
])
def test_minibatch_discrimination_relations(other, severity, says):
    findings = gantrix.Recipe("nonsaturating", "minibatch-discrimination", other).check()
    pair = [f for f in findings if set(f.tricks) == {"minibatch-discrimination", other}]
    assert [f.severity for f in pair] == [severity]
    assert says in pair[0].message
    if severity == "error":
        with pytest.raises(CompositionError, match="gradient-penalty"):
            gantrix.Recipe("nonsaturating", "minibatch-discrimination", other).compose()


def test_feature_tricks_compose_with_each_other_and_r1(composed):
    """No finding between the two; feature matching reads the features minibatch
    discrimination gets, not o; R1's double backward runs through the layer, training T."""
    step, data = composed("nonsaturating", "feature-matching", "minibatch-discrimination", "r1",
                          shape=(2,), batch=8)
    findings = step.composition.findings
    both = {"feature-matching", "minibatch-discrimination"}
    assert not [f for f in findings if both <= set(f.tricks)]
    assert [f.severity for f in findings if "r1" in f.tricks] == ["warning"]
    critic = step.models.discriminator
    net = critic.wrapped.net
    layer = net[-2]
    assert isinstance(layer, MinibatchDiscrimination) and net[-1].in_features == 256 + 16
    start = layer.T.detach().clone()
    out = {}
    for _ in range(2):
        out = step.step(data)
    assert all(torch.isfinite(v) for v in out.values()) and out["d/r1"] > 0
    assert not torch.equal(layer.T, start)
    x = torch.randn(5, 2)
    torch.testing.assert_close(critic(x)[FEATURES], net[:-2](x))


def test_feature_matching_reads_the_features_before_the_minibatch_statistics():
    critic = ConvCritic(ModelSpec((1, 8, 8), width=4))
    for trick in ("minibatch-discrimination", "minibatch-stddev"):  # each right before the last
        gantrix.make(trick).gantrix_transform_model(model=critic, role="discriminator", spec=None)
    _, scored = wrapped(critic)
    x = torch.randn(8, 1, 8, 8)
    assert [type(m).__name__ for m in critic.net[-3:]] == ["MinibatchDiscrimination",
                                                           "MinibatchStdDev", "Conv2d"]
    torch.testing.assert_close(scored(x)[FEATURES], critic.net[:-3](x).flatten(1))
    assert scored(x)[FEATURES].shape == (8, 4 * 4 * 4)


# --------------------------------------------------------------------------- catalogue, params


def test_registered_with_their_metadata():
    tricks = gantrix.tricks()
    fm, mbd = tricks["feature-matching"], tricks["minibatch-discrimination"]
    assert (fm.kind, mbd.kind) == ("regularizer", "architecture")
    assert not fm.samples() and not mbd.samples()  # a run samples without this plugin
    assert "§3.1" in fm.paper and "§3.2" in mbd.paper
    assert [p.name for p in fm.params] == ["mode", "weight"]
    assert [(p.name, p.default) for p in mbd.params] == [("kernels", 16), ("dims", 5)]
    assert "‖E_x f(x) − E_z f(G(z))‖²₂" in fm.describe()
    assert "o(x_i)_b = Σ_{j=1}^{n} c_b(x_i, x_j)" in mbd.describe()


@pytest.mark.parametrize("name, params, match", [
    ("feature-matching", dict(mode="mean"),
     r"parameter 'mode' got 'mean'; allowed: one of 'loss', 'term'"),
    ("feature-matching", dict(weight=-1.0),
     r"parameter 'weight' got -1.0; allowed: finite float in \[0, 10000\]"),
    ("feature-matching", dict(weight=2.0), r"weight applies with mode=term"),
    ("minibatch-discrimination", dict(kernels=0),
     r"parameter 'kernels' got 0; allowed: int in \[1, 1024\]"),
    ("minibatch-discrimination", dict(dims=2.5), r"parameter 'dims' got 2.5"),
])
def test_a_bad_parameter_is_an_error(name, params, match):
    with pytest.raises(ParamError, match=rf"{name}: .*{match}"):
        gantrix.make(name, **params)


def test_a_bad_parameter_on_the_command_line_is_an_error():
    with pytest.raises(ParamError, match="minibatch-discrimination: parameter 'kernels' got 0"):
        gantrix.Recipe("nonsaturating", "minibatch-discrimination:kernels=0").check()


# --------------------------------------------------------------------------- short runs


@pytest.mark.parametrize("data, base, trick", [
    ("ring8", None, "feature-matching"),
    ("digits", None, "feature-matching"),
    ("digits", "dcgan", "feature-matching:mode=term,weight=0.5"),
])
def test_feature_matching_trains(data, base, trick):
    recipe = (gantrix.Recipe(recipe=base).extend([trick]) if base else
              gantrix.Recipe("nonsaturating", trick))
    trainer = gantrix.Trainer(recipe, data, **SMALL)
    before = [p.detach().clone() for p in trainer.models.generator.parameters()]
    trainer.fit()
    assert trainer.step == 3 and len(trainer.history) == 3
    term = "g/feature-matching" in trainer.history[0]
    for row in trainer.history:
        assert math.isfinite(row["g_loss"]) and math.isfinite(row["d_loss"])
        if term:
            assert row["g/feature-matching"] > 0
        else:
            assert row["g_loss"] > 0 and not any(k.startswith("g/") for k in row)
    assert term == ("term" in trick)
    assert all(not torch.equal(a, b) for a, b in zip(before, trainer.models.generator.parameters()))
    assert trainer.sample(4).shape == (4, *trainer.data.shape)


def test_minibatch_discrimination_trains_on_digits():
    trainer = gantrix.Trainer(["nonsaturating", "minibatch-discrimination"], "digits", **SMALL)
    layer = trainer.models.discriminator.net[-2]
    assert isinstance(layer, MinibatchDiscrimination) and layer.pool
    start = layer.T.detach().clone()
    trainer.fit()
    assert trainer.step == 3
    assert all(math.isfinite(row["d_loss"]) and math.isfinite(row["g_loss"])
               for row in trainer.history)
    assert not torch.equal(layer.T, start)  # the layer trains (from the second update on)
    assert trainer.sample(4).shape == (4, 1, 8, 8)


def test_the_check_says_feature_matching_takes_the_generator_loss_over():
    """mode=loss replaces the loss trick's generator loss (a tryfirst hook): the composition
    check makes that visible as a note; mode=term adds to it, and says nothing."""
    import gantrix

    notes = [f for f in gantrix.Recipe("nonsaturating", "feature-matching").check()
             if "feature-matching" in f.tricks]
    assert [f.severity for f in notes] == ["note"]
    assert "trains only the critic" in notes[0].message and "nonsaturating" in notes[0].tricks
    term = gantrix.Recipe("nonsaturating", "feature-matching:mode=term").check()
    assert not [f for f in term if "feature-matching" in f.tricks]
