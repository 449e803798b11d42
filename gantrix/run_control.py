"""What a training loop owns while it runs: its random state, swapped into torch's global
generators and back, and the signals that ask it to stop.

Reproducibility: a run's global random stream (used by tricks: interpolation weights,
noise, augmentations) is its own, checkpointed with it, so a resumed run draws what the
uninterrupted run would have drawn, and a notebook's own random state is left as it was.
"""
from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Callable, Iterator

import torch

from . import distributed
from .errors import GantrixError


class TrainingInterrupted(GantrixError):
    """The run was stopped by a signal (after saving a checkpoint, or at once by a second
    one: the message says which checkpoint is kept); ``exit_code`` is 128+signal. (Also
    importable from `gantrix.trainer`, where `fit` raises it.)"""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class RunRandomState:
    """A run's global random state: the CPU generator's and, on CUDA, its device's."""

    def __init__(self, cpu: torch.Tensor, device: torch.device, seed: int):
        self.cpu = cpu
        self.device = device
        self.cuda: torch.Tensor | None = None
        if device.type == "cuda":
            with torch.random.fork_rng(devices=[device]):
                torch.cuda.manual_seed(seed)
                self.cuda = torch.cuda.get_rng_state(device)

    def load(self, saved: dict[str, torch.Tensor]) -> None:
        """Take the state a checkpoint recorded (`state_dict`'s ``torch`` and ``cuda``)."""
        self.cpu = saved["torch"]
        if self.cuda is not None and "cuda" in saved:
            self.cuda = saved["cuda"]

    def load_owned(self, saved: dict[str, torch.Tensor]) -> None:
        """`load`, while the run owns torch's global generators (inside `owned`): they take
        the recorded state at once."""
        self.load(saved)
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)

    @staticmethod
    def state_dict(device: torch.device) -> dict[str, torch.Tensor]:
        """The global state now (called while a run owns it)."""
        state = {"torch": torch.get_rng_state()}
        if device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(device)
        return state

    @contextlib.contextmanager
    def owned(self) -> Iterator[None]:
        """Swap this state into torch's global generator(s), and back when done."""
        outer = torch.get_rng_state()
        outer_cuda = torch.cuda.get_rng_state(self.device) if self.cuda is not None else None
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)
        try:
            yield
        finally:
            self.cpu = torch.get_rng_state()
            torch.set_rng_state(outer)
            if outer_cuda is not None:
                self.cuda = torch.cuda.get_rng_state(self.device)
                torch.cuda.set_rng_state(outer_cuda, self.device)


#: how long a step may go on after a stop was asked for before it is abandoned between two
#: critic updates (`stop_overdue`): a step of the usual few updates ends well within it (and
#: is checkpointed), one of thousands does not.
STOP_GRACE = 2.0
#: when the stop now asked for came (`time.monotonic`), or None
_asked_at: float | None = None


def stop_overdue() -> bool:
    """Whether a stop asked for by a signal (`stop_requests`) has waited for the current
    step longer than `STOP_GRACE` seconds: the step should end between two critic updates
    rather than run its course (``n-critic:100``, a SIGTERM from ``timeout``). Never in a
    distributed run: its processes must end a step together."""
    return (_asked_at is not None and time.monotonic() - _asked_at > STOP_GRACE
            and not distributed.active())


class StoppedAtOnce(KeyboardInterrupt):
    """A second Ctrl-C or SIGTERM (``signum``): the run stops where it is; the message says
    which checkpoint is kept. It leaves `stop_requests` as the trainer's
    `TrainingInterrupted` (exit status 128 + signal)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


@contextlib.contextmanager
def stop_requests(request: Callable[[int], None],
                  kept: Callable[[], str] | None = None) -> Iterator[None]:
    """Ctrl-C and SIGTERM call ``request(signum)``, asking the loop to stop after the current
    step (`stop_overdue` then tells a long step to end sooner); a second one stops at once,
    wherever the loop is: `StoppedAtOnce` (a KeyboardInterrupt, which no ``except
    Exception`` on the way swallows) is raised there and leaves this context as
    `TrainingInterrupted`, its message ending with ``kept()`` (where the
    last checkpoint is). Outside the main thread, signals are left alone.

    A process of a distributed run that leaves with an error is ending, and when the error
    is a lost peer, the launcher's SIGTERM follows within a tenth of a second: it is ignored
    from then on, so that it cannot kill the process before its message (where the last
    checkpoint is) is printed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    global _asked_at
    asked = []

    def ask_to_stop(signum, frame):
        global _asked_at
        if asked:
            where = f": {kept()}" if kept is not None else ""
            raise StoppedAtOnce(f"stopped at once by a second {signal.Signals(signum).name}"
                                f"{where}", signum)
        asked.append(signum)
        _asked_at = time.monotonic()
        request(signum)

    old = {s: signal.signal(s, ask_to_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except StoppedAtOnce as exc:
        raise TrainingInterrupted(str(exc), exc.signum) from None
    except BaseException:
        if distributed.active():
            old[signal.SIGTERM] = signal.SIG_IGN
        raise
    finally:
        _asked_at = None
        for s, handler in old.items():
            signal.signal(s, handler)
