"""No host read in a training step between log lines (issue 29, item 2): the calls that make
the host wait for a GPU (`host_reads.HostReads` lists them), counted on CPU from gantrix's own
code during training steps with no log line, in one process and in two; none is expected.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gantrix import Trainer
from gantrix.registry import catalogue

from host_reads import steps_without_log_lines

RECIPES = sorted(catalogue().recipes)
WORKER = Path(__file__).parent / "distributed" / "host_reads_run.py"


def _steps_without_log_lines(recipe, precision, monkeypatch, data="ring8", n=3, **kw):
    trainer = Trainer(recipe, data, steps=1, batch_size=8, log_every=10_000, sample_every=0,
                      checkpoint_every=0, progress=False, device="cpu", precision=precision, **kw)
    return steps_without_log_lines(trainer, monkeypatch.setattr, n)


@pytest.mark.parametrize("recipe", RECIPES)
def test_no_host_read_in_fp32_steps(recipe, monkeypatch):
    needs_digits = ("acgan", "cgan", "sagan", "sngan-projection")  # labels, feature maps
    data = "digits" if recipe in needs_digits else "ring8"
    assert not _steps_without_log_lines(recipe, "fp32", monkeypatch, data=data)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("recipe", ["wgan-gp", "rasgan", "dcgan"])
def test_no_host_read_in_mixed_precision_steps(recipe, precision, monkeypatch):
    assert not _steps_without_log_lines(recipe, precision, monkeypatch)


@pytest.mark.slow
def test_no_host_read_in_the_steps_of_two_processes(tmp_path):
    """`--nproc 2`: two gloo processes (torchrun) train each of the worker's cases; neither
    reads the device between log lines."""
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node=2", str(WORKER), str(tmp_path)],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        counts = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert any("gantrix/models.py" in line for line in counts.pop("canary")), counts
        assert len(counts) == 4 and not any(counts.values()), (rank, counts)


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


@pytest.mark.parametrize("recipe, reads", [("wgan-gp", False), ("rasgan", False),
                                           ("wgan", True)])
def test_the_fp16_scaler_reads_nothing_with_fused_adam(recipe, reads, monkeypatch):
    """torch's GradScaler reads its found-inf flag back (``.item()``) before each optimizer
    step, unless the optimizer skips an overflowed step itself on the device (fused Adam,
    ``_step_supports_amp_scaling``): gantrix's Adam is fused, so its fp16 steps wait for
    nothing; an optimizer without that path (wgan's RMSprop) still costs one read an update."""
    trainer = Trainer(recipe, "ring8", steps=1, batch_size=8, log_every=10_000, sample_every=0,
                      checkpoint_every=0, progress=False, device="cpu", precision="fp16")
    counts = steps_without_log_lines(trainer, monkeypatch.setattr, 3, scaler=True)
    assert bool(counts) == reads, counts
    assert all(line.split(" at ")[1].startswith("grad_scaler.py") for line in counts)
