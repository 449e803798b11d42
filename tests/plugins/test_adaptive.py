"""ada (Karras et al. 2020) and top-k (Sinha et al. 2020): ada's p rule against the paper's
rule written out here, its per-image augmentation, the generator's gradient through it, its
checkpoint and relations; top-k's loss against an explicit sort in float64, k's schedule,
the batch-size error, pac; and a short run of each."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import gantrix
from gantrix.plugins.pac import pack
from gantrix.settings import check_settings

POINTS = dict(batch_size=16, width=8, latent_dim=2, sample_every=0, log_every=1, progress=False)
IMAGES = dict(batch_size=8, width=4, latent_dim=8, sample_every=0, log_every=1, progress=False)


def _first_pixel(x):
    """A fixed critic: the logit of an image is its first pixel, of a vector its first entry."""
    return x.flatten(1)[:, 0]


# --------------------------------------------------------------------------- ada


def _paper_rule(p, updates, *, interval, target, speed, max_p, batch):
    """p after each critic update under Karras et al.'s rule: every ``interval`` updates,
    r = mean of sign(D(x_real)) over them and p ← clamp(p + sign(r − target)·N·B/speed,
    0, max_p); unchanged in between."""
    seen, history = [], []
    for logits in updates:
        seen += [(v > 0) - (v < 0) for v in logits]
        if len(seen) == interval * batch:
            r = sum(seen) / len(seen)
            direction = 1 if r > target else -1 if r < target else 0
            p = min(max(p + direction * interval * batch / speed, 0.0), max_p)
            seen = []
        history.append(p)
    return history


def _critic_updates(trick, updates, make_batch):
    """Drive ``trick`` through critic updates whose real logits are ``updates`` (the
    critic's terms, then its optimizer step); p after each."""
    history = []
    for i, logits in enumerate(updates):
        real = torch.zeros(len(logits), 1, 2, 2, dtype=torch.float64)
        real[:, 0, 0, 0] = torch.tensor(logits, dtype=torch.float64)
        batch = make_batch(real, torch.zeros_like(real), _first_pixel)
        assert trick.gantrix_discriminator_terms(batch=batch) is None  # it adds no term
        trick.gantrix_after_discriminator_step(models=None, step=i)
        history.append(trick.p)
    return history


def _logits_with_signs(positive, zero, negative):
    mags = (torch.rand(positive + zero + negative, dtype=torch.float64) + 0.1).tolist()
    return ([m for m in mags[:positive]] + [0.0] * zero
            + [-m for m in mags[positive + zero:]])


SIGN_PATTERNS = [(8, 0, 0)] * 6 + [(5, 0, 3)] * 2 + [(7, 1, 0)] * 2 + [(0, 0, 8)] * 2 + [(8, 0, 0)]


def test_ada_moves_p_by_the_papers_rule_every_interval_critic_updates(make_batch):
    updates = [_logits_with_signs(*s) for s in SIGN_PATTERNS]
    settings = dict(interval=2, target=0.6, speed=64, max_p=0.6)
    trick = gantrix.make("ada", **settings)
    got = _critic_updates(trick, updates, make_batch)
    want = _paper_rule(0.0, updates, batch=8, **settings)
    assert got == pytest.approx(want, abs=1e-12)
    # rises by 2·8/64, is capped at max_p, falls at r = 0.25, rises at r = 0.875, only on
    # every second update, and the last update starts an interval that has not closed
    assert want == pytest.approx([0, .25, .25, .5, .5, .6, .6, .35, .35, .6, .6, .35, .35])


def test_ada_p_never_falls_below_zero(make_batch):
    trick = gantrix.make("ada", p=0.1, interval=1, speed=16)
    assert _critic_updates(trick, [_logits_with_signs(0, 0, 8)] * 2, make_batch) == [0.0, 0.0]


def _images(n, side=8):
    return torch.rand(n, 1, side, side, dtype=torch.float64) + 1  # no pixel is 0


def test_ada_at_p_0_leaves_every_image_untouched(make_batch):
    real, fake = _images(64), _images(64)
    batch = make_batch(real, fake, _first_pixel)
    gantrix.make("ada", policy="translation+color+cutout").gantrix_prepare_batch(batch=batch)
    assert torch.equal(batch.real, real) and torch.equal(batch.fake, fake)


def test_ada_at_p_1_augments_every_image_real_and_fake(make_batch):
    real, fake = _images(64), _images(64)
    batch = make_batch(real, fake, _first_pixel, phase="generator")
    gantrix.make("ada", p=1.0, policy="cutout").gantrix_prepare_batch(batch=batch)
    for x in (batch.real, batch.fake):  # a cutout on 8×8 images always zeroes some pixels
        assert bool((x == 0).flatten(1).any(1).all())


def test_ada_applies_each_augmentation_to_each_image_with_probability_p():
    n, p = 4000, 0.5
    x = _images(n, side=4)
    out = gantrix.make("ada", p=p, policy="cutout+color").augment(x)
    cut = (out == 0).flatten(1).any(1).double().mean().item()
    untouched = (out == x).flatten(1).all(1).double().mean().item()
    tolerance = 4 * math.sqrt(0.25 / n)
    assert abs(cut - p) < tolerance                      # cutout drawn with probability p
    assert abs(untouched - (1 - p) ** 2) < tolerance     # independently of color


def test_ada_keeps_the_papers_pipeline_order_whatever_the_policy_lists():
    trick = gantrix.make("ada", policy="cutout+translation+color")
    assert trick.policy == "translation+color+cutout"
    assert [op.__name__ for op in trick.ops] == ["translation", "color", "cutout"]


@pytest.mark.parametrize("p", [1.0, 0.5])
def test_the_generators_gradient_flows_through_the_fakes_augmentation(p, make_batch):
    fake = _images(32).requires_grad_(True)
    batch = make_batch(_images(32), fake, _first_pixel, phase="generator")
    gantrix.make("ada", p=p, policy="cutout").gantrix_prepare_batch(batch=batch)
    batch.fake.sum().backward()
    kept = (batch.fake != 0).double()
    # d(cutout(x))/dx: 1 where kept, 0 where cut; an image left as it is passes all of it
    assert torch.equal(fake.grad, kept)
    assert 0 < kept.mean().item() < 1


def test_ada_counts_the_images_before_pac_packs_them(composed):
    step, data = composed("nonsaturating", "ada:p=0.5,interval=1,speed=64", "pac",
                          shape=(1, 8, 8), batch=8)
    step.discriminator_step(*data())
    # one critic update of 8 images (4 packs) moves p by 8/64
    assert abs(step.composition.get("ada").p - 0.5) == 0.125


def test_ada_state_round_trip_continues_with_the_same_p(make_batch):
    settings = dict(interval=3, speed=32)
    first = [_logits_with_signs(8, 0, 0)] * 4           # one adjustment, one update pending
    then = [_logits_with_signs(1, 0, 7)] * 2            # closes the pending interval
    trick = gantrix.make("ada", **settings)
    _critic_updates(trick, first, make_batch)
    restored = gantrix.make("ada", **settings)
    restored.gantrix_load_state_dict(state=trick.gantrix_state_dict())
    assert restored.p == trick.p == 0.75
    # the pending update's signs came through: r = (8 + 2·(1 − 7)) / 24 < 0.6 lowers p
    assert _critic_updates(restored, then, make_batch) == _critic_updates(trick, then, make_batch)
    assert restored.p == 0.0


def test_a_resumed_ada_run_has_the_p_of_the_uninterrupted_one(tmp_path):
    tricks = ["nonsaturating", "ada:p=0.5,interval=3,speed=64"]
    whole = gantrix.Trainer(tricks, "digits", steps=4, **IMAGES).fit()
    gantrix.Trainer(tricks, "digits", steps=2, out=tmp_path / "run", checkpoint_every=0,
                    **IMAGES).fit()
    resumed = gantrix.Trainer.resume(tmp_path / "run", steps=4, progress=False).fit()
    want, got = whole.composition.get("ada"), resumed.composition.get("ada")
    assert got.p == want.p and want.p in (0.5 - 0.375, 0.5 + 0.375)  # moved once, by 3·8/64
    assert got.gantrix_state_dict() == want.gantrix_state_dict()


def test_ada_with_diffaugment_is_an_error_and_with_consistency_fine():
    errors = [f for f in gantrix.Recipe("nonsaturating", "ada", "diffaugment").check()
              if f.severity == "error"]
    assert [set(f.tricks) for f in errors] == [{"ada", "diffaugment"}]
    assert "two augmentation pipelines" in errors[0].message and "Karras" in errors[0].paper
    findings = gantrix.Recipe("nonsaturating", "ada", "consistency").check()
    assert not [f for f in findings if f.severity in ("error", "warning")]


def test_ada_on_vector_data_is_an_error():
    composition = gantrix.Recipe("nonsaturating", "ada").compose()
    with pytest.raises(gantrix.CompositionError) as info:
        gantrix.build_models(composition, gantrix.ModelSpec(shape=(2,), latent_dim=4))
    errors = [f for f in info.value.findings if f.severity == "error"]
    assert [f.tricks for f in errors] == [("ada",)]
    assert "means nothing for vectors" in errors[0].message
    with pytest.raises(gantrix.GantrixError, match="augments images"):
        gantrix.make("ada", p=0.5).augment(torch.randn(8, 2))


def test_ada_trains_on_digits_moving_p_at_every_critic_update():
    trainer = gantrix.Trainer(["nonsaturating", "ada:p=0.5,interval=1,speed=64"], "digits",
                              steps=3, **IMAGES).fit()
    assert trainer.step == 3
    assert all(math.isfinite(row["d_loss"]) and math.isfinite(row["g_loss"])
               for row in trainer.history)
    # three moves of ±8/64 (r_t of 8 signs is a multiple of 1/4, never 0.6)
    moves = (trainer.composition.get("ada").p - 0.5) / 0.125
    assert moves in (-3, -1, 1, 3)


# --------------------------------------------------------------------------- top-k

G_LOSSES = {
    "nonsaturating": lambda r, f: F.softplus(-f).mean(),
    "wgan": lambda r, f: -f.mean(),
    "lsgan": lambda r, f: 0.5 * (f - 1).square().mean(),
    "rsgan": lambda r, f: F.softplus(r - f).mean(),  # pairwise: real i against fake i
    "rasgan": lambda r, f: 0.5 * (F.softplus(r - f.mean()) + F.softplus(-(f - r.mean()))).mean(),
}


def _generator_batch(composition, make_batch, n=8, step=0, features=3):
    real = torch.randn(n, features, dtype=torch.float64)
    fake = torch.randn(n, features, dtype=torch.float64, requires_grad=True)
    batch = make_batch(real, fake, _first_pixel, phase="generator", step=step,
                       hook=composition.hook)
    return batch, real, fake


@pytest.mark.parametrize("loss", sorted(G_LOSSES))
def test_top_k_loss_is_the_loss_on_the_k_best_fakes(loss, make_batch):
    composition = gantrix.Recipe(loss, "top-k:k=5").compose()
    batch, real, fake = _generator_batch(composition, make_batch)
    got = composition.hook.gantrix_generator_loss(batch=batch)
    order = sorted(range(8), key=lambda i: -fake[i, 0].item())[:5]   # the 5 best, by hand
    best = torch.tensor(order)
    want = G_LOSSES[loss](real[best, 0], fake[best, 0])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    got.backward()
    trained = (fake.grad.abs().sum(1) > 0).nonzero().flatten().tolist()
    assert sorted(trained) == sorted(order)           # the others get no gradient
    # the terms that follow see every fake again; the real batch holds the partners
    assert batch.fake is fake and batch.fake_logits.shape == (8,)
    assert torch.equal(batch.real, real[best])


def test_top_k_anneals_k_by_gamma_every_few_steps_down_to_its_floor():
    trick = gantrix.make("top-k", gamma=0.75, nu=0.25, every=3)
    # 16 · 0.75^e rounded down: 16, 12, 9, 6.75, 5.06; then the floor 0.25 · 16
    want = [16] * 3 + [12] * 3 + [9] * 3 + [6] * 3 + [5] * 3 + [4] * 6
    assert [trick.k_at(t, 16) for t in range(21)] == want
    start = gantrix.make("top-k", gamma=0.75, nu=0.25, every=1, k=10)
    # 10, 7.5, 5.6, 4.2, 3.16; then 0.75^5 < 0.25: the floor 2.5
    assert [start.k_at(t, 16) for t in range(7)] == [10, 7, 5, 4, 3, 2, 2]
    assert gantrix.make("top-k", nu=0.01, gamma=0.5, every=1).k_at(10, 4) == 1  # at least one


def test_top_k_keeps_k_at_steps_fakes_in_each_generator_update(make_batch):
    composition = gantrix.Recipe("wgan", "top-k:gamma=0.5,nu=0.25,every=2").compose()
    kept = []
    for step in range(8):
        batch, _, fake = _generator_batch(composition, make_batch, n=16, step=step)
        composition.hook.gantrix_generator_loss(batch=batch).backward()
        kept.append(int((fake.grad.abs().sum(1) > 0).sum()))
    assert kept == [16, 16, 8, 8, 4, 4, 4, 4]


def test_top_k_leaves_critic_updates_alone(make_batch):
    plain = gantrix.Recipe("nonsaturating").compose()
    top = gantrix.Recipe("nonsaturating", "top-k:k=2").compose()
    real, fake = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)
    losses = [c.hook.gantrix_discriminator_loss(batch=make_batch(real, fake, _first_pixel,
                                                                 hook=c.hook))
              for c in (plain, top)]
    assert torch.equal(losses[0], losses[1])


