"""The loss tally: sums kept on the device, read back only at log lines and checkpoints, and
a divergence still named with its exact step and term."""
from __future__ import annotations

import math

import pytest
import torch

from gantrix import Trainer
from gantrix.tally import LossTally


def _step(**values):
    return {k: torch.tensor(v) for k, v in values.items()}


def test_sums_and_counts_per_name_with_names_that_come_and_go():
    tally = LossTally()
    tally.add(_step(d_loss=1.0, g_loss=2.0), step=1)
    tally.add(_step(d_loss=3.0, g_loss=4.0, **{"d/r1": 0.5}), step=2)  # a lazy term
    tally.add(_step(d_loss=5.0, g_loss=6.0), step=3)
    assert tally.read() is None
    assert tally.means() == {"d_loss": 3.0, "g_loss": 4.0, "d/r1": 0.5}
    assert tally.counts == {"d_loss": 3, "g_loss": 3, "d/r1": 1}
    tally.add(_step(d_loss=7.0), step=4)
    assert tally.read() is None and tally.means()["d_loss"] == 4.0  # adds to what was read
    tally.reset()
    assert tally.means() == {}


def test_the_first_non_finite_value_is_named_with_its_step():
    tally = LossTally()
    tally.add(_step(d_loss=1.0, g_loss=1.0), step=1)
    tally.add(_step(d_loss=1.0, g_loss=math.inf), step=2)
    tally.add(_step(d_loss=math.nan, g_loss=math.nan), step=3)
    bad = tally.read()
    assert (bad.name, bad.value, bad.step) == ("g_loss", math.inf, 2)


def test_adding_never_reads_back_to_the_host(monkeypatch):
    tally = LossTally()

    def forbidden(*args, **kwargs):
        raise AssertionError("a host read while adding")

    for name in ("item", "tolist", "__float__", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    for step in range(5):
        tally.add(_step(d_loss=float(step), g_loss=1.0), step=step)
    monkeypatch.undo()
    assert tally.read() is None and tally.sums["d_loss"] == 10.0


def test_the_trainer_reads_the_losses_only_at_log_lines_and_checkpoints(tmp_path, monkeypatch):
    reads = []
    original = LossTally.read

    def counted(self):
        reads.append(1)
        return original(self)

    monkeypatch.setattr(LossTally, "read", counted)
    trainer = Trainer(["wgan", "gradient-penalty"], "ring8", out=tmp_path / "r", steps=20,
                      batch_size=16, latent_dim=2, width=16, log_every=5, sample_every=0,
                      checkpoint_every=10, progress=False).fit()
    # 4 log lines, the checkpoint at the start, at step 10 and at the end: 7 reads in 20 steps
    assert len(reads) == 7
    assert [row["step"] for row in trainer.history] == [5, 10, 15, 20]
    assert all(math.isfinite(row["d_loss"]) for row in trainer.history)


def test_tally_state_round_trips():
    tally = LossTally()
    tally.add(_step(d_loss=2.0), step=1)
    tally.read()
    again = LossTally()
    again.load_state_dict(tally.state_dict())
    assert again.means() == {"d_loss": 2.0}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sums_stay_on_the_gpu():
    tally = LossTally()
    tally.add({"d_loss": torch.tensor(1.0, device="cuda")}, step=1)
    group = next(iter(tally._groups.values()))
    assert group.total.is_cuda
