"""Counting host reads made from gantrix's own code during training steps (issue 29, item 2),
shared by the one-process tests (`test_no_host_sync.py`) and the two-process worker
(`distributed/host_reads_run.py`).

On CUDA a read of a device value (``.item()``, ``.tolist()``, ``.cpu()``, ``.numpy()``,
``bool()``/``float()``/``int()`` of a tensor) or a synchronising op (``nonzero``, boolean-mask
indexing, ``torch.equal``, printing a tensor, ``GradScaler.get_scale``) makes the host wait for
the GPU: the step stops being asynchronous. `HostReads` patches them and records the calls
made directly from gantrix/, plugins/ or kernels/; torch's own internal reads are not
counted, except the GradScaler's found-inf check with ``scaler=True``: gantrix avoids it by
the optimizer it builds (fused Adam skips an overflowed step on the device).
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).parents[2]
OWN = tuple(str(ROOT / d) + "/" for d in ("gantrix", "plugins", "kernels"))
#: torch's loss scaler, whose reads `HostReads(..., scaler=True)` counts too
SCALER = str(Path(torch.amp.grad_scaler.__file__))


class HostReads:
    """Patches the reading methods and syncing ops with ``patch(owner, name, value)``
    (pytest's ``monkeypatch.setattr``, or plain ``setattr`` in a process that ends after);
    while ``on``, records the gantrix lines that call them in ``calls`` (``scaler``: and the
    lines of torch's GradScaler)."""

    METHODS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "nonzero",
               "__repr__", "__str__")

    def __init__(self, patch: Callable[[Any, str, Any], None], scaler: bool = False):
        self.calls: Counter = Counter()
        self.own = OWN + ((SCALER,) if scaler else ())
        self.on = False
        for name in self.METHODS:
            patch(torch.Tensor, name, self._wrap(getattr(torch.Tensor, name), f"Tensor.{name}"))
        for name in ("equal", "nonzero", "is_nonzero"):
            patch(torch, name, self._wrap(getattr(torch, name), f"torch.{name}"))
        get_scale = torch.amp.GradScaler.get_scale
        patch(torch.amp.GradScaler, "get_scale", self._wrap(get_scale, "GradScaler.get_scale"))
        getitem = torch.Tensor.__getitem__

        def masked(tensor, index, _getitem=getitem):
            if isinstance(index, torch.Tensor) and index.dtype == torch.bool:
                self._record("boolean-mask indexing")
            return _getitem(tensor, index)
        patch(torch.Tensor, "__getitem__", masked)

    def _record(self, what: str) -> None:
        if not self.on:
            return
        frame = sys._getframe(2)
        name = frame.f_code.co_filename
        if name.startswith(self.own):
            where = Path(name).relative_to(ROOT) if name.startswith(OWN) else Path(name).name
            self.calls[f"{what} at {where}:{frame.f_lineno}"] += 1

    def _wrap(self, fn, what):
        def wrapper(*args, **kwargs):
            self._record(what)
            return fn(*args, **kwargs)
        return wrapper


def steps_without_log_lines(trainer, patch: Callable[[Any, str, Any], None], n: int = 3,
                            scaler: bool = False) -> Counter:
    """The host reads of ``n`` training steps of ``trainer`` (planned with ``steps=1`` and a
    log interval no step reaches), after one whole `fit` step outside the count (its log
    line, the first step's set-up); ``scaler``: torch's GradScaler's reads counted too."""
    trainer.fit()
    reads = HostReads(patch, scaler)
    trainer.settings.steps = 10_000
    reads.on = True
    pull = trainer._pull
    try:
        for _ in range(n):
            out = trainer.stepper.step(pull)
            trainer._account(out, 0.01)
    finally:
        reads.on = False
    return reads.calls