def test_top_k_above_the_batch_size_is_an_error_before_training():
    with pytest.raises(gantrix.CompositionError) as info:
        gantrix.Trainer(["nonsaturating", "top-k:k=64"], "ring8", steps=3, **POINTS)
    assert "top-k: k=64 is more than the batch size 16" in str(info.value)
    check_settings(gantrix.Recipe("nonsaturating", "top-k:k=16").compose(), 16)  # fine


def test_top_k_under_pac_keeps_the_best_packs(make_batch):
    composition = gantrix.Recipe("nonsaturating", "pac", "top-k:k=3").compose()
    batch, _, fake = _generator_batch(composition, make_batch)
    composition.hook.gantrix_prepare_batch(batch=batch)           # 8 samples → 4 packs
    got = composition.hook.gantrix_generator_loss(batch=batch)
    scores = pack(fake, 2)[:, 0]                                 # a pack scored by its first
    torch.testing.assert_close(got, F.softplus(-scores.sort(descending=True).values[:3]).mean())
    got.backward()
    dropped = scores.argmin().item()
    assert fake.grad[2 * dropped:2 * dropped + 2].abs().sum() == 0  # the whole pack dropped
    too_many = gantrix.Recipe("nonsaturating", "pac", "top-k:k=5").compose()
    batch, _, _ = _generator_batch(too_many, make_batch)
    too_many.hook.gantrix_prepare_batch(batch=batch)
    with pytest.raises(gantrix.GantrixError, match="k=5 is more than the 4 fakes"):
        too_many.hook.gantrix_generator_loss(batch=batch)


