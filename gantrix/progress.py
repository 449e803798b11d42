"""The one progress bar of gantrix: a training run's, and an image folder's being prepared.

Drawn by tqdm (``tqdm.auto``): a line rewritten in place on a terminal, a widget in a Jupyter
notebook. When standard error is a pipe or a file (``gantrix train ... 2>&1 | tee log``, a
script's log, a batch job), a bar rewritten in place would fill the log with carriage
returns, and nothing at all leaves its reader blind for minutes: plain lines are written
instead, one at each tenth of the way and at least every `PLAIN_INTERVAL` seconds. A bar
redraws at most every `INTERVAL` seconds, and the values it shows (a training step's
losses) are asked for only when it redraws or a line is written, so they are read back
from the device only then.

This module imports no torch at its top: `gantrix.folder`'s worker processes import it and
must start quickly.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, Mapping

from tqdm.auto import tqdm

#: seconds between two redraws, at the least.
INTERVAL = 0.2
#: seconds between two plain lines, at the most (off a terminal; also one each tenth).
PLAIN_INTERVAL = 30.0
#: whether tqdm.auto chose its notebook widget (this process runs in a Jupyter kernel).
IN_NOTEBOOK = any(cls.__module__ == "tqdm.notebook" for cls in tqdm.__mro__)


class _Tqdm(tqdm):
    """tqdm drawn only when its owner says (no monitor thread redrawing on its own), with the
    rate its owner gives when it gives one: a training run's steps per second of training,
    which leaves out the time spent writing checkpoints and pictures."""

    monitor_interval = 0
    given_rate: float | None = None

    @property
    def format_dict(self) -> dict[str, Any]:
        values = super().format_dict
        if self.given_rate is not None:
            values["rate"] = self.given_rate
        return values


class Progress:
    """A progress bar over ``total`` steps (``unit``), on ``stream`` (standard error).

    ``enabled=None`` draws the bar on a terminal or in a notebook, and writes plain lines
    (`PlainLines`) anywhere else; True forces the bar, False shows nothing. `update` moves
    it; `close` ends its line.
    """

    def __init__(self, total: int, enabled: bool | None = None, stream=None, *,
                 desc: str = "train", unit: str = "step"):
        self.stream = stream or sys.stderr
        plain = None
        if enabled is None:
            enabled = (IN_NOTEBOOK and stream is None) or _isatty(self.stream)
            plain = None if enabled else PlainLines(total, self.stream, desc=desc, unit=unit)
        self.enabled = bool(enabled) or plain is not None
        self.total = total
        self.last = -math.inf
        self._plain = plain
        self._bar: _Tqdm | None = None
        if enabled:
            self._bar = _Tqdm(total=total, desc=desc, unit=unit, file=self.stream, leave=True,
                              mininterval=INTERVAL, dynamic_ncols=True)

    def update(self, n: int, losses: Callable[[], Mapping[str, float]] | None = None,
               rate: float | None = None, force: bool = False) -> None:
        """Move the bar to ``n`` done; redraw when ``force``, at the end, or when `INTERVAL`
        seconds have passed since the last redraw. ``losses`` is called only when it redraws
        (the entries whose names end in ``_loss`` are shown); ``rate`` (per second) replaces
        tqdm's own measure, and sets the time left."""
        bar = self._bar
        if bar is None:
            if self._plain is not None:
                self._plain.update(n, losses, rate, force)
            return
        bar.n = n
        now = time.monotonic()
        if not force and n < self.total and now - self.last < INTERVAL:
            return
        self.last = now
        bar.given_rate = rate
        if losses is not None:
            bar.set_postfix_str(", ".join(f"{k}={v:.4g}" for k, v in losses().items()
                                          if k.endswith("_loss")), refresh=False)
        bar.refresh()

    def close(self) -> None:
        """End the bar's line (it stays on screen with its last values)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PlainLines:
    """Progress as whole lines, for a log: one when a tenth of ``total`` more is done and at
    least one every `PLAIN_INTERVAL` seconds, and one at the end, each with the count, the
    rate, the time left and the losses (``train: 400/4000 steps (10%), 85.1 steps/s, 42s
    left, d_loss=1.27, g_loss=0.713``)."""

    def __init__(self, total: int, stream, *, desc: str = "train", unit: str = "step"):
        self.total, self.stream, self.desc, self.unit = total, stream, desc, unit
        self.started = self.last = time.monotonic()
        self.first: int | None = None  # the count at the first update (a resumed run's)
        self.tenth = 0  # the last tenth of the way a line was written at

    def update(self, n: int, losses: Callable[[], Mapping[str, float]] | None = None,
               rate: float | None = None, force: bool = False) -> None:
        """Write a line when due (see the class) or ``force``d; ``losses`` and ``rate`` as
        `Progress.update`."""
        if self.stream is None:  # closed
            return
        if self.first is None:
            self.first = n - 1
            self.tenth = 10 * self.first // max(self.total, 1)
        tenth = 10 * n // max(self.total, 1)
        now = time.monotonic()
        if not force and n < self.total and tenth <= self.tenth \
                and now - self.last < PLAIN_INTERVAL:
            return
        self.tenth, self.last = tenth, now
        if rate is None and now > self.started:
            rate = (n - self.first) / (now - self.started)
        parts = [f"{self.desc}: {n}/{self.total} {self.unit}s "
                 f"({100 * n // max(self.total, 1)}%)"]
        if rate:
            parts.append(f"{rate:.3g} {self.unit}s/s")
            if n < self.total:
                parts.append(f"{_duration((self.total - n) / rate)} left")
        if losses is not None:
            parts += [f"{k}={v:.4g}" for k, v in losses().items() if k.endswith("_loss")]
        try:
            self.stream.write(", ".join(parts) + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe (``| head``) must not stop training
            self.stream = None


def _duration(seconds: float) -> str:
    """``42s``, ``4m05s``, ``2h03m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def host_values(out: Mapping[str, Any]) -> dict[str, float]:
    """A step's losses (tensors) read back to the host, in one read for all of them."""
    import torch  # loaded already (``out`` holds tensors); not at the top: see the module

    return dict(zip(out, torch.stack([v.detach().float().reshape(()) for v in out.values()]).tolist()))
