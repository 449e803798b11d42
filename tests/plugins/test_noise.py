"""Label smoothing's identity, the instance-noise schedule, and DiffAugment's ops."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import gantrix


@pytest.mark.parametrize("target", [0.9, 0.7])
def test_label_smoothing_turns_the_real_term_into_bce_with_target_t(target, make_batch):
    r = (torch.randn(64, dtype=torch.float64) * 2).requires_grad_()
    f = torch.randn(64, dtype=torch.float64).requires_grad_()
    batch = make_batch(r, f, lambda x: x)  # the identity critic: the samples are the logits
    smoothed = gantrix.make("nonsaturating").d_loss(r, f) + \
        gantrix.make("label-smoothing", target=target).d_term(batch)
    pr, pf = torch.sigmoid(r), torch.sigmoid(f)
    want = F.binary_cross_entropy(pr, torch.full_like(pr, target)) + \
        F.binary_cross_entropy(pf, torch.zeros_like(pf))
    torch.testing.assert_close(smoothed, want, rtol=1e-10, atol=0)
    for g, w in zip(torch.autograd.grad(smoothed, (r, f)), torch.autograd.grad(want, (r, f))):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-15)


def test_label_smoothing_needs_a_bce_loss():
    errors = [f for f in gantrix.Recipe(recipe="wgan").extend(["label-smoothing"]).check()
              if f.severity == "error"]
    assert len(errors) == 1 and "requires bce-real-term" in errors[0].message
    assert "nonsaturating" in errors[0].message  # the hint names a loss that provides it
    assert not [f for f in gantrix.Recipe("nonsaturating", "label-smoothing").check()
                if f.severity == "error"]


def test_label_smoothing_is_never_lazy(composed):
    step, data = composed("nonsaturating", "r1", "label-smoothing", "lazy-regularization:every=4")
    outs = [step.discriminator_step(*data()) for _ in range(2)]
    assert "d/label-smoothing" in outs[1] and "d/r1" not in outs[1]


def test_instance_noise_schedule():
    trick = gantrix.make("instance-noise", sigma=0.2, anneal_steps=100)
    assert [trick.sigma_at(s) for s in (0, 25, 50, 100, 150)] == pytest.approx([0.2, 0.15, 0.1, 0, 0])
    constant = gantrix.make("instance-noise", sigma=0.2, anneal_steps=0)
    assert constant.sigma_at(10**6) == 0.2


def test_instance_noise_adds_gaussian_noise_to_both_sides(make_batch):
    trick = gantrix.make("instance-noise", sigma=0.3, anneal_steps=10)
    real = torch.zeros(20000, 2)
    fake = torch.ones(20000, 2, requires_grad=True)
    batch = make_batch(real, fake * 1, None, phase="generator")
    trick.gantrix_prepare_batch(batch=batch)
    for x, mean in ((batch.real, 0.0), (batch.fake, 1.0)):
        assert x.mean().item() == pytest.approx(mean, abs=0.01)
        assert x.std().item() == pytest.approx(0.3, rel=0.02)
    (grad,) = torch.autograd.grad(batch.fake.sum(), fake)  # the generator still gets gradients
    assert torch.equal(grad, torch.ones_like(fake))

    trick.gantrix_after_generator_step(models=None, step=4)  # 5 updates done: sigma halves
    batch = make_batch(real, fake, None)
    trick.gantrix_prepare_batch(batch=batch)
    assert batch.real.std().item() == pytest.approx(0.15, rel=0.02)
    trick.gantrix_after_generator_step(models=None, step=9)  # annealed away: untouched
    batch = make_batch(real, fake, None)
    trick.gantrix_prepare_batch(batch=batch)
    assert batch.real is real and batch.fake is fake


def test_instance_noise_progress_is_checkpointed():
    trick = gantrix.make("instance-noise")
    trick.gantrix_after_generator_step(models=None, step=41)
    restored = gantrix.make("instance-noise")
    restored.gantrix_load_state_dict(state=trick.gantrix_state_dict())
    assert restored.progress == 42


def _image(n=16, c=3, h=8, w=8):
    return torch.rand(n, c, h, w, dtype=torch.float64) + 0.5  # no zero pixels


def test_diffaugment_translation_shifts_and_zero_fills():
    x = _image()
    out = gantrix.make("diffaugment", policy="translation").augment(x)
    for b in range(x.shape[0]):
        matches = []
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                shifted = torch.zeros_like(x[b])
                src = x[b, :, max(0, -dy):8 - max(0, dy), max(0, -dx):8 - max(0, dx)]
                shifted[:, max(0, dy):8 - max(0, -dy), max(0, dx):8 - max(0, -dx)] = src
                matches.append(torch.equal(out[b], shifted))
        assert sum(matches) == 1  # a shift of at most 8/8 = 1 pixel, zero-filled


def test_diffaugment_cutout_zeroes_one_rectangle_of_at_most_a_quarter():
    x = _image(n=64)
    out = gantrix.make("diffaugment", policy="cutout").augment(x)
    zero = out == 0
    assert torch.equal(out[~zero], x[~zero])
    assert torch.equal(zero, zero[:, :1].expand_as(zero))  # the same pixels in every channel
    per_image = zero[:, 0].flatten(1).sum(1)
    assert per_image.max() == 16 and per_image.min() > 0  # a 4x4 box, clipped at borders
    rows, cols = zero[:, 0].any(2), zero[:, 0].any(1)
    assert torch.equal(per_image, rows.sum(1) * cols.sum(1))  # a rectangle


def test_diffaugment_color_only_shifts_a_gray_image():
    x = torch.rand(32, 1, 1, 1, dtype=torch.float64).expand(32, 3, 4, 4).contiguous()
    out = gantrix.make("diffaugment", policy="color").augment(x)
    shift = out - x
    assert torch.allclose(shift, shift[:, :1, :1, :1].expand_as(shift))  # one brightness per image
    assert shift.abs().max() <= 0.5 and shift.std() > 0.1


def test_diffaugment_is_differentiable_and_runs_in_both_phases(make_batch):
    trick = gantrix.make("diffaugment")
    assert trick.policy == "color+translation+cutout"
    fake = _image().requires_grad_()
    batch = make_batch(_image(), fake * 1, None, phase="generator")
    trick.gantrix_prepare_batch(batch=batch)
    (grad,) = torch.autograd.grad(batch.fake.sum(), fake)
    assert grad.abs().sum() > 0 and batch.real.shape == fake.shape


def test_diffaugment_policy_is_checked_and_normalised():
    assert gantrix.make("diffaugment", policy="cutout, color").policy == "cutout+color"
    assert gantrix.Recipe("nonsaturating", "diffaugment:policy=color+cutout").compose() \
        .get("diffaugment").ops[1].__name__ == "cutout"
    with pytest.raises(gantrix.ParamError, match="'policy' got 'rotate'"):
        gantrix.make("diffaugment", policy="rotate")


def test_diffaugment_on_vector_data_is_an_error():
    composition = gantrix.Recipe("nonsaturating", "diffaugment").compose()
    with pytest.raises(gantrix.CompositionError, match="augments images"):
        gantrix.build_models(composition, gantrix.ModelSpec(shape=(2,), latent_dim=4))
