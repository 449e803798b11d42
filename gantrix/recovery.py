"""What a training run does when one of its steps cannot finish.

A step updates the models in place, update by update, so a step that fails half-way leaves
them in a state no run ever reaches: it is never checkpointed. What can be kept is the last
*completed* step. Copying the models, optimizers and random streams before every step would
make that free to restore, at the cost of a copy of everything each step (and, on a GPU,
memory for a second set). Instead nothing is done while steps succeed, and on a failure the
last completed step is rebuilt: the run is deterministic (a resumed run is bit for bit the
uninterrupted one), so loading the last checkpoint and replaying the steps after it, up to
the one that failed, gives exactly the state the run had when that step began. That costs
at most ``checkpoint_every - 1`` steps, once, when a trick has already ended the run.

- A trick that raises inside a hook (`gantrix.step.TrickFailed`): the checkpoint of the last
  completed step is written (replayed as above when the last checkpoint is older), and the
  error names the trick, its plugin, the hook, its exception, and the command to continue.
  A replay that fails as well (a trick that fails at random) keeps the last checkpoint as it
  was; a distributed run keeps its last checkpoint (its processes would have to replay
  together).
- Memory that cannot be allocated (`gantrix.step.OutOfMemory`): the last checkpoint is kept
  (a replay would need the same memory) and the error says so.
- A stop asked for by a signal during a step of many critic updates
  (`gantrix.step.StepAbandoned`): the step is dropped, the last checkpoint kept, and the run
  ends as an interrupted run does (`TrainingInterrupted`, exit status 128 + signal).
"""
from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING

from . import distributed
from .errors import GantrixError
from .hookspecs import failed_hook
from .run_folder import CHECKPOINT
from .run_control import TrainingInterrupted
from .run_state import load_checkpoint, load_weights
from .step import OutOfMemory, StepAbandoned, TrickFailed

if TYPE_CHECKING:
    from .trainer import Trainer


def train_step(trainer: "Trainer") -> dict:
    """One training step of ``trainer`` (`gantrix.step.ComposedStep.step` on its data), or
    the error that ends its run, after keeping what can be kept (see the module)."""
    try:
        return trainer.stepper.step(trainer._pull)
    except TrickFailed as exc:
        kept = save_last_completed(trainer, exc)
        raise TrickFailed(exc.trick, exc.hook, exc.step, exc.error, f"; {kept}") from exc.error
    except OutOfMemory as exc:
        raise OutOfMemory(f"{exc}; {trainer._kept()}") from None
    except StepAbandoned as exc:
        signum = trainer._stop or signal.SIGTERM
        raise TrainingInterrupted(
            f"interrupted by {signal.Signals(signum).name} in the middle of training step "
            f"{exc.step}, after {exc.done} of its {exc.total} critic updates: the step is "
            f"dropped; {trainer._kept()}", signum) from None


def blame(trainer: "Trainer", exc: Exception) -> Exception:
    """What ends the run for ``exc``, raised outside a step (at a log line, a checkpoint, a
    picture): a `TrickFailed` naming the trick, its hook and the checkpoint kept when a
    trick raised it; ``exc`` itself otherwise."""
    if isinstance(exc, GantrixError):
        return exc
    failed = failed_hook(exc, trainer.composition.pm.get_plugins())
    if failed is None:
        return exc
    error = TrickFailed(*failed, trainer.step, exc, f"; {trainer._kept()}")
    error.__cause__ = exc
    return error


def save_last_completed(trainer: "Trainer", failure: TrickFailed) -> str:
    """Write the checkpoint of ``trainer``'s last completed step after a trick failed in the
    next one (``failure``), replaying from the last checkpoint when it is older; returns
    where it is and how to continue, for the error's message."""
    done, last, out = trainer.step, trainer._last_checkpoint, trainer.out
    if out is None or last is None:
        return ("nothing was saved (no run folder); the models hold a partly done step: "
                "build a new Trainer to train again")
    how = f"once the trick is mended, continue with gantrix train --resume {out}"
    if last == done:
        return f"the checkpoint of step {done}, the last completed, is kept in {out}; {how}"
    if not trainer.writer or distributed.world_size() > 1:
        return f"{trainer._kept()} (a distributed run is not replayed to step {done})"
    sys.stderr.write(f"trick {failure.trick.name!r} failed in step {failure.step}: replaying "
                     f"steps {last + 1} to {done} from the checkpoint of step {last} to save "
                     f"step {done}\n")
    try:
        replayed = replay(trainer, done)
    except Exception as exc:  # the failure came back sooner: keep what is on disk
        return (f"the checkpoint of step {last} is kept in {out} (replaying the steps after "
                f"it failed too: {type(exc).__name__}: {str(exc).strip()}); {how}")
    if not replayed:
        return (f"the checkpoint of step {last} is kept in {out} (the replay was stopped by "
                f"a signal); {how}")
    trainer._last_checkpoint = done
    return (f"the checkpoint of step {done}, the last completed, is saved in {out} (steps "
            f"{last + 1} to {done} replayed from the checkpoint of step {last}); {how}")


def replay(trainer: "Trainer", done: int) -> bool:
    """Load ``trainer``'s last checkpoint into it (what training needs: models, optimizers,
    loss scalers, tricks' state, data order, random streams, update counters; not the
    metrics tally, timings or evaluation state, which are already those of step ``done``),
    run its steps up to ``done`` again, and write the checkpoint; False, writing nothing,
    when Ctrl-C or SIGTERM asks to stop meanwhile. Called inside `fit`, where the run owns
    torch's global random state and its signals."""
    state = load_checkpoint(trainer.out / CHECKPOINT)
    trainer._batches.close()  # no batch read ahead (`gantrix.prefetch`) while the data loads
    load_weights(trainer, state)
    trainer.composition.hook.gantrix_load_state_dict(state=state["tricks"], models=trainer.models)
    trainer._rng.load_owned(state["rng"])
    stepper = trainer.stepper
    stepper.steps, stepper.d_steps = int(state["step"]), int(state["d_steps"])
    stepper.g_steps = int(state.get("g_steps", state["step"]))
    while stepper.steps < done:
        if trainer._stop is not None:
            return False
        stepper.step(trainer._pull)
    trainer.save_checkpoint()
    return True
