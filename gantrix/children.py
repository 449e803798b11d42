"""Child processes that a signal to their parent reaches: Ctrl-C or SIGTERM to ``gantrix
train --nproc N`` (or to bench/stacked_mnist.py) is passed on to the processes it started,
which stop as a one-process run stops (a checkpoint, a message); the parent waits for them
and then exits with 128+signal, leaving none running.

Each child starts in a process group of its own, where the signal is sent: so a terminal's
Ctrl-C (sent to the whole foreground group) reaches a child once, through its parent, and
not twice, which a training run takes as "stop at once, without a checkpoint". Out of the
terminal's session, a child would not see the terminal close: SIGHUP is passed on too, as
SIGTERM (the run stops with a checkpoint).

This module imports no torch (the launcher of ``--nproc`` and the benchmark scripts use it).
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

#: the signals passed on to the children, and what each is passed on as
FORWARDED = {signal.SIGINT: signal.SIGINT, signal.SIGTERM: signal.SIGTERM,
             signal.SIGHUP: signal.SIGTERM}


class Children:
    """Processes started with `run` (from any thread); while `forwarding`, SIGINT, SIGTERM
    and SIGHUP to this process are sent on to their process groups (`FORWARDED`), and
    ``signum`` records the first of them (None until then)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._running: set[subprocess.Popen] = set()
        self._lock = threading.RLock()  # the signal handler runs in the main thread

    def run(self, command: Sequence[str], **popen: Any) -> int:
        """Run ``command`` in a process group of its own and wait for its exit status; after
        a forwarded signal, nothing new starts (128+signal is returned)."""
        if self.signum is not None:
            return 128 + self.signum
        process = subprocess.Popen(command, start_new_session=True, **popen)
        with self._lock:
            self._running.add(process)
        if self.signum is not None:  # the signal came while it started
            _send(process, FORWARDED[self.signum])
        try:
            return process.wait()
        finally:
            with self._lock:
                self._running.discard(process)

    def _forward(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
        with self._lock:
            running = list(self._running)
        for process in running:
            _send(process, FORWARDED[signum])

    def stopped(self) -> str:
        """What a script running gantrix trainings says when a forwarded signal stopped
        them: which signal, and that the same command continues them."""
        return (f"stopped by {signal.Signals(self.signum).name}: the runs saved a checkpoint; "
                f"run the same command again to continue them")

    @contextmanager
    def forwarding(self) -> Iterator["Children"]:
        """Pass the `FORWARDED` signals on to the children while the block runs (handlers can
        be set in the main thread only; elsewhere the block runs as it is)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.signal(s, self._forward) for s in FORWARDED}
        try:
            yield self
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)


def _send(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:  # it has just ended
        pass
