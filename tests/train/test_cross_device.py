"""Checkpoints move between devices: a run written on CUDA resumes and samples on the CPU, and
the reverse. The latent generator lives on the run's device (z is drawn where it is used), and
a CUDA generator's state (Philox: seed and offset, 16 bytes) is not a CPU generator's
(Mersenne Twister, 5,056 bytes): the CUDA-shaped state is emulated here and written through the
trainer's own checkpoint code."""
from __future__ import annotations

import shutil

import pytest
import torch

from gantrix import Trainer
from gantrix.step import load_generator_state

RECIPE = ["wgan", "gradient-penalty", "n-critic:2", "ema:decay=0.9"]
SMALL = dict(batch_size=16, latent_dim=4, log_every=5, sample_every=0)


class CudaShapedGenerator:
    """What a CUDA ``torch.Generator`` shows of its state: 16 bytes (seed, offset), and a
    ``set_state`` that refuses any other size, as CUDA's does."""

    def __init__(self, seed: int = 7, offset: int = 12_345):
        self.seed, self.offset = seed, offset

    def get_state(self) -> torch.Tensor:
        return torch.tensor([self.seed, self.offset], dtype=torch.int64).view(torch.uint8)

    def set_state(self, state: torch.Tensor) -> None:
        if state.numel() != 16:
            raise RuntimeError("RNG state is wrong size")
        self.seed, self.offset = state.view(torch.int64).tolist()

    def manual_seed(self, seed: int) -> "CudaShapedGenerator":
        self.seed, self.offset = seed, 0
        return self


def _weights(trainer):
    return {k: v.clone() for k, v in trainer.models.generator.state_dict().items()}


def test_a_checkpoint_written_on_cuda_resumes_and_samples_on_the_cpu(tmp_path):
    run = tmp_path / "cuda-run"
    trainer = Trainer(RECIPE, "ring8", out=run, steps=4, device="cpu", **SMALL).fit()
    trainer.stepper.rng = CudaShapedGenerator()  # as if the run had trained on CUDA
    trainer.save_checkpoint()
    assert torch.load(run / "checkpoint.pt", weights_only=True)["rng"]["z"].numel() == 16
    shutil.copytree(run, tmp_path / "again")

    loaded = Trainer.load(run, device="cpu")  # sampling and evaluation
    assert loaded.sample(5).shape == (5, 2)
    first = Trainer.resume(run, steps=8, device="cpu").fit()  # training goes on, on the CPU
    second = Trainer.resume(tmp_path / "again", steps=8, device="cpu").fit()
    assert first.step == 8
    a, b = _weights(first), _weights(second)
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same checkpoint, the same run


def test_a_cpu_state_into_a_cuda_generator_and_back():
    cpu = torch.Generator().manual_seed(3)
    cuda = CudaShapedGenerator()
    assert load_generator_state(cuda, cpu.get_state()) == "reseeded"
    again = CudaShapedGenerator(seed=99)
    assert load_generator_state(again, cpu.get_state()) == "reseeded"
    assert (again.seed, again.offset) == (cuda.seed, 0)  # deterministic: the state's hash

    other = torch.Generator().manual_seed(5)
    assert load_generator_state(other, cuda.get_state()) == "reseeded"
    assert load_generator_state(CudaShapedGenerator(), cuda.get_state()) == "exact"


def test_the_same_device_restores_the_stream_exactly():
    g = torch.Generator().manual_seed(11)
    torch.randn(3, generator=g)
    state = g.get_state()
    want = torch.randn(4, generator=g)
    h = torch.Generator().manual_seed(0)
    assert load_generator_state(h, state) == "exact"
    assert torch.equal(torch.randn(4, generator=h), want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_real_cuda_and_cpu_generators_exchange_states():
    cuda = torch.Generator("cuda").manual_seed(1)
    cpu = torch.Generator().manual_seed(2)
    assert load_generator_state(cpu, cuda.get_state()) == "reseeded"
    assert load_generator_state(cuda, cpu.get_state()) == "reseeded"
    torch.randn(3, generator=cpu), torch.randn(3, device="cuda", generator=cuda)
