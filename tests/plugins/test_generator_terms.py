"""Orthogonal regularization, mode seeking and historical averaging: each term against its
formula transcribed independently (explicit loops over rows, pairs and parameters, in numpy
float64), their gradients, the edges (odd batches, identical latents, the first update), the
averages' checkpoint, and short runs, checks and CLI pages."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm
from typer.testing import CliRunner

import gantrix
from gantrix.cli.app import create_app

TINY = dict(batch_size=16, latent_dim=2, width=16, sample_every=0, log_every=1, progress=False)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _seen(trick, generator=None, discriminator=None):
    """``trick`` after the model check of built models (how it learns of them)."""
    for role, model in (("generator", generator), ("discriminator", discriminator)):
        if model is not None:
            trick.gantrix_check_model(model=model, role=role)
    return trick


# --------------------------------------------------------------------------- orthogonal


class _Mixed(nn.Module):
    """Every kind of layer the term reads, and parameters it must leave alone."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 6)
        self.conv = nn.Conv2d(2, 3, 3)
        self.up = nn.ConvTranspose2d(3, 4, 2)
        self.grouped = nn.ConvTranspose2d(4, 6, 3, groups=2)
        self.norm = nn.BatchNorm2d(6)
        self.layer_norm = nn.LayerNorm(6)
        self.embed = nn.Embedding(5, 4)
        self.free = nn.Parameter(torch.randn(3, 3))