def test_top_k_trains_on_ring8():
    trainer = gantrix.Trainer(["nonsaturating", "top-k:gamma=0.5,every=1"], "ring8", steps=3,
                              **POINTS).fit()
    assert trainer.step == 3
    assert all(math.isfinite(row["g_loss"]) for row in trainer.history)


# --------------------------------------------------------------------------- both


@pytest.mark.parametrize("trick, params, message", [
    ("ada", dict(speed=0), "ada: parameter 'speed' got 0; allowed: int in [1, 100000000]"),
    ("ada", dict(target=1.0), "ada: parameter 'target' got 1.0; allowed: finite float in [0, 1)"),
    ("ada", dict(max_p=0.0), "ada: parameter 'max_p' got 0.0; allowed: finite float in (0, 1]"),
    ("ada", dict(p=0.9, max_p=0.8), "ada: parameter 'p' got 0.9, above max_p=0.8"),
    ("ada", dict(policy="rotate"), "ada: parameter 'policy' got 'rotate'; allowed: augmentations "
                                   "joined by '+' from flip, translation, color, cutout"),
    ("top-k", dict(gamma=0.0), "top-k: parameter 'gamma' got 0.0; allowed: finite float in (0, 1]"),
    ("top-k", dict(nu=1.5), "top-k: parameter 'nu' got 1.5; allowed: finite float in (0, 1]"),
    ("top-k", dict(every=0), "top-k: parameter 'every' got 0; allowed: int in [1, 1000000]"),
    ("top-k", dict(k=0), "top-k: parameter 'k' got 0; allowed: int in [1, 1000000] or none"),
])
def test_bad_parameters_name_the_parameter_the_value_and_the_range(trick, params, message):
    with pytest.raises(gantrix.ParamError) as info:
        gantrix.make(trick, **params)
    assert message in str(info.value)


def test_both_only_train_and_document_themselves():
    tricks = gantrix.tricks()
    for name in ("ada", "top-k"):
        cls = tricks[name]
        assert not cls.samples() and cls.summary and cls.paper and cls.__doc__
        cls()  # the defaults are valid
    trick = gantrix.Recipe("nonsaturating", "top-k:0.9,every=10").compose().get("top-k")
    assert (trick.gamma, trick.every, trick.k) == (0.9, 10, None)


def test_ada_p_and_top_k_k_are_logged_with_the_losses():
    from gantrix.trainer import Trainer

    t = Trainer(["nonsaturating", "top-k:every=1,gamma=0.5"], "ring8", steps=3, batch_size=16,
                log_every=1, progress=False)
    t.fit()
    assert [row["top-k/k"] for row in t.history] == [16, 8, 8]  # floor: nu * 16
    t = Trainer(["nonsaturating", "ada:p=0.25"], "digits", steps=2, batch_size=8, log_every=1,
                progress=False)
    t.fit()
    assert all(0.0 <= row["ada/p"] <= 1.0 for row in t.history) and "ada/p" in t.history[0]
