"""Mixed precision: bf16 and fp16 autocast, fp16's loss scalers, input-gradient penalties
taken from the scaled output and unscaled before the norm, skipped overflowing updates, and
the scalers' state in checkpoints. All on CPU (autocast and GradScaler have CPU devices)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from gantrix import Trainer, kernels
from gantrix import precision as precision_mod
from gantrix.batch import Batch
from gantrix.trainer import TrainingDiverged

SMALL = dict(batch_size=16, latent_dim=2, width=16, log_every=1, sample_every=0)


def _small_gradient_critic() -> nn.Module:
    """Three linear layers of weights ±1e-3: its input gradient is about 1e-7 per input,
    below float16's normal range (6e-5), so float16 backward passes lose it unless the
    output is scaled first."""
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 1))
    with torch.no_grad():
        for layer in critic:
            layer.weight.copy_(torch.randint(0, 2, layer.weight.shape).float().mul(2).sub(1) * 1e-3)
    return critic


def _gradient(critic, x, scale, dtype):
    batch = Batch(real=x, critic=critic, phase="discriminator", step=0)
    batch.grad_scale = scale
    x = x.detach().requires_grad_(True)
    with torch.autocast("cpu", dtype=dtype):
        out = critic(x)
    return batch.input_gradient(out, x)


def test_fp16_input_gradient_is_taken_scaled_and_unscaled_before_the_norm():
    critic = _small_gradient_critic()
    x = torch.randn(6, 4)
    x_ref = x.clone().requires_grad_(True)
    (reference,) = torch.autograd.grad(critic(x_ref).sum(), x_ref)
    assert reference.abs().max() < 1e-6  # the regime where float16 underflows
    scaled = _gradient(critic, x, 2.0 ** 14, torch.float16)
    assert scaled.dtype == torch.float32
    torch.testing.assert_close(scaled, reference, rtol=2e-3, atol=0)
    plain = _gradient(critic, x, None, torch.float16)  # what a penalty saw without scaling
    assert (plain - reference).abs().max() > 0.1 * reference.abs().max()
    # the penalty on it matches float32's (a missing unscale would be 2^32 times larger)
    penalty = kernels.grad_norm_penalty(scaled, center=0.0, weight=1.0)
    expected = reference.pow(2).sum(1).mean()
    torch.testing.assert_close(penalty, expected, rtol=5e-3, atol=0)


def test_gradient_penalty_at_interpolates_takes_the_scale():
    critic = _small_gradient_critic()
    real, fake = torch.randn(5, 4), torch.randn(5, 4)
    eps = torch.rand(5)
    expected = kernels.gradient_penalty(critic, real, fake, eps=eps, center=0.0, weight=1e6)
    expected = expected.detach()
    with torch.autocast("cpu", dtype=torch.float16):
        got = kernels.gradient_penalty(critic, real, fake, eps=eps, center=0.0, weight=1e6,
                                       grad_scale=2.0 ** 14)
        unscaled = kernels.gradient_penalty(critic, real, fake, eps=eps, center=0.0, weight=1e6).detach()
    torch.testing.assert_close(got.detach(), expected, rtol=5e-3, atol=0)
    assert abs(unscaled.item() - expected.item()) > 0.1 * expected.item()


@pytest.mark.parametrize("recipe", [["wgan-gp"], ["nonsaturating", "r1"]])
@pytest.mark.parametrize("mode", ["bf16", "fp16"])
def test_half_precision_steps_agree_with_fp32(recipe, mode, monkeypatch):
    """The first step's losses and penalty in bf16/fp16 against fp32 (same seed, same
    batches): within the half type's precision (bf16 has 8 bits of mantissa, fp16 11). The
    fp16 scale starts where this step does not overflow (at GradScaler's 2^16 the first
    update is skipped and the scale halved, as the test below shows)."""
    monkeypatch.setattr(precision_mod, "INIT_SCALE", 2.0 ** 10)
    rows = {}
    for p in ("fp32", mode):
        trainer = Trainer(recipe, "ring8", steps=1, precision=p, **SMALL).fit()
        rows[p] = trainer.history[0]
    tolerance = 0.05 if mode == "bf16" else 0.01
    keys = [k for k in rows["fp32"] if k.startswith(("d_", "g_", "d/"))]
    assert keys
    for key in keys:
        assert rows[mode][key] == pytest.approx(rows["fp32"][key], rel=tolerance, abs=1e-3), key


def test_overflowing_updates_are_skipped_and_the_run_goes_on(monkeypatch):
    monkeypatch.setattr(precision_mod, "INIT_SCALE", 2.0 ** 40)  # fp16 gradients overflow
    trainer = Trainer(["wgan", "gradient-penalty"], "ring8", steps=30, precision="fp16", **SMALL)
    trainer.fit()
    scales = {role: s.get_scale() for role, s in trainer.stepper.precision.scalers.items()}
    assert all(scale < 2.0 ** 40 for scale in scales.values()), scales
    assert trainer.stepper.skipped_steps == 0  # settled at a scale that fits
    assert trainer.history[-1]["step"] == 30
    assert all(torch.isfinite(p).all() for p in trainer.models.generator.parameters())


def test_updates_never_finite_stop_the_run_as_diverged(monkeypatch):
    monkeypatch.setattr(precision_mod, "INIT_SCALE", 2.0 ** 40)
    monkeypatch.setattr("gantrix.trainer.MAX_SKIPPED_STEPS", 4)
    trainer = Trainer(["wgan", "gradient-penalty"], "ring8", steps=30, precision="fp16", **SMALL)
    with pytest.raises(TrainingDiverged, match="fp16 loss scaler skipped an update in each of the last 4"):
        trainer.fit()


def test_fp16_resume_restores_the_loss_scales(tmp_path, monkeypatch):
    monkeypatch.setattr(precision_mod, "INIT_SCALE", 2.0 ** 24)  # a few skipped steps first
    options = dict(precision="fp16", checkpoint_every=6, **SMALL)
    whole = Trainer(["wgan", "gradient-penalty"], "ring8", out=tmp_path / "whole", steps=12, **options).fit()
    Trainer(["wgan", "gradient-penalty"], "ring8", out=tmp_path / "half", steps=6, **options).fit()
    resumed = Trainer.resume(tmp_path / "half", steps=12)
    assert resumed.settings.precision == "fp16"
    assert resumed.stepper.precision.grad_scale("discriminator") < 2.0 ** 24
    resumed.fit()
    for role in ("generator", "discriminator"):
        for (name, a), b in zip(whole.models.by_role(role).state_dict().items(),
                                resumed.models.by_role(role).state_dict().values()):
            assert torch.equal(a, b), (role, name)


def test_precision_is_checked_and_kept_on_resume(cli, tmp_path, tiny):
    result = cli("train", "--trick", "nonsaturating", *tiny, "--precision", "fp64", "--out", tmp_path / "r")
    assert result.exit_code == 2 and "precision" in result.stderr and "'bf16'" in result.stderr
    result = cli("train", "--trick", "nonsaturating", *tiny, "--precision", "bf16", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert 'precision = "bf16"' in (tmp_path / "r" / "config.toml").read_text()
    result = cli("train", "--resume", tmp_path / "r", "--precision", "fp32")
    assert result.exit_code == 2 and "drop --precision" in result.stderr
