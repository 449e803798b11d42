"""The Python API: exact resume, divergence and interruption handling, random state, the
user's own models, EMA sampling."""
from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from torch import nn

from gantrix import Loss, Policy, Trainer, hookimpl
from gantrix.registry import catalogue
from gantrix.trainer import TrainingDiverged, TrainingInterrupted

#: a composition that uses every random stream: latents, batches, and the global generator
#: (gradient-penalty's interpolation weights), with critic steps and trick state (EMA).
RANDOM_RECIPE = ["wgan", "gradient-penalty", "n-critic:2", "ema:decay=0.9"]
SMALL = dict(batch_size=16, latent_dim=4, log_every=5, sample_every=0)


def _params(trainer):
    out = {}
    for role in ("generator", "discriminator"):
        for key, value in trainer.models.by_role(role).state_dict().items():
            out[f"{role}.{key}"] = value.clone()
    out.update({f"ema.{k}": v.clone() for k, v in trainer.sampler.state_dict().items()})
    return out


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _rows(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("step_time", "elapsed")} for r in rows]


def test_resume_equals_an_uninterrupted_run(tmp_path):
    whole = Trainer(RANDOM_RECIPE, "ring8", out=tmp_path / "whole", steps=20,
                    checkpoint_every=7, **SMALL).fit()
    half = Trainer(RANDOM_RECIPE, "ring8", out=tmp_path / "half", steps=10,
                   checkpoint_every=7, **SMALL).fit()
    assert half.step == 10
    resumed = Trainer.resume(tmp_path / "half", steps=20).fit()
    assert resumed.resumed_from == 10 and resumed.step == 20
    _assert_same(_params(whole), _params(resumed))
    _assert_same({k: v for k, v in whole.stepper.optimizers["generator"].state_dict()["state"][0].items()},
                 {k: v for k, v in resumed.stepper.optimizers["generator"].state_dict()["state"][0].items()})
    assert _rows(tmp_path / "whole") == _rows(tmp_path / "half")
    assert torch.equal(whole.sample(50), resumed.sample(50))


class _Crash(BaseException):
    """The process dying where it is (a kill, a power cut): nothing runs after it (a trick's
    ordinary exception is handled: tests/train/test_trick_failure.py)."""


class _CrashAt(Policy):
    """A test policy that crashes the run inside generator update ``at`` while armed."""

    name = "test-crash"
    summary = "test only"
    at = 11
    armed = True

    @hookimpl
    def gantrix_after_generator_step(self, models, step):
        if self.armed and step + 1 == self.at:
            raise _Crash("simulated crash")


def test_resume_after_a_crash_between_checkpoints(tmp_path, monkeypatch):
    """Crashed after writing metrics past its last checkpoint: resuming drops those lines
    and replays the same steps (the half-done metrics interval is in the checkpoint, and the
    learning-rate schedule follows the restored step)."""
    monkeypatch.setitem(catalogue().tricks, _CrashAt.name, _CrashAt)
    recipe = RANDOM_RECIPE + ["lr-decay", _CrashAt.name]
    run = tmp_path / "crashed"
    with pytest.raises(_Crash, match="simulated crash"):
        Trainer(recipe, "grid25", out=run, steps=12, checkpoint_every=4, **SMALL).fit()
    assert [r["step"] for r in _rows(run)] == [5, 10]
    monkeypatch.setattr(_CrashAt, "armed", False)
    whole = Trainer(recipe, "grid25", out=tmp_path / "whole", steps=12, **SMALL).fit()
    resumed = Trainer.resume(run)
    assert resumed.resumed_from == 8
    resumed.fit()
    _assert_same(_params(whole), _params(resumed))
    assert _rows(run) == _rows(tmp_path / "whole")


def test_a_recipes_table_for_the_data_at_hand(tmp_path):
    """wgan-gp's [points] table applies on 2-D data only, and the run folder records it."""
    ring = Trainer("wgan-gp", "ring8", out=tmp_path / "ring", steps=4, batch_size=16,
                   log_every=2, sample_every=0)
    specs = [t.spec() for t in ring.composition.tricks]
    assert "gradient-penalty:weight=0.1" in specs and "lr-decay" in specs
    assert ring.spec.latent_dim == 2 and ring.settings.batch_size == 16
    assert Trainer("wgan-gp", "ring8").settings.steps == 4000  # the table's, when not given
    digits = Trainer("wgan-gp", "digits", steps=1)
    assert "lr-decay" not in [t.name for t in digits.composition.tricks]
    assert digits.spec.latent_dim == 64 and digits.settings.batch_size == 64
    ring.fit()
    group = ring.stepper.optimizers["generator"].param_groups[0]
    assert group["lr"] == pytest.approx(1e-3 * (1 - 3 / 4))  # the last of 4 updates
    again = Trainer.resume(tmp_path / "ring")
    assert [t.spec() for t in again.composition.tricks] == specs
    assert again.spec.latent_dim == 2


