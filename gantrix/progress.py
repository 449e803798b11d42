"""The one-line progress display of a training run."""
from __future__ import annotations

import sys
import time
from typing import Callable

import torch


class Progress:
    """One status line, rewritten in place on a terminal; silent otherwise."""

    def __init__(self, total: int, enabled: bool | None = None, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total = total
        self.last = 0.0
        self.shown = False

    def update(self, step: int, losses: Callable[[], dict[str, float]], rate: float,
               force: bool = False):
        """Redraw (at most every 0.2 s); ``losses`` is called only then, so reading the
        losses back from the device happens only then."""
        now = time.monotonic()
        if not self.enabled or (not force and now - self.last < 0.2):
            return
        self.last = now
        parts = " ".join(f"{k} {v:.4g}" for k, v in losses().items() if k.endswith("_loss"))
        eta = (self.total - step) / rate if rate > 0 else 0.0
        self.stream.write(f"\rstep {step}/{self.total} | {parts} | {rate:.1f} steps/s | "
                          f"eta {int(eta) // 60}:{int(eta) % 60:02d}   ")
        self.stream.flush()
        self.shown = True

    def close(self):
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False


def host_values(out: dict[str, torch.Tensor]) -> dict[str, float]:
    """A step's losses read back to the host (one read for all of them)."""
    return dict(zip(out, torch.stack([v.detach().float().reshape(()) for v in out.values()]).tolist()))
