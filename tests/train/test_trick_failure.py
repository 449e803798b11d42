"""A run whose trick raises inside a hook ends with an error naming the trick, its plugin,
the hook and the exception, after saving the checkpoint of the last completed step (the
steps since the last checkpoint replayed), and that checkpoint resumes, with the trick
mended, to the weights of a run that never failed, bit for bit. Also: memory that cannot
be allocated, a stop asked for in a step of many critic updates, and a second Ctrl-C."""
from __future__ import annotations

import os
import signal

import pytest
import torch

from gantrix import GantrixError, Regularizer, Param
from gantrix.checkpoint import load_checkpoint
from gantrix.hookspecs import hookimpl
from gantrix.step import OutOfMemory, TrickFailed
from gantrix.trainer import Trainer, TrainingInterrupted

SMALL = dict(batch_size=16, latent_dim=2, sample_every=0, log_every=2, checkpoint_every=4)
#: the generator update (0-based) whose term raises; None: the trick works
FAIL = {"at": None}


class Flaky(Regularizer):
    """A generator term that raises at one update: the critic's update of that step is
    already made when it fails."""

    name = "flaky"
    summary = "a term that fails at the update FAIL['at']"
    params = (Param("weight", float, 0.1, "the term's weight", low=0.0, high=1.0),)

    def g_term(self, batch):
        if batch.step == FAIL["at"]:
            raise RuntimeError("the flaky term broke")
        return self.weight * batch.fake.pow(2).mean()


class Signals(Regularizer):
    """Sends this process signals from inside a critic update, as ``timeout`` or a user's
    Ctrl-C would: ``SEND[update] = [signal, ...]``."""

    name = "signals"
    summary = "sends signals at given critic updates"

    def d_term(self, batch):
        for signum in SEND.get(batch.step, ()):
            os.kill(os.getpid(), signum)
        return None


SEND: dict[int, list[int]] = {}
RECIPE = ["nonsaturating", "flaky"]


@pytest.fixture(autouse=True)
def tricks(add_tricks):
    add_tricks(Flaky, Signals)
    FAIL["at"] = None
    SEND.clear()


def weights(trainer):
    return {f"{role}.{k}": v.clone() for role in ("generator", "discriminator")
            for k, v in getattr(trainer.models, role).state_dict().items()}


@pytest.mark.parametrize("fail_at, saved, replayed", [(6, 6, True), (4, 4, False)])
def test_a_failing_trick_saves_the_last_completed_step_which_resumes_exactly(
        tmp_path, fail_at, saved, replayed):
    whole = Trainer(RECIPE, "ring8", out=tmp_path / "whole", steps=12, **SMALL).fit()
    FAIL["at"] = fail_at  # fails in step fail_at + 1, after its critic update
    with pytest.raises(TrickFailed) as info:
        Trainer(RECIPE, "ring8", out=tmp_path / "broken", steps=12, **SMALL).fit()
    message = str(info.value)
    assert message.startswith(
        f"trick 'flaky' ({__name__}.Flaky, plugin tests) failed in gantrix_generator_terms at "
        f"training step {fail_at + 1}: RuntimeError: the flaky term broke; the checkpoint of "
        f"step {saved}, the last completed, is ")
    assert ("steps 5 to 6 replayed from the checkpoint of step 4" in message) == replayed
    assert message.endswith(f"once the trick is mended, continue with gantrix train --resume "
                            f"{tmp_path / 'broken'}")
    assert isinstance(info.value.__cause__, RuntimeError)  # the trick's own traceback
    assert load_checkpoint(tmp_path / "broken" / "checkpoint.pt")["step"] == saved
    FAIL["at"] = None
    resumed = Trainer.resume(tmp_path / "broken").fit()
    assert resumed.step == 12
    got, want = weights(resumed), weights(whole)
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_a_signal_during_the_replay_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    def fail_then_signal(self, batch):
        if batch.step == 6:
            SEND[4] = [signal.SIGTERM]  # the critic update of step 5, met again in the replay
            raise RuntimeError("the flaky term broke")
        return None

    monkeypatch.setattr(Flaky, "g_term", fail_then_signal)
    with pytest.raises(TrickFailed) as info:
        Trainer(RECIPE + ["signals"], "ring8", out=tmp_path / "run", steps=12, **SMALL).fit()
    assert str(info.value).endswith(
        f"at training step 7: RuntimeError: the flaky term broke; the checkpoint of step 4 is "
        f"kept in {tmp_path / 'run'} (the replay was stopped by a signal); once the trick is "
        f"mended, continue with gantrix train --resume {tmp_path / 'run'}")
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 4


