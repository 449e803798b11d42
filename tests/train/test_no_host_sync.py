"""No host read in a training step between log lines (issue 29, item 2).

On CUDA a read of a device value (``.item()``, ``.tolist()``, ``.cpu()``, ``.numpy()``,
``bool()``/``float()``/``int()`` of a tensor) or a synchronising op (``nonzero``, boolean-mask
indexing, ``torch.equal``, printing a tensor, ``GradScaler.get_scale``) makes the host wait for
the GPU: the step stops being asynchronous. This test counts, on CPU, such calls made directly
from gantrix's own code (gantrix/, plugins/, kernels/) during training steps with no log line,
and expects none. Torch's own internal reads (the GradScaler's found-inf check) are not
counted: they are not gantrix's to remove.
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from gantrix import Trainer
from gantrix.registry import catalogue

ROOT = Path(__file__).parents[2]
OWN = tuple(str(ROOT / d) + "/" for d in ("gantrix", "plugins", "kernels"))


class HostReads:
    """Patches the reading methods and syncing ops; records the gantrix lines that call them."""

    METHODS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "nonzero",
               "__repr__", "__str__")

    def __init__(self, monkeypatch):
        self.calls: Counter = Counter()
        self.on = False
        for name in self.METHODS:
            monkeypatch.setattr(torch.Tensor, name, self._wrap(getattr(torch.Tensor, name), f"Tensor.{name}"))
        for name in ("equal", "nonzero", "is_nonzero"):
            monkeypatch.setattr(torch, name, self._wrap(getattr(torch, name), f"torch.{name}"))
        get_scale = torch.amp.GradScaler.get_scale
        monkeypatch.setattr(torch.amp.GradScaler, "get_scale", self._wrap(get_scale, "GradScaler.get_scale"))
        getitem = torch.Tensor.__getitem__

        def masked(tensor, index, _getitem=getitem):
            if isinstance(index, torch.Tensor) and index.dtype == torch.bool:
                self._record("boolean-mask indexing")
            return _getitem(tensor, index)
        monkeypatch.setattr(torch.Tensor, "__getitem__", masked)

    def _record(self, what: str) -> None:
        if not self.on:
            return
        frame = sys._getframe(2)
        if frame.f_code.co_filename.startswith(OWN):
            self.calls[f"{what} at {Path(frame.f_code.co_filename).relative_to(ROOT)}:{frame.f_lineno}"] += 1

    def _wrap(self, fn, what):
        def wrapper(*args, **kwargs):
            self._record(what)
            return fn(*args, **kwargs)
        return wrapper


RECIPES = sorted(catalogue().recipes)


def _steps_without_log_lines(recipe, precision, monkeypatch, data="ring8", n=3, **kw):
    trainer = Trainer(recipe, data, steps=1, batch_size=8, log_every=10_000, sample_every=0,
                      checkpoint_every=0, progress=False, device="cpu", precision=precision, **kw)
    trainer.fit()  # the first step (and its log line, the last step's) outside the count
    reads = HostReads(monkeypatch)
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


@pytest.mark.parametrize("recipe", RECIPES)
def test_no_host_read_in_fp32_steps(recipe, monkeypatch):
    data = "digits" if recipe in ("acgan", "cgan", "sagan") else "ring8"  # labels, feature maps
    assert not _steps_without_log_lines(recipe, "fp32", monkeypatch, data=data)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("recipe", ["wgan-gp", "rasgan", "dcgan"])
def test_no_host_read_in_mixed_precision_steps(recipe, precision, monkeypatch):
    assert not _steps_without_log_lines(recipe, precision, monkeypatch)


def test_the_tally_keeps_or_drops_a_step_on_the_device():
    """What lets the fp16 step's skip be decided without a read: a step the scaler skipped
    (keep false) is neither summed nor counted, and its non-finite loss is no divergence."""
    from gantrix.tally import LossTally

    tally = LossTally()
    tally.add({"d_loss": torch.tensor(1.0)}, 1, keep=torch.tensor(True))
    tally.add({"d_loss": torch.tensor(float("inf"))}, 2, keep=torch.tensor(False))
    tally.add({"d_loss": torch.tensor(3.0)}, 3)
    assert tally.read() is None
    assert tally.means() == {"d_loss": 2.0} and tally.counts == {"d_loss": 2}
    tally.add({"g_loss": torch.tensor(5.0)}, 4, keep=torch.tensor(False))
    assert tally.read() is None and "g_loss" not in tally.means()


@pytest.mark.parametrize("mirror", [False, True])
def test_data_placed_on_the_device_serves_the_same_batches(mirror):
    """Memory-sized data is moved to the training device once (`Data.place`, on CUDA from
    Trainer._pull) and batches are indexed there; the order is still drawn on the host, so the
    batches are the ones the host path serves (here the device path runs on CPU tensors)."""
    from gantrix.data import Mirrored, TensorData

    x = torch.randint(0, 256, (50, 1, 4, 4), dtype=torch.uint8)
    labels = torch.arange(50) % 3

    def make():
        data = TensorData("t", x, labels, seed=1)
        return Mirrored(data, seed=2) if mirror else data
    host, placed = make(), make()
    assert placed.place("cpu", force=True)
    for n in (7, 20, 40, 33):  # across epochs
        a, b = host.next_batch(n), placed.next_batch(n)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    state = host.state_dict()
    placed.load_state_dict(state)
    host.load_state_dict(state)
    assert torch.equal(host.next_batch(9)[0], placed.next_batch(9)[0])
    inner = placed.inner if mirror else placed
    assert torch.equal(inner.get(torch.tensor([3, 1])), (x[[3, 1]].float() / 127.5 - 1))