def _filters(layer) -> list[np.ndarray]:
    """Each output unit's filter, read from the definition of the layer's forward pass."""
    w = _np(layer.weight)
    if isinstance(layer, nn.Linear):
        return [w[o] for o in range(w.shape[0])]
    if isinstance(layer, nn.ConvTranspose2d):  # weight (in, out/g, k, k)
        per_group_in, per_group_out = w.shape[0] // layer.groups, w.shape[1]
        return [w[(o // per_group_out) * per_group_in:(o // per_group_out + 1) * per_group_in,
                  o % per_group_out].ravel() for o in range(per_group_out * layer.groups)]
    return [w[o].ravel() for o in range(w.shape[0])]  # Conv2d: weight (out, in/g, k, k)


def _orthogonality(layers, beta) -> float:
    total = 0.0
    for layer in layers:
        rows = _filters(layer)
        for i, a in enumerate(rows):
            for j, b in enumerate(rows):
                if i != j:
                    total += float(np.dot(a, b)) ** 2
    return beta * total


def test_orthogonal_regularization_matches_the_filter_pairs(make_batch):
    g = _Mixed().double()
    trick = _seen(gantrix.make("orthogonal-regularization", beta=0.3), generator=g)
    batch = make_batch(torch.zeros(2, 2), torch.zeros(2, 2), None, phase="generator")
    terms = trick.gantrix_generator_terms(batch=batch)
    want = _orthogonality([g.linear, g.conv, g.up, g.grouped], 0.3)
    assert set(terms) == {"orthogonal-regularization"}
    assert terms["orthogonal-regularization"].item() == pytest.approx(want, rel=1e-12)
    critic_batch = make_batch(torch.zeros(2, 2), None, None)
    assert trick.gantrix_discriminator_terms(batch=critic_batch) is None


def test_orthogonal_regularization_gradient_and_what_it_leaves_alone():
    g = _Mixed().double()
    value = _seen(gantrix.make("orthogonal-regularization", beta=0.3), generator=g).value(g)
    value.backward()
    w = _np(g.linear.weight)
    off = w @ w.T * (1 - np.eye(w.shape[0]))
    # d/dW β‖W Wᵀ ⊙ (1 − I)‖² = 4β (W Wᵀ ⊙ (1 − I)) W; BigGAN's code adds half of it
    np.testing.assert_allclose(_np(g.linear.weight.grad), 4 * 0.3 * off @ w, rtol=1e-10)
    assert g.conv.weight.grad.abs().sum() > 0 and g.grouped.weight.grad.abs().sum() > 0
    for p in (g.linear.bias, g.conv.bias, g.norm.weight, g.norm.bias, g.layer_norm.weight,
              g.embed.weight, g.free):
        assert p.grad is None


def test_orthogonal_filters_cost_nothing():
    layer = nn.Linear(5, 3, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.linalg.qr(torch.randn(5, 3, dtype=torch.float64))[0].T * 7.0)
    assert _seen(gantrix.make("orthogonal-regularization"), generator=layer).value(layer).item() \
        == pytest.approx(0.0, abs=1e-20)  # rows orthogonal: their norms (7) are free


def _parametrized(layer):
    layer = spectral_norm(layer)
    return layer, layer.parametrizations.weight.original, layer.parametrizations.weight[0]._u


def _hooked(layer):  # torch's older spectral norm: weight_orig, and weight set before forward
    layer = torch.nn.utils.spectral_norm(layer)
    return layer, layer.weight_orig, layer.weight_u


@pytest.mark.parametrize("normalise", [_parametrized, _hooked])
def test_orthogonal_regularization_reads_the_weight_spectral_norm_trains(normalise):
    layer, original, u = normalise(nn.Linear(4, 6).double())
    u_before = u.clone()
    value = _seen(gantrix.make("orthogonal-regularization", beta=2.0), generator=layer).value(layer)
    w = _np(original)
    want = 2.0 * sum((w[i] @ w[j]) ** 2 for i in range(6) for j in range(6) if i != j)
    assert value.item() == pytest.approx(want, rel=1e-12)  # on W, not on W / σ(W)
    (grad,) = torch.autograd.grad(value, original)
    assert grad.abs().sum() > 0
    assert torch.equal(u, u_before)  # no power-iteration step taken


def test_orthogonal_regularization_warns_about_a_generator_without_weight_layers():
    class Free(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(2, 2))

    trick = gantrix.make("orthogonal-regularization")
    (finding,) = trick.gantrix_check_model(model=Free(), role="generator")
    assert finding.severity == "warning" and "Free" in finding.message
    assert trick.gantrix_check_model(model=nn.Linear(2, 1), role="discriminator") is None
    assert trick.g_term(None) is None  # the generator it saw has nothing to regularize


def test_a_term_on_parameters_needs_built_models(make_batch):
    batch = make_batch(torch.zeros(2, 2), torch.zeros(2, 2), None, phase="generator")
    for name in ("orthogonal-regularization", "historical-averaging"):
        with pytest.raises(gantrix.GantrixError, match="gantrix.build_models"):
            gantrix.make(name).g_term(batch)


# --------------------------------------------------------------------------- mode seeking


def _mode_seeking(fake: np.ndarray, z: np.ndarray, weight: float, eps: float) -> float:
    """MSGAN's term with pairs (i, i + ⌊B/2⌋), one pair at a time."""
    half = fake.shape[0] // 2
    d_image = [np.abs(fake[i] - fake[i + half]).mean() for i in range(half)]
    d_latent = [np.abs(z[i] - z[i + half]).mean() for i in range(half)]
    ratio = (sum(d_image) / half) / (sum(d_latent) / half)
    return weight / (ratio + eps)


def test_mode_seeking_matches_its_formula_on_an_odd_batch(make_batch):
    fake = torch.randn(7, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    z = torch.randn(7, 5, dtype=torch.float64)
    trick = gantrix.make("mode-seeking", weight=2.0, eps=1e-3)
    batch = gantrix.Batch(real=torch.zeros(7, 3, 4, 4), critic=None, phase="generator", step=0, z=z)
    batch.fake = fake
    terms = trick.gantrix_generator_terms(batch=batch)
    assert set(terms) == {"mode-seeking"}
    got = terms["mode-seeking"]
    assert got.item() == pytest.approx(_mode_seeking(_np(fake), _np(z), 2.0, 1e-3), rel=1e-12)

    (grad,) = torch.autograd.grad(got, fake)
    # d/dx λ/(r + ε) with r = mean|a − b| / d_z: −λ/(r + ε)² · sign(a − b) / (n · d_z), n the
    # number of elements of the first halves; −that for the second halves; 0 for the 7th
    a, b = _np(fake[:3]), _np(fake[3:6])
    d_z = np.abs(_np(z[:3]) - _np(z[3:6])).mean()
    r = np.abs(a - b).mean() / d_z
    first = -2.0 / (r + 1e-3) ** 2 * np.sign(a - b) / (a.size * d_z)
    np.testing.assert_allclose(_np(grad[:3]), first, rtol=1e-10)
    np.testing.assert_allclose(_np(grad[3:6]), -first, rtol=1e-10)
    assert torch.count_nonzero(grad[6]) == 0
    assert trick.gantrix_discriminator_terms(batch=make_batch(batch.real, fake, None)) is None


def test_mode_seeking_stays_finite_on_identical_latents():
    z = torch.randn(3, 4, dtype=torch.float64).repeat(2, 1)
    w = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    fake = z @ w  # a generator: identical latents, identical samples
    value = gantrix.make("mode-seeking", weight=0.5).value(fake, z)
    assert value.item() == pytest.approx(0.5 / 1e-5)  # r = 0/ε = 0: λ/ε, not 0/0
    (grad,) = torch.autograd.grad(value, w)
    assert torch.isfinite(grad).all()
    assert gantrix.make("mode-seeking").value(fake[:1], z[:1]) is None  # no pair at all


def _generator_batch(composition, generator, n=8):
    z = torch.randn(n, 2)
    batch = gantrix.Batch(real=torch.randn(n, 2), critic=None, phase="generator", step=0, z=z,
                          hook=composition.hook)
    composition.hook.gantrix_condition(batch=batch)
    batch.fake = generator(z)
    return batch


@pytest.mark.parametrize("other", ["instance-noise:sigma=5", "pac"])
def test_mode_seeking_measures_the_generator_output_not_what_the_critic_sees(other):
    composition = gantrix.Recipe("nonsaturating", other, "mode-seeking").compose()
    generator = nn.Linear(2, 2)
    batch = _generator_batch(composition, generator)
    made = batch.fake
    composition.hook.gantrix_prepare_batch(batch=batch)
    assert batch.fake is not made  # noised or packed for the critic
    (terms,) = [t for t in composition.hook.gantrix_generator_terms(batch=batch) if t]
    want = _mode_seeking(_np(made), _np(batch.z), 1.0, 1e-5)
    assert terms["mode-seeking"].item() == pytest.approx(want, rel=1e-5)


# --------------------------------------------------------------------------- averaging


def _move(model, seed):
    """An optimizer step, as far as the average can tell."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))


def _history_term(snapshots: list[dict[str, np.ndarray]], weight: float) -> float:
    """λ Σ_params Σ_elements (θ_t − (1/t) Σ_i θ_i)², the mean taken over explicit lists."""
    current, total = snapshots[-1], 0.0
    for name, value in current.items():
        past = [s[name] for s in snapshots]
        mean = sum(past) / len(past)
        total += float(((value - mean) ** 2).sum())
    return weight * total


def _snapshot(model):
    return {n: _np(p).copy() for n, p in model.named_parameters()}


def _net():
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()


def test_historical_averaging_matches_the_mean_of_past_parameters(make_batch):
    g, d = _net(), _net()
    trick = _seen(gantrix.make("historical-averaging", weight=0.1), generator=g, discriminator=d)
    batch = make_batch(torch.zeros(2, 3), torch.zeros(2, 3), None, phase="generator")
    first = trick.gantrix_generator_terms(batch=batch)["historical-averaging"]
    assert first.item() == 0.0  # the first update: the average is θ itself
    assert all(x is None or torch.count_nonzero(x) == 0
               for x in torch.autograd.grad(first, list(g.parameters()), allow_unused=True))

    snapshots = [_snapshot(g)]
    for step in range(4):
        _move(g, step)
        trick.gantrix_after_generator_step()
        snapshots.append(_snapshot(g))
        value = trick.g_term(batch)
        assert value.item() == pytest.approx(_history_term(snapshots, 0.1), rel=1e-12)
    assert trick.count("generator") == 5 and trick.count("discriminator") == 0

    grads = torch.autograd.grad(value, list(g.parameters()))
    for (name, p), grad in zip(g.named_parameters(), grads):
        mean = sum(s[name] for s in snapshots) / len(snapshots)
        np.testing.assert_allclose(_np(grad), 2 * 0.1 * (_np(p) - mean), rtol=1e-10)


def test_historical_averaging_keeps_each_players_own_average(composed):
    step, data = composed("nonsaturating", "historical-averaging:weight=0.5", "n-critic:2",
                          "lazy-regularization:every=4")
    trick = step.composition.get("historical-averaging")
    outs = [step.step(data) for _ in range(2)]
    # θ₀, then after every update, the lazily skipped ones too
    assert trick.count("discriminator") == 1 + 4 and trick.count("generator") == 1 + 2
    assert "d/historical-averaging" in outs[0] and "g/historical-averaging" in outs[0]
    assert outs[0]["g/historical-averaging"] == 0  # the generator's first update
    assert "d/historical-averaging" not in outs[1] and "g/historical-averaging" not in outs[1]
    d = step.models.discriminator
    average = trick.average("discriminator")
    assert set(average) == {n for n, _ in d.named_parameters()}
    assert any(not torch.equal(average[n], p) for n, p in d.named_parameters())


def test_historical_averaging_state_round_trip():
    g, d = _net(), _net()
    trick = _seen(gantrix.make("historical-averaging"), generator=g, discriminator=d)
    assert trick.gantrix_state_dict() is None
    assert trick.g_term(None).item() == 0  # the first update starts the average
    for step in range(3):
        _move(g, step)
        trick.gantrix_after_generator_step()
    state = trick.gantrix_state_dict()
    assert set(state) == {"historical-averaging/generator"}
    saved = {n: t.clone() for n, t in state["historical-averaging/generator"]["average"].items()}

    g2, d2 = _net(), _net()
    g2.load_state_dict(g.state_dict())
    restored = gantrix.make("historical-averaging")
    restored.gantrix_load_state_dict(state=state, models=gantrix.Models(g2, d2))
    assert restored.count("generator") == 4
    for model, t in ((g, trick), (g2, restored)):  # both go on from the same place
        _move(model, 9)
        t.gantrix_after_generator_step()
    assert restored.g_term(None).item() == trick.g_term(None).item() > 0
    for n, t in state["historical-averaging/generator"]["average"].items():
        assert torch.equal(t, saved[n])  # the checkpoint is a snapshot

    late = _seen(gantrix.make("historical-averaging"), generator=g2)
    late.gantrix_after_generator_step()  # first needed after an update: it starts there
    assert late.count("generator") == 1 and late.g_term(None).item() == 0

    with pytest.raises(gantrix.GantrixError, match="does not fit this generator"):
        gantrix.make("historical-averaging").gantrix_load_state_dict(
            state=state, models=gantrix.Models(nn.Linear(3, 1), d2))


def test_resumed_run_has_the_uninterrupted_averages(tmp_path):
    recipe = ["nonsaturating", "historical-averaging"]
    whole = gantrix.Trainer(recipe, "ring8", out=tmp_path / "whole", steps=4, checkpoint_every=2,
                            **TINY).fit()
    gantrix.Trainer(recipe, "ring8", out=tmp_path / "half", steps=2, checkpoint_every=2,
                    **TINY).fit()
    resumed = gantrix.Trainer.resume(tmp_path / "half", steps=4, progress=False)
    resumed.fit()
    a = whole.composition.get("historical-averaging")
    b = resumed.composition.get("historical-averaging")
    for role in ("generator", "discriminator"):
        assert a.count(role) == b.count(role) == 5  # θ₀ and after each of 4 updates
        for name, value in a.average(role).items():
            assert torch.equal(value, b.average(role)[name]), (role, name)
    key = "g/historical-averaging"
    assert whole.history[-1][key] == resumed.history[-1][key] > 0


# --------------------------------------------------------------------------- runs, checks, CLI


def _run(*tricks, steps=3):
    return gantrix.Trainer(["nonsaturating", *tricks], "ring8", steps=steps, **TINY)


def test_short_runs_log_each_term():
    ortho = _run("orthogonal-regularization")
    before = ortho.composition.get("orthogonal-regularization").value(ortho.models.generator)
    rows = ortho.fit().history
    assert before > 0  # the first generator update sees the initial weights
    assert rows[0]["g/orthogonal-regularization"] == pytest.approx(before.item(), rel=1e-5)

    rows = _run("mode-seeking").fit().history
    assert all(0 < r["g/mode-seeking"] < 1e5 for r in rows) and "d/mode-seeking" not in rows[0]
    doubled = _run("mode-seeking:weight=2", steps=1).fit().history  # same seed, same first update
    assert doubled[0]["g/mode-seeking"] == pytest.approx(2 * rows[0]["g/mode-seeking"], rel=1e-6)

    rows = _run("historical-averaging:weight=10").fit().history
    assert rows[0]["d/historical-averaging"] == rows[0]["g/historical-averaging"] == 0
    assert rows[-1]["d/historical-averaging"] > 0 and rows[-1]["g/historical-averaging"] > 0


def _findings(*tricks):
    return [(f.severity, set(f.tricks)) for f in gantrix.Recipe(*tricks).check()
            if f.severity != "note" or "default Adam" not in f.message]


def test_composition_findings():
    assert _findings("hinge", "orthogonal-regularization", "mode-seeking", "historical-averaging",
                     "spectral-norm:role=both", "ema", "lazy-regularization") == []
    assert _findings("nonsaturating", "cgan", "mode-seeking") == [
        ("warning", {"mode-seeking", "cgan"})]
    assert _findings("nonsaturating", "historical-averaging", "unrolled") == [
        ("note", {"historical-averaging", "unrolled"})]
    for name in ("orthogonal-regularization", "mode-seeking", "historical-averaging"):
        cls = gantrix.tricks()[name]
        assert cls.kind == "regularizer" and cls.plugin == "gantrix"
        assert not cls.samples()  # a trained run samples without this plugin


def test_bad_parameters_name_parameter_value_and_range():
    with pytest.raises(gantrix.ParamError) as info:
        gantrix.make("orthogonal-regularization", beta=-1)
    assert str(info.value) == ("orthogonal-regularization: parameter 'beta' got -1.0; "
                               "allowed: finite float in [0, 10000]")
    result = CliRunner().invoke(create_app(), ["check", "nonsaturating", "mode-seeking:eps=0"])
    assert result.exit_code == 2
    assert "mode-seeking: parameter 'eps' got 0.0; allowed: finite float in (0, 1]" in result.stderr
    result = CliRunner().invoke(create_app(), ["check", "nonsaturating",
                                               "historical-averaging:weight=x"])
    assert result.exit_code == 2
    assert "historical-averaging: parameter 'weight' got 'x'; allowed: finite float in [0, 10000]" \
        in result.stderr


#: a line of each trick's formula, as its info page shows it.
FORMULAS = {
    "orthogonal-regularization": "β · Σ_W ‖W Wᵀ ⊙ (1 − I)‖²_F",
    "mode-seeking": "λ / (r + ε),   r = mean|G(z₁) − G(z₂)| / mean|z₁ − z₂|",
    "historical-averaging": "λ · ‖θ − (1/t) Σᵢ₌₁ᵗ θ[i]‖²",
}


@pytest.mark.parametrize("name", FORMULAS)
def test_info_page(name):
    result = CliRunner().invoke(create_app(), ["info", name])
    assert result.exit_code == 0, result.output
    cls = gantrix.tricks()[name]
    assert FORMULAS[name] in result.stdout and cls.paper in result.stdout
    for p in cls.params:
        assert p.help in result.stdout
