"""The one progress bar of gantrix: a training run's, and an image folder's being prepared.

Drawn by tqdm (``tqdm.auto``): a line rewritten in place on a terminal, a widget in a Jupyter
notebook, nothing when standard error is a pipe or a file (logs stay clean) unless asked for.
It redraws at most every `INTERVAL` seconds, and the values it shows (a training step's
losses) are asked for only when it redraws, so they are read back from the device only then.

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

    ``enabled=None`` draws it on a terminal or in a notebook only; True and False force it on
    or off. `update` moves it; `close` ends its line.
    """

    def __init__(self, total: int, enabled: bool | None = None, stream=None, *,
                 desc: str = "train", unit: str = "step"):
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = (IN_NOTEBOOK and stream is None) or _isatty(self.stream)
        self.enabled = bool(enabled)
        self.total = total
        self.last = -math.inf
        self._bar: _Tqdm | None = None
        if self.enabled:
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


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def host_values(out: Mapping[str, Any]) -> dict[str, float]:
    """A step's losses (tensors) read back to the host, in one read for all of them."""
    import torch  # loaded already (``out`` holds tensors); not at the top: see the module

    return dict(zip(out, torch.stack([v.detach().float().reshape(()) for v in out.values()]).tolist()))