def test_fit_does_not_disturb_the_callers_random_state():
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    Trainer(RANDOM_RECIPE, "ring8", steps=3, **SMALL).fit()
    assert torch.equal(before, torch.get_rng_state())


def test_same_seed_same_run_other_seed_other_run():
    a = Trainer(RANDOM_RECIPE, "ring8", steps=4, seed=3, **SMALL).fit()
    b = Trainer(RANDOM_RECIPE, "ring8", steps=4, seed=3, **SMALL).fit()
    c = Trainer(RANDOM_RECIPE, "ring8", steps=4, seed=4, **SMALL).fit()
    _assert_same(_params(a), _params(b))
    assert not torch.equal(a.sample(10), c.sample(10))


def test_sampling_uses_the_averaged_generator_after_loading(tmp_path):
    run = Trainer(RANDOM_RECIPE, "ring8", out=tmp_path / "r", steps=6, **SMALL).fit()
    ema = run.models.extra["generator_ema"]
    assert run.sampler is ema
    loaded = Trainer.load(tmp_path / "r")
    assert loaded.sampler is loaded.models.extra["generator_ema"]  # restored at load time
    _assert_same(ema.state_dict(), loaded.sampler.state_dict())
    assert torch.equal(run.sample(20), loaded.sample(20))


def test_users_own_models(tmp_path):
    g = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 2))

    class Critic(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))

        def forward(self, x):
            return self.net(x).squeeze(1)

    trainer = Trainer("nonsaturating", "ring8", generator=g, discriminator=Critic(),
                      latent_dim=3, steps=5, batch_size=8, out=tmp_path / "own").fit()
    assert trainer.models.generator is g and trainer.sample(7).shape == (7, 2)
    config = (tmp_path / "own" / "config.toml").read_text()
    assert "your own modules" in config and "Trainer.load(run, generator=" in config
    again = Trainer.load(tmp_path / "own", generator=nn.Sequential(nn.Linear(3, 16), nn.ReLU(),
                                                                   nn.Linear(16, 2)),
                         discriminator=Critic())
    assert torch.equal(again.sample(7), trainer.sample(7))
    # the models work at the data's unit scale; samples come back in the data's units
    with torch.no_grad():
        raw = g(torch.randn(7, 3, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(trainer.sample(7), raw * trainer.data.scale)
    assert trainer.data.scale == pytest.approx(2 ** 0.5, rel=2e-3)


def test_tensor_data_without_metrics(tmp_path):
    x = torch.randn(40, 3)
    trainer = Trainer("nonsaturating", x, steps=3, batch_size=8).fit()
    assert trainer.sample(5).shape == (5, 3)
    assert trainer.evaluate() == {"step": 3}


# --------------------------------------------------------------------------- divergence


class _NaNAt(Loss):
    """A test loss that becomes NaN at critic update ``at``."""

    name = "test-nan-loss"
    summary = "test only"
    at = 12

    def d_loss(self, real_logits, fake_logits):
        loss = fake_logits.mean() - real_logits.mean()
        return loss * float("nan") if self._step >= self.at else loss

    def g_loss(self, real_logits, fake_logits):
        return -fake_logits.mean()

    @hookimpl
    def gantrix_discriminator_loss(self, batch):
        self._step = batch.step
        return self.d_loss(batch.real_logits, batch.fake_logits)


@pytest.fixture
def nan_trick(monkeypatch):
    monkeypatch.setitem(catalogue().tricks, _NaNAt.name, _NaNAt)
    return _NaNAt.name


def test_nan_stops_naming_term_and_step_and_keeps_last_checkpoint(tmp_path, nan_trick):
    trainer = Trainer([nan_trick], "ring8", out=tmp_path / "r", steps=50, checkpoint_every=5,
                      **SMALL)
    with pytest.raises(TrainingDiverged, match=r"d_loss is nan at step 13.*step 10"):
        trainer.fit()
    state = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 10
    assert all(torch.isfinite(v).all() for v in state["models"]["generator"].values())


def test_nan_through_the_cli(cli, tmp_path, nan_trick):
    result = cli("train", "--trick", nan_trick, "--data", "ring8", "--steps", "30",
                 "--batch-size", "8", "--out", tmp_path / "r", "--quiet")
    assert result.exit_code == 2
    assert "d_loss is nan at step 13" in result.stderr and "Traceback" not in result.output


# --------------------------------------------------------------------------- signals


class _SignalAt(Policy):
    """A test policy that sends this process a signal after generator update ``at``."""

    name = "test-signal"
    summary = "test only"
    at = 7
    signum = signal.SIGINT

    @hookimpl
    def gantrix_after_generator_step(self, models, step):
        if step + 1 == self.at:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_a_checkpoint_and_stops(tmp_path, monkeypatch, signum, code):
    monkeypatch.setitem(catalogue().tricks, _SignalAt.name, _SignalAt)
    monkeypatch.setattr(_SignalAt, "signum", signum)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    trainer = Trainer(["nonsaturating", _SignalAt.name], "ring8", out=tmp_path / "r",
                      steps=40, checkpoint_every=0, **SMALL)
    with pytest.raises(TrainingInterrupted, match="checkpoint saved at step 7") as info:
        trainer.fit()
    assert info.value.exit_code == code
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    assert torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)["step"] == 7


@pytest.mark.parametrize("distributed_run", [False, True])
def test_a_distributed_process_leaving_with_an_error_ignores_the_launchers_sigterm(
        monkeypatch, distributed_run):
    """torchrun sends SIGTERM to the other processes as soon as one dies; the survivor is
    already leaving with "another process ... stopped" and must live to print it."""
    from gantrix import distributed

    trainer = Trainer("nonsaturating", "ring8", **SMALL)
    monkeypatch.setattr(distributed, "active", lambda: distributed_run)
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(RuntimeError, match="peer gone"), trainer._signals():
            raise RuntimeError("peer gone")
        expected = signal.SIG_IGN if distributed_run else before[0]
        assert signal.getsignal(signal.SIGTERM) == expected
        assert signal.getsignal(signal.SIGINT) == before[1]  # Ctrl-C as it was
    finally:
        signal.signal(signal.SIGTERM, before[0])


# --------------------------------------------------------------------------- progress


class _Stream:
    def __init__(self, tty):
        self.tty, self.text = tty, ""

    def isatty(self):
        return self.tty

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def test_progress_line_on_a_terminal_only():
    from gantrix.progress import Progress

    tty = _Stream(True)
    bar = Progress(100, stream=tty)
    bar.update(25, lambda: {"d_loss": 0.5, "g_loss": 1.25, "d/gradient-penalty": 0.1}, rate=50.0,
               force=True)
    bar.close()
    last = tty.text.split("\r")[-1]
    assert last.endswith("\n")
    assert "25/100" in last and "50.00step/s" in last and "<00:01" in last  # rate and eta
    assert "d_loss=0.5, g_loss=1.25" in last and "gradient-penalty" not in last
    pipe = _Stream(False)  # off a terminal: no bar; plain lines (tests/train/test_plain_progress.py)
    bar = Progress(100, stream=pipe)
    bar.update(25, lambda: {"d_loss": 0.5}, rate=50.0, force=True)
    bar.close()
    assert "\r" not in pipe.text and pipe.text.count("\n") == 1


def test_progress_reads_the_losses_only_when_it_redraws():
    from gantrix.progress import Progress

    tty = _Stream(True)
    bar = Progress(100, stream=tty)
    asked = []
    for step in range(1, 51):  # within 0.2 s: one redraw
        bar.update(step, lambda: asked.append(step) or {"d_loss": 0.5}, rate=50.0)
    assert asked == [1]
    bar.update(100, lambda: asked.append(100) or {"d_loss": 0.25}, rate=50.0)  # the end: drawn
    bar.close()
    assert asked == [1, 100] and "100/100" in tty.text.split("\r")[-1]


#: two generator updates per training step, from a uniform prior.
TWO_G_RECIPE = ["nonsaturating", "n-generator:2", "uniform-latent"]


def test_resume_with_several_generator_updates_per_step(tmp_path):
    whole = Trainer(TWO_G_RECIPE, "ring8", out=tmp_path / "whole", steps=8, **SMALL).fit()
    assert (whole.step, whole.stepper.d_steps, whole.stepper.g_steps) == (8, 8, 16)
    Trainer(TWO_G_RECIPE, "ring8", out=tmp_path / "half", steps=4, **SMALL).fit()
    resumed = Trainer.resume(tmp_path / "half", steps=8).fit()
    assert (resumed.step, resumed.stepper.g_steps) == (8, 16)
    _assert_same(_params(whole), _params(resumed))
    assert torch.equal(whole.sample(50), resumed.sample(50))


def test_a_checkpoint_without_a_generator_update_count_resumes(tmp_path):
    """Checkpoints written before `n-generator` existed hold one generator update a step."""
    run = Trainer(["nonsaturating"], "ring8", out=tmp_path / "r", steps=4, **SMALL).fit()
    state = run.state_dict()
    del state["g_steps"]
    other = Trainer(["nonsaturating"], "ring8", out=tmp_path / "o", steps=4, **SMALL)
    other._restore(state)
    assert (other.step, other.stepper.d_steps, other.stepper.g_steps) == (4, 4, 4)


class _Echo(nn.Module):
    """A generator that returns its latent vector: what `sample` feeds it, made visible."""

    def forward(self, z, **inputs):
        return z


def test_samples_are_drawn_from_the_prior_the_run_trained_on(tmp_path):
    run = Trainer(["nonsaturating", "uniform-latent:bound=0.5"], "ring8", out=tmp_path / "r",
                  steps=2, batch_size=16, latent_dim=2, log_every=5, sample_every=0).fit()
    run.models.generator = _Echo()
    z = run.sample(4000) / run.data.scale
    assert z.abs().max() <= 0.5 and z.abs().max() > 0.49  # the cube, filled to its faces
    assert z.var().item() == pytest.approx(0.25 / 3, rel=0.05)