def test_without_a_run_folder_nothing_is_saved_and_it_says_so():
    FAIL["at"] = 2
    with pytest.raises(TrickFailed, match=r"failed in gantrix_generator_terms at training step "
                                          r"3: .*; nothing was saved \(no run folder\)"):
        Trainer(RECIPE, "ring8", steps=6, **SMALL).fit()


def test_the_cli_prints_the_failure_as_one_error(tmp_path):
    from typer.testing import CliRunner

    from gantrix.cli.app import create_app

    FAIL["at"] = 6
    result = CliRunner().invoke(create_app(), [
        "train", "-t", "nonsaturating", "-t", "flaky", "--data", "ring8", "--steps", "12",
        "--batch-size", "16", "--checkpoint-every", "4", "--sample-every", "0", "--quiet",
        "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "Traceback" not in result.output and result.stdout.count("\n") <= 2
    lines = result.stderr.splitlines()
    assert lines[-2] == ("trick 'flaky' failed in step 7: replaying steps 5 to 6 from the "
                         "checkpoint of step 4 to save step 6")
    assert lines[-1].startswith("error: trick 'flaky' (")
    assert lines[-1].endswith(f"gantrix train --resume {tmp_path / 'run'}")


def test_a_core_error_is_not_blamed_on_a_trick(monkeypatch):
    trainer = Trainer(RECIPE, "ring8", steps=4, **SMALL)

    def broken():
        raise ValueError("the data broke")

    monkeypatch.setattr(trainer, "_pull", broken)
    with pytest.raises(ValueError, match="the data broke"):
        trainer.fit()


def test_a_batch_that_cannot_be_allocated_says_what_it_takes():
    with pytest.raises(OutOfMemory, match=r"a batch of 2147483647 samples of shape \(1, 8, 8\) "
                                          r"needs more memory than this machine can give: the "
                                          r"real and fake samples alone take 1024 GiB"):
        Trainer(["minimax"], "digits", steps=1, batch_size=2**31 - 1)


def test_a_model_that_cannot_be_allocated_says_what_it_takes():
    with pytest.raises(OutOfMemory, match=r"the generator for data of shape \(2,\) cannot be "
                                          r"built: its parameters alone take [\d.]+ [GT]iB, more "
                                          r"than this machine can give; lower --latent-dim "
                                          r"\(1073741824\)"):
        Trainer(["minimax"], "ring8", steps=1, latent_dim=2**30)


def test_a_stop_is_acted_on_between_critic_updates(tmp_path, monkeypatch):
    from gantrix import run_control

    monkeypatch.setattr(run_control, "STOP_GRACE", 0.0)
    SEND[7] = [signal.SIGTERM]  # in step 2 of 100 critic updates each
    with pytest.raises(TrainingInterrupted) as info:
        Trainer(["nonsaturating", "n-critic:100", "signals"], "ring8", out=tmp_path / "run",
                steps=5, **SMALL).fit()
    assert info.value.exit_code == 128 + signal.SIGTERM
    assert str(info.value) == (
        f"interrupted by SIGTERM in the middle of training step 1, after 8 of its 100 critic "
        f"updates: the step is dropped; the last checkpoint (step 0) is kept in "
        f"{tmp_path / 'run'}; continue with gantrix train --resume {tmp_path / 'run'}")


def test_a_short_step_still_ends_and_is_checkpointed_on_a_stop(tmp_path):
    SEND[2] = [signal.SIGTERM]
    with pytest.raises(TrainingInterrupted, match="checkpoint saved at step 3"):
        Trainer(["nonsaturating", "signals"], "ring8", out=tmp_path / "run", steps=8,
                **SMALL).fit()


def test_a_second_ctrl_c_stops_at_once_saying_which_checkpoint_is_kept(tmp_path):
    SEND[5] = [signal.SIGINT, signal.SIGINT]
    with pytest.raises(TrainingInterrupted) as info:
        Trainer(["nonsaturating", "signals"], "ring8", out=tmp_path / "run", steps=8,
                **SMALL).fit()
    assert info.value.exit_code == 130
    assert str(info.value) == (
        f"stopped at once by a second SIGINT: the last checkpoint (step 4) is kept in "
        f"{tmp_path / 'run'}; continue with gantrix train --resume {tmp_path / 'run'}")


def test_ctrl_c_while_the_cli_starts_is_one_line_and_status_130(monkeypatch, capsys):
    from gantrix.cli import app

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(app, "create_app", interrupted)
    with pytest.raises(SystemExit) as info:
        app.main()
    assert info.value.code == 130
    assert capsys.readouterr().err == "gantrix: interrupted while starting\n"


def test_trick_failed_is_a_user_facing_error():
    assert issubclass(TrickFailed, GantrixError) and issubclass(OutOfMemory, GantrixError)


def test_failed_hook_names_the_innermost_plugin_and_its_hook():
    import pluggy

    from gantrix import hookspecs
    from gantrix.hookspecs import failed_hook

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)

    class Outer:
        @hookimpl
        def gantrix_log_values(self):  # calls another hook through the core, as tricks do
            return pm.hook.gantrix_state_dict()

    class Inner:
        @hookimpl
        def gantrix_state_dict(self):
            raise KeyError("inner broke")

    outer, inner = Outer(), Inner()
    pm.register(outer)
    pm.register(inner)
    with pytest.raises(KeyError) as info:
        pm.hook.gantrix_log_values()
    assert failed_hook(info.value, [outer, inner]) == (inner, "gantrix_state_dict")
    assert failed_hook(info.value, [outer]) == (outer, "gantrix_log_values")
    assert failed_hook(info.value, []) is None


class BrokenBuild(Regularizer):
    """Fails where the run is set up: building or transforming a model, or conditioning the
    probe's batch."""

    name = "broken-build"
    summary = "fails in gantrix_build_model or gantrix_condition"
    params = (Param("where", str, "build", "which hook fails",
                    choices=("build", "transform", "condition")),)

    @hookimpl
    def gantrix_build_model(self, role, spec):
        if self.where == "build":
            raise ValueError(f"no {role} for you")

    @hookimpl
    def gantrix_transform_model(self, model):
        if self.where == "transform":
            return model.no_such_layer

    @hookimpl
    def gantrix_condition(self, batch):
        if self.where == "condition":
            raise ValueError("no labels for you")


@pytest.mark.parametrize("where, hook, words", [
    ("build", "gantrix_build_model", "ValueError: no generator for you"),
    ("transform", "gantrix_transform_model", "AttributeError: 'VectorGenerator' object has no "
                                             "attribute 'no_such_layer'"),
    ("condition", "gantrix_condition", "ValueError: no labels for you")])
def test_a_trick_failing_before_training_is_named_too(add_tricks, tmp_path, where, hook, words):
    add_tricks(BrokenBuild)
    with pytest.raises(TrickFailed) as info:
        Trainer(["nonsaturating", f"broken-build:where={where}"], "ring8",
                out=tmp_path / "run", steps=2, **SMALL)
    assert str(info.value) == (f"trick 'broken-build' ({__name__}.BrokenBuild, plugin tests) "
                               f"failed in {hook} before training: {words}")
    assert not (tmp_path / "run").exists()


class NoisyLog(Regularizer):
    """Publishes a log value that fails at the log line of step ``LOG_FAILS_AT``."""

    name = "noisy-log"
    summary = "a log value that raises at one log line"

    def __init__(self, **config):
        super().__init__(**config)
        self.lines = 0

    @hookimpl
    def gantrix_log_values(self):
        self.lines += 1
        if self.lines == 3:
            raise ValueError("cannot format the value")
        return {"noisy": 1.0}


def test_a_trick_failing_at_a_log_line_is_named_with_the_checkpoint_kept(add_tricks, tmp_path):
    """Outside the step too (log lines, checkpoints, pictures): the trick, its hook, and
    the last checkpoint, which is whole."""
    add_tricks(NoisyLog)
    out = tmp_path / "run"
    trainer = Trainer(["nonsaturating", "noisy-log"], "ring8", out=out, steps=20,
                      progress=False, **SMALL)
    with pytest.raises(TrickFailed) as caught:
        trainer.fit()
    message = str(caught.value)
    assert "trick 'noisy-log'" in message and "gantrix_log_values" in message
    assert "at training step 6" in message and "ValueError: cannot format the value" in message
    assert f"the last checkpoint (step 4) is kept in {out}" in message
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4
