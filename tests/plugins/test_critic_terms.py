"""consistency (CR, bCR), lecam and label-flip against the papers' formulas written out here
in float64, their gradients into the critic, their relations, lecam's anchors and their
checkpoint, and a short training run of each."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import gantrix
from gantrix.plugin import translation

POINTS = dict(batch_size=16, width=8, latent_dim=2, sample_every=0, log_every=1, progress=False)
IMAGES = dict(batch_size=8, width=4, latent_dim=8, sample_every=0, log_every=1, progress=False)


def _images(n=6, side=4):
    return torch.randn(n, 1, side, side, dtype=torch.float64)


def _shift(x):
    """A fixed stand-in for T: every image rolled one pixel to the right."""
    return torch.roll(x, 1, dims=3)


def _weight_grads(value, critic):
    return torch.autograd.grad(value, [p for p in critic.parameters() if p.dim() > 1],
                               retain_graph=True)


def _same_weight_grads(got, want, critic):
    for g, w in zip(_weight_grads(got, critic), _weight_grads(want, critic)):
        torch.testing.assert_close(g, w, rtol=1e-8, atol=1e-12)
        assert torch.count_nonzero(g) > 0  # the term trains the critic


# --------------------------------------------------------------------------- consistency


def _cr_cost(critic, x):
    """(1/B) Σ_i (D(x_i) − D(T(x_i)))², one sample at a time."""
    return sum((critic(x[i:i + 1]) - critic(_shift(x)[i:i + 1])).square().sum()
               for i in range(x.shape[0])) / x.shape[0]


def test_consistency_is_the_cr_cost_on_real_images(make_batch, tiny_critic):
    critic = tiny_critic(16)
    real, fake = _images(), _images()
    batch = make_batch(real, fake, critic)
    batch.real_logits  # the loss's forward pass
    got = gantrix.make("consistency").d_term(batch, augment=_shift)
    assert critic.calls == 2  # D(x) shared with the loss, one more pass for D(T(x))
    want = 10 * _cr_cost(critic, real)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=0)
    _same_weight_grads(got, want, critic)
    # D(x) is not detached: the gradient differs from that of a cost with D(x) held fixed
    held = 10 * (critic(real).detach() - critic(_shift(real))).square().mean()
    assert not torch.allclose(_weight_grads(got, critic)[0], _weight_grads(held, critic)[0])


def test_balanced_consistency_adds_the_fakes_with_their_own_weight(make_batch, tiny_critic):
    critic = tiny_critic(16)
    real, fake = _images(), _images()
    trick = gantrix.make("consistency", weight=2.0, balanced=True, fake_weight=3.0)
    got = trick.d_term(make_batch(real, fake, critic), augment=_shift)
    want = 2 * _cr_cost(critic, real) + 3 * _cr_cost(critic, fake)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=0)
    _same_weight_grads(got, want, critic)


def test_consistency_draws_t_from_the_translation_per_side(make_batch, tiny_critic):
    critic = tiny_critic(64)
    real, fake = _images(8, 8), _images(8, 8)
    torch.manual_seed(5)
    got = gantrix.make("consistency", balanced=True).d_term(make_batch(real, fake, critic))
    torch.manual_seed(5)
    moved_real, moved_fake = translation(real), translation(fake)  # drawn in the same order
    assert not torch.equal(moved_real, real)
    want = 10 * ((critic(real) - critic(moved_real)).square().mean()
                 + (critic(fake) - critic(moved_fake)).square().mean())
    torch.testing.assert_close(got, want, rtol=1e-10, atol=0)


def test_consistency_scores_t_x_with_each_sides_conditioning(make_batch):
    seen = []

    def critic(x, labels=None):
        seen.append(labels)
        return x.flatten(1).sum(1)

    batch = make_batch(_images(), _images(), critic)
    batch.critic_inputs["real"]["labels"] = "real-labels"
    batch.critic_inputs["fake"]["labels"] = "fake-labels"
    gantrix.make("consistency", balanced=True).d_term(batch)
    assert seen == ["real-labels"] * 2 + ["fake-labels"] * 2


def test_consistency_on_vector_data_is_an_error():
    composition = gantrix.Recipe("nonsaturating", "consistency").compose()
    with pytest.raises(gantrix.CompositionError) as info:
        gantrix.build_models(composition, gantrix.ModelSpec(shape=(2,), latent_dim=4))
    errors = [f for f in info.value.findings if f.severity == "error"]
    assert [f.tricks for f in errors] == [("consistency",)]
    assert "means nothing for vectors" in errors[0].message and "Zhang" in errors[0].paper


def test_consistency_trains_on_digits():
    trainer = gantrix.Trainer(["nonsaturating", "consistency:balanced=true"], "digits",
                              steps=3, **IMAGES).fit()
    assert trainer.step == 3
    terms = [row["d/consistency"] for row in trainer.history]
    assert len(terms) == 3 and all(math.isfinite(t) and t > 0 for t in terms)


# --------------------------------------------------------------------------- lecam


def _debiased(history, decay):
    """Σ_s β^(t−s)·m_s / Σ_s β^(t−s): the debiased moving average of m_1 … m_t."""
    t = len(history)
    weights = torch.tensor([decay ** (t - 1 - s) for s in range(t)], dtype=torch.float64)
    return (weights * torch.tensor(history, dtype=torch.float64)).sum() / weights.sum()


def _critic_update(trick, batch):
    """What a critic update does with lecam: the term, then (after the step) the commit."""
    terms = trick.gantrix_discriminator_terms(batch=batch)
    trick.gantrix_after_discriminator_step(models=None, step=0)
    return terms


def test_lecam_anchors_are_a_debiased_moving_average_over_critic_updates(make_batch):
    trick = gantrix.make("lecam", decay=0.9)
    assert trick.anchors is None and trick.gantrix_state_dict() is None
    means = {"real": [], "fake": []}
    for step in range(5):
        r = torch.randn(32, dtype=torch.float64) + step
        f = torch.randn(32, dtype=torch.float64) - step
        means["real"].append(r.mean().item())
        means["fake"].append(f.mean().item())
        _critic_update(trick, make_batch(r, f, lambda x: x))
        want = torch.stack([_debiased(means["real"], 0.9), _debiased(means["fake"], 0.9)])
        torch.testing.assert_close(trick.anchors, want, rtol=1e-12, atol=0)
    assert trick.updates == 5
    # a critic loss taken without an optimizer step (a look-ahead) leaves the anchors alone
    before = trick.anchors.clone()
    trick.gantrix_discriminator_terms(batch=make_batch(r + 7, f - 7, lambda x: x))
    assert torch.equal(trick.anchors, before) and trick.updates == 5


def test_lecam_is_eq_3_around_the_anchors_after_this_batch(make_batch, critic):
    trick = gantrix.make("lecam", weight=0.5, decay=0.8)
    first = (torch.randn(16, 3, dtype=torch.float64), torch.randn(16, 3, dtype=torch.float64))
    _critic_update(trick, make_batch(*first, critic))
    real = torch.randn(16, 3, dtype=torch.float64) + 1
    fake = torch.randn(16, 3, dtype=torch.float64)
    got = trick.d_term(make_batch(real, fake, critic))
    with torch.no_grad():  # the anchors: 0.8 on the first batch's mean, 1 on this one's
        alpha_real = (0.8 * critic(first[0]).mean() + critic(real).mean()) / 1.8
        alpha_fake = (0.8 * critic(first[1]).mean() + critic(fake).mean()) / 1.8
    on_real = sum((critic(real[i:i + 1]) - alpha_fake) ** 2 for i in range(16)) / 16
    on_fake = sum((critic(fake[i:i + 1]) - alpha_real) ** 2 for i in range(16)) / 16
    want = (0.5 * (on_real + on_fake)).squeeze()
    torch.testing.assert_close(got, want, rtol=1e-10, atol=0)
    _same_weight_grads(got, want, critic)


def test_lecam_moves_its_anchors_at_every_critic_update_even_when_lazy(composed):
    step, data = composed("nonsaturating", "lecam", "lazy-regularization:every=3")
    outs = [step.discriminator_step(*data()) for _ in range(4)]
    assert ["d/lecam" in out for out in outs] == [True, False, False, True]
    assert step.composition.get("lecam").updates == 4


def test_lecam_anchors_survive_a_checkpoint(make_batch):
    trick = gantrix.make("lecam")
    for _ in range(3):
        _critic_update(trick, make_batch(torch.randn(8), torch.randn(8), lambda x: x))
    restored = gantrix.make("lecam")
    restored.gantrix_load_state_dict(state=trick.gantrix_state_dict())
    assert torch.equal(restored.anchors, trick.anchors) and restored.updates == 3
    batch = make_batch(torch.randn(8), torch.randn(8), lambda x: x)
    assert torch.equal(restored.d_term(batch), trick.d_term(batch))


def test_a_resumed_lecam_run_has_the_anchors_of_the_uninterrupted_one(tmp_path):
    tricks = ["nonsaturating", "lecam"]
    whole = gantrix.Trainer(tricks, "ring8", steps=4, **POINTS).fit()
    gantrix.Trainer(tricks, "ring8", steps=2, out=tmp_path / "run", checkpoint_every=0,
                    **POINTS).fit()
    resumed = gantrix.Trainer.resume(tmp_path / "run", steps=4, progress=False).fit()
    want = whole.composition.get("lecam")
    got = resumed.composition.get("lecam")
    assert got.updates == want.updates == 4
    assert torch.equal(got.anchors, want.anchors)
    assert all(math.isfinite(row["d/lecam"]) for row in whole.history)


# --------------------------------------------------------------------------- label-flip


def _targets(flip):
    """Per-sample targets after flipping: real 1 → 0 and fake 0 → 1 where ``flip``."""
    ones = torch.ones(flip.shape, dtype=torch.float64)
    return torch.where(flip, 0.0, ones), torch.where(flip, ones, 0.0)


def _bce_with_targets(r, f, flip):
    t_real, t_fake = _targets(flip)
    return (F.binary_cross_entropy(torch.sigmoid(r), t_real)
            + F.binary_cross_entropy(torch.sigmoid(f), t_fake))


def _least_squares_with_targets(r, f, flip):
    t_real, t_fake = _targets(flip)
    return 0.5 * ((r - t_real) ** 2).mean() + 0.5 * ((f - t_fake) ** 2).mean()


@pytest.mark.parametrize("loss,formula", [("nonsaturating", _bce_with_targets),
                                          ("minimax", _bce_with_targets),
                                          ("lsgan", _least_squares_with_targets)])
def test_label_flip_gives_the_loss_with_swapped_targets(loss, formula, make_batch):
    r = (torch.randn(40, dtype=torch.float64) * 2).requires_grad_()
    f = (torch.randn(40, dtype=torch.float64) * 2).requires_grad_()
    flip = torch.rand(40) < 0.3
    assert 0 < flip.sum() < 40
    batch = make_batch(r, f, lambda x: x)  # the identity critic: the samples are the logits
    got = gantrix.make(loss).d_loss(r, f) + gantrix.make("label-flip").d_term(batch, flip=flip)
    want = formula(r, f, flip)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=0)
    for g, w in zip(torch.autograd.grad(got, (r, f)), torch.autograd.grad(want, (r, f))):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-15)


def test_label_flip_trains_the_critic(make_batch, critic):
    real, fake = torch.randn(12, 3, dtype=torch.float64), torch.randn(12, 3, dtype=torch.float64)
    flip = torch.arange(12) % 4 == 0
    got = gantrix.make("label-flip").d_term(make_batch(real, fake, critic), flip=flip)
    want = (critic(real[flip]) - critic(fake[flip])).sum() / 12
    torch.testing.assert_close(got, want, rtol=1e-10, atol=0)
    _same_weight_grads(got, want, critic)


@pytest.mark.parametrize("p", [0.05, 0.3])
def test_label_flip_flips_a_fraction_p_drawn_from_the_global_generator(p, make_batch):
    trick = gantrix.make("label-flip", p=p)
    n = 1000
    batch = make_batch(torch.ones(n), torch.zeros(n), lambda x: x)  # the term = flipped / n
    draws = torch.stack([trick.d_term(batch) for _ in range(200)])
    assert draws.mean().item() == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / (n * 200)))
    assert draws.std() > 0  # a fresh draw every update
    torch.manual_seed(7)
    first = trick.d_term(batch)
    torch.manual_seed(7)
    assert torch.equal(trick.d_term(batch), first)
    assert gantrix.make("label-flip", p=0.0).d_term(batch) == 0


@pytest.mark.parametrize("loss", ["wgan", "hinge", "rsgan"])
def test_label_flip_needs_a_loss_with_targets(loss):
    errors = [f for f in gantrix.Recipe(loss, "label-flip").check() if f.severity == "error"]
    assert len(errors) == 1
    assert "label-flip requires target-labels" in errors[0].message
    assert "no label to flip" in errors[0].message and "lsgan" in errors[0].message  # the hint
    assert "ganhacks" in errors[0].paper
    with pytest.raises(gantrix.CompositionError):
        gantrix.Recipe(loss, "label-flip").compose()


@pytest.mark.parametrize("loss", ["minimax", "nonsaturating", "lsgan"])
def test_label_flip_composes_with_the_losses_that_have_targets(loss):
    assert not [f for f in gantrix.Recipe(loss, "label-flip").check() if f.severity != "note"]


def test_label_flip_with_label_smoothing_warns():
    findings = gantrix.Recipe("nonsaturating", "label-smoothing", "label-flip").check()
    warnings = [f for f in findings if f.severity == "warning"]
    assert len(warnings) == 1 and set(warnings[0].tricks) == {"label-flip", "label-smoothing"}
    assert "t - 1" in warnings[0].message


def test_label_flip_trains_on_points_and_only_in_critic_updates():
    trainer = gantrix.Trainer(["lsgan", "label-flip:0.2"], "ring8", steps=3, **POINTS).fit()
    rows = trainer.history
    assert len(rows) == 3 and all(math.isfinite(row["d/label-flip"]) for row in rows)
    assert not any(key.startswith("g/") for row in rows for key in row)


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("trick,params,message", [
    ("consistency", dict(weight=-1.0),
     "consistency: parameter 'weight' got -1.0; allowed: finite float in [0, 10000]"),
    ("consistency", dict(balanced=True, fake_weight=-2.0),
     "consistency: parameter 'fake_weight' got -2.0; allowed: finite float in [0, 10000]"),
    ("consistency", dict(fake_weight=5.0),
     "consistency: parameter 'fake_weight' got 5.0, but it weighs the generated images' "
     "cost, which only balanced=true adds"),
    ("consistency", dict(policy="rotate"),
     "consistency: parameter 'policy' got 'rotate'; allowed: augmentations joined by '+' "
     "from color, translation, cutout, flip"),
    ("lecam", dict(weight=-0.3), "lecam: parameter 'weight' got -0.3; allowed: finite float in [0, 10000]"),
    ("lecam", dict(decay=1.0), "lecam: parameter 'decay' got 1.0; allowed: finite float in [0, 1)"),
    ("label-flip", dict(p=0.5), "label-flip: parameter 'p' got 0.5; allowed: finite float in [0, 0.5)"),
    ("label-flip", dict(p=-0.1), "label-flip: parameter 'p' got -0.1; allowed: finite float in [0, 0.5)"),
])
def test_bad_parameters_name_the_parameter_the_value_and_the_range(trick, params, message):
    with pytest.raises(gantrix.ParamError) as info:
        gantrix.make(trick, **params)
    assert message in str(info.value)


def test_parameters_parse_from_the_command_line_form():
    spec = "consistency:5,policy=translation+cutout,balanced=true,fake-weight=4"
    trick = gantrix.Recipe("nonsaturating", spec).compose().get("consistency")
    assert (trick.weight, trick.policy, trick.balanced, trick.fake_weight) == \
        (5.0, "translation+cutout", True, 4.0)
    assert [op.__name__ for op in trick.ops] == ["translation", "cutout"]
    assert gantrix.Recipe("lsgan", "label-flip:0.1").compose().get("label-flip").p == 0.1


def test_the_three_only_train_so_a_run_samples_without_them():
    tricks = gantrix.tricks()
    assert not any(tricks[name].samples() for name in ("consistency", "lecam", "label-flip"))
