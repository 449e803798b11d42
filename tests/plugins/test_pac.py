"""pac: the packing against a loop transcription, the widened critic, penalties per pack
against independently written formulas, the errors, the relations, and short runs."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import gantrix
from gantrix import CompositionError, GantrixError, ModelSpec, Policy, hookimpl
from gantrix.models import ConvCritic, VectorCritic
from gantrix.plugins.pac import pack


def _packs(x, m):
    """Pack p = samples p·m … p·m+m−1 concatenated along dim 1 (channels / features)."""
    return torch.stack([torch.cat([x[p * m + j] for j in range(m)], 0)
                        for p in range(x.shape[0] // m)])


def _norms(g):
    return g.reshape(g.shape[0], -1).pow(2).sum(1).sqrt()


def _pack_grad(critic, pack_):
    """∇ of the critic at one pack, the pack scored alone, kept in the graph."""
    x = pack_.detach().unsqueeze(0).requires_grad_(True)
    (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return g[0]


@pytest.mark.parametrize("shape, m", [((6, 2, 3, 3), 3), ((8, 5), 2), ((4, 1, 2, 2), 4)])
def test_pack_concatenates_consecutive_samples(shape, m):
    x = torch.randn(*shape)
    packed = pack(x, m)
    assert packed.shape == (shape[0] // m, m * shape[1], *shape[2:])
    torch.testing.assert_close(packed, _packs(x, m), rtol=0, atol=0)


@pytest.mark.parametrize("critic, x", [
    (VectorCritic(ModelSpec((2,)), hidden=16), torch.randn(12, 2)),
    (ConvCritic(ModelSpec((3, 8, 8), width=8)), torch.randn(12, 3, 8, 8)),
])
def test_widens_the_critics_first_layer_m_times(critic, x):
    first = critic.net[0].weight.detach().clone()
    trick = gantrix.make("pac", m=3)
    assert trick.gantrix_transform_model(model=critic, role="generator", spec=None) is None
    assert trick.gantrix_transform_model(model=critic, role="discriminator", spec=None) is critic
    new = critic.net[0].weight
    assert new.shape[1] == 3 * first.shape[1]
    torch.testing.assert_close(new[:, :first.shape[1]], first)  # the first sample's weights
    assert critic(pack(x, 3)).shape == (4,)


@pytest.mark.parametrize("critic, why", [
    (nn.Linear(2, 1), "no `.net` layer stack"),
    (type("FlatCritic", (nn.Module,), {})(), "no `.net` layer stack"),
])
def test_a_critic_it_cannot_widen_is_an_error(critic, why):
    comp = gantrix.Recipe("nonsaturating", "pac").compose()
    with pytest.raises(CompositionError, match="pac") as info:
        gantrix.build_models(comp, ModelSpec((2,)), discriminator=critic)
    assert why in str(info.value) and "first layer" in str(info.value)


def test_a_first_layer_without_weights_is_named():
    critic = VectorCritic(ModelSpec((2,)))
    critic.net.insert(0, nn.Flatten())
    with pytest.raises(gantrix.ModelTransformError, match="first layer is a Flatten"):
        gantrix.make("pac").gantrix_transform_model(model=critic, role="discriminator", spec=None)


@pytest.mark.parametrize("shape", [(6, 2), (6, 1, 2, 2)], ids=["vector", "image"])
def test_gradient_penalty_is_wgan_gps_formula_on_the_packed_critic(shape, make_batch, tiny_critic):
    m = 3
    features = m * int(torch.tensor(shape[1:]).prod())
    critic = tiny_critic(features)
    real = torch.randn(*shape, dtype=torch.float64)
    fake = torch.randn(*shape, dtype=torch.float64) * 2
    batch = make_batch(real, fake, critic)
    gantrix.make("pac", m=m).gantrix_prepare_batch(batch=batch)
    eps = torch.rand(2, dtype=torch.float64)  # one ε per pack
    got = gantrix.make("gradient-penalty").d_term(batch, eps=eps)

    penalties = []
    for p, (r, f) in enumerate(zip(_packs(real, m), _packs(fake, m))):
        x_hat = eps[p] * r + (1 - eps[p]) * f
        penalties.append((_pack_grad(critic, x_hat).norm() - 1) ** 2)
    want = 10 * torch.stack(penalties).mean()
    torch.testing.assert_close(got, want, rtol=1e-10, atol=0)
    weights = [q for q in critic.parameters() if q.dim() > 1]
    for g, w in zip(torch.autograd.grad(got, weights), torch.autograd.grad(want, weights)):
        torch.testing.assert_close(g, w, rtol=1e-8, atol=1e-12)


def test_r1_is_the_squared_norm_of_the_pack_gradient(make_batch, tiny_critic):
    m = 2
    critic = tiny_critic(m * 3)
    real = torch.randn(8, 3, dtype=torch.float64)
    batch = make_batch(real, torch.randn(8, 3, dtype=torch.float64), critic)
    r1 = gantrix.make("r1", gamma=4.0)
    r1.gantrix_prepare_batch(batch=batch)  # asks for the input gradient before packing
    gantrix.make("pac", m=m).gantrix_prepare_batch(batch=batch)
    assert batch.real_logits.shape == (4,)  # one score per pack
    got = r1.d_term(batch)
    assert critic.calls == 1  # the loss's forward pass on the packs was shared
    want = 4.0 / 2 * torch.stack([_pack_grad(critic, p).norm() ** 2
                                  for p in _packs(real, m)]).mean()
    torch.testing.assert_close(got, want, rtol=1e-10, atol=0)


def test_a_batch_size_not_divisible_by_m_fails_before_any_update(composed):
    step, data = composed("nonsaturating", "pac:m=4", batch=10)
    before = copy.deepcopy(step.models)
    with pytest.raises(GantrixError, match=r"pac: the batch size 10 is not a multiple of m=4"):
        step.step(data)
    for old, new in ((before.generator, step.models.generator),
                     (before.discriminator, step.models.discriminator)):
        assert all(torch.equal(a, b) for a, b in zip(old.parameters(), new.parameters()))
    assert not step.optimizers["discriminator"].state and step.d_steps == 0


@pytest.mark.parametrize("where", ["critic_inputs", "codes"])
def test_per_sample_critic_inputs_are_an_error(where, make_batch, critic):
    batch = make_batch(torch.randn(4, 3), torch.randn(4, 3), critic)
    if where == "critic_inputs":
        batch.critic_inputs["fake"]["labels"] = torch.zeros(4, dtype=torch.long)
    else:
        batch.codes["categorical"] = torch.zeros(4, dtype=torch.long)
    name = "labels" if where == "critic_inputs" else "categorical"
    with pytest.raises(GantrixError, match=f"pac: another trick gives the critic per-sample "
                                           f"inputs \\({name}\\)"):
        gantrix.make("pac").gantrix_prepare_batch(batch=batch)
    assert batch.real.shape == (4, 3)  # left as it was


@pytest.mark.parametrize("other", ["cgan", "infogan"])
def test_conditional_critics_are_errors(other):
    errors = [f for f in gantrix.Recipe("nonsaturating", "pac", other).check()
              if f.severity == "error"]
    assert len(errors) == 1 and set(errors[0].tricks) == {"pac", other}
    assert "packs of m samples" in errors[0].message and "PacGAN" in errors[0].paper


def test_m_is_checked():
    with pytest.raises(gantrix.ParamError,
                       match=r"pac: parameter 'm' got 17; allowed: int in \[2, 16\]"):
        gantrix.make("pac", m=17)


class _ShapeSpy(Policy):
    """A stand-in trick that records the sample shapes its prepare_batch sees."""

    name = "test-shape-spy"
    summary = "test only"
    seen: list = []

    @hookimpl
    def gantrix_prepare_batch(self, batch):
        self.seen.append((tuple(batch.real.shape), tuple(batch.fake.shape)))


def test_packs_after_every_other_tricks_prepare_batch(monkeypatch, composed):
    monkeypatch.setitem(gantrix.catalogue().tricks, _ShapeSpy.name, _ShapeSpy)
    monkeypatch.setattr(_ShapeSpy, "seen", [])
    step, data = composed("nonsaturating", "pac", _ShapeSpy.name, batch=8)  # spy listed last
    step.step(data)
    assert _ShapeSpy.seen == [((8, 2), (8, 2))] * 2  # single samples, in both updates


@pytest.mark.parametrize("tricks, shape", [
    (("wgan", "gradient-penalty", "pac:m=4"), (2,)),
    (("nonsaturating", "r1", "minibatch-stddev:group=2", "pac"), (2,)),
    (("rasgan", "dcgan:critic_norm=none", "diffaugment", "pac:m=2", "spectral-norm"), (1, 8, 8)),
    (("nonsaturating", "dcgan", "instance-noise", "pac:m=3"), (3, 8, 8)),
], ids=lambda t: "+".join(t) if isinstance(t, tuple) and isinstance(t[0], str) else None)
def test_compositions_with_pac_train(tricks, shape, composed):
    step, data = composed(*tricks, shape=shape, batch=12)
    assert not [f for f in step.composition.findings if f.severity != "note"]
    before = copy.deepcopy(step.models)
    for _ in range(2):
        out = step.step(data)
    assert all(torch.isfinite(v) for v in out.values())
    for old, new in ((before.generator, step.models.generator),
                     (before.discriminator, step.models.discriminator)):
        assert any(not torch.equal(a, b) for a, b in zip(old.parameters(), new.parameters()))


def test_a_short_dcgan_run_on_digits():
    trainer = gantrix.Trainer(gantrix.Recipe(recipe="dcgan").extend(["pac:m=2"]), "digits",
                              steps=2, batch_size=16, width=8, latent_dim=8, progress=False)
    trainer.fit()
    assert trainer.step == 2 and trainer.sample(5).shape == (5, 1, 8, 8)
    assert trainer.models.discriminator.net[0].in_channels == 2


def test_an_indivisible_batch_stops_the_run_before_any_file_is_written(tmp_path):
    from gantrix import CompositionError, Recipe, Trainer
    from gantrix.check import check

    out = tmp_path / "run"
    with pytest.raises(CompositionError, match="batch size 10 is not a multiple of m=4"):
        Trainer(["nonsaturating", "pac:4"], "ring8", batch_size=10, out=out, progress=False)
    assert not out.exists()
    report = check(Recipe("nonsaturating", "pac:4"), "ring8")  # ring8's default batch: 256
    assert report.ok
    config = tmp_path / "c.toml"
    config.write_text('tricks = ["nonsaturating", "pac:3"]\n[train]\nbatch_size = 256\n')
    report = check(Recipe(config=config), "ring8")
    assert not report.ok and "not a multiple of m=3" in str(report.findings[0])
