"""Batches read one batch ahead in a thread (`gantrix.prefetch`): on CUDA for data that stays
on the host. Pinning needs CUDA, so here the real `Prefetcher` runs with ``pin=False`` on
CPU tensors, and the trainer is made to read ahead on the CPU (`reads_ahead` patched): the
batches are the plain path's, checkpoints hold the batches used (not the one read ahead),
resumed and replayed runs are bit for bit the uninterrupted plain run, an error in the
reader is raised in the training thread, and no reader thread outlives training."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from gantrix import Regularizer, distributed, prefetch
from gantrix.data import Mirrored, TensorData, Toy2D
from gantrix.prefetch import Batches, Prefetcher
from gantrix.step import TrickFailed
from gantrix.trainer import Trainer


def readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "gantrix-prefetch"]


@pytest.fixture(autouse=True)
def no_reader_left():
    yield
    assert readers() == [], "a prefetch thread outlived its test"


def memmap(tmp_path, x: np.ndarray) -> np.ndarray:
    """``x`` saved and memory-mapped back, as an image folder's cache is."""
    np.save(tmp_path / "x.npy", x)
    return np.load(tmp_path / "x.npy", mmap_mode="r")


def images(tmp_path, mirror: bool, labels: bool = True):
    """50 uint8 4×4 RGB images from a memory-mapped file, with labels: a maker of fresh
    data objects on the same samples and seed."""
    rng = np.random.default_rng(0)
    x = memmap(tmp_path, rng.integers(0, 256, (50, 3, 4, 4), dtype=np.uint8))
    y = torch.arange(50) % 3 if labels else None

    def make():
        data = TensorData("folder", x, y, seed=1)
        return Mirrored(data, seed=2) if mirror else data
    return make


SOURCES = {
    "memmap": lambda tmp: images(tmp, mirror=False),
    "memmap-mirrored": lambda tmp: images(tmp, mirror=True),
    "memmap-unlabelled": lambda tmp: images(tmp, mirror=False, labels=False),
    "tensor": lambda tmp: lambda: TensorData("t", torch.randn(40, 2, generator=torch.Generator()
                                                               .manual_seed(3)), seed=4),
    "ring8": lambda tmp: lambda: Toy2D("ring8", seed=5),
}


def same(a, b) -> bool:
    return torch.equal(a[0], b[0]) and (a[1] is None) == (b[1] is None) and (
        a[1] is None or torch.equal(a[1], b[1]))


@pytest.mark.parametrize("source", SOURCES)
def test_the_batches_are_the_plain_paths_across_epochs(tmp_path, source):
    make = SOURCES[source](tmp_path)
    plain, ahead = make(), make()
    reader = Prefetcher(ahead, 16)  # 50 or 40 samples: an epoch ends inside the 3rd batch
    try:
        for _ in range(9):
            assert same(reader.next(), plain.next_shard(16))
    finally:
        reader.close()
    assert readers() == []
    assert same(ahead.next_shard(16), plain.next_shard(16))  # closing rewound the read ahead


@pytest.mark.parametrize("source", ["memmap", "memmap-mirrored", "ring8"])
@pytest.mark.parametrize("taken", [1, 3, 7])
def test_the_state_is_that_of_the_batches_handed_out(tmp_path, source, taken):
    """A checkpoint taken while a batch is read ahead resumes a fresh data object to the
    batches an uninterrupted plain stream serves next; the reader goes on unaffected."""
    make = SOURCES[source](tmp_path)
    plain, ahead, resumed = make(), make(), make()
    reader = Prefetcher(ahead, 16)
    try:
        for _ in range(taken):
            assert same(reader.next(), plain.next_shard(16))
        resumed.load_state_dict(reader.state_dict())
        for _ in range(4):
            want = plain.next_shard(16)
            assert same(resumed.next_shard(16), want)
            assert same(reader.next(), want)
    finally:
        reader.close()


def test_each_process_reads_its_slice_of_the_global_batch(tmp_path, monkeypatch):
    """With ``--nproc`` the reader calls the data's own `next_shard`: this process's rows of
    the global batch (here rank 1 of 2), with the global batch's coin flips."""
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    make = SOURCES["memmap-mirrored"](tmp_path)
    plain, ahead = make(), make()
    reader = Prefetcher(ahead, 16)
    try:
        for _ in range(5):
            got = reader.next()
            assert got[0].shape[0] == 8 and same(got, plain.next_shard(16))
    finally:
        reader.close()


class BadFile(TensorData):
    """Data with one unreadable sample: reading it raises, as a bad file would."""

    def get(self, idx=None):
        if idx is not None and bool((idx == self.bad).any()):
            self.raised = OSError(f"sample {self.bad}: cannot read the file")
            raise self.raised
        return super().get(idx)


def test_an_error_in_the_reader_is_raised_in_the_training_thread():
    data = BadFile("bad", torch.randn(30, 2), seed=0)
    data.bad = int(data.order[20])  # in the 3rd batch of 8
    reader = Prefetcher(data, 8)
    try:
        reader.next(), reader.next()
        with pytest.raises(OSError) as info:
            reader.next()
        assert info.value is data.raised  # the reader's own exception, not a timeout
        assert not reader._pending  # nothing is read ahead of a failure
        assert torch.equal(reader.state_dict()["pos"], data.state_dict()["pos"])
    finally:
        reader.close()


def test_closing_stops_the_thread_and_is_idempotent():
    data = Toy2D("ring8", seed=0)
    reader = Prefetcher(data, 4)
    assert len(readers()) == 1 and readers()[0].daemon
    reader.next()
    reader.close()
    reader.close()
    assert readers() == []


def test_on_the_cpu_nothing_is_read_ahead():
    """The plain path on the CPU: no thread, no data moved (the golden weights are its)."""
    data = Toy2D("ring8", seed=0)
    batches = Batches(data, torch.device("cpu"), 8)
    assert same(batches.next(), Toy2D("ring8", seed=0).next_shard(8))
    assert batches._reader is None and readers() == []
    assert not prefetch.reads_ahead(data, torch.device("cpu"))


# --------------------------------------------------------------------------- the trainer

SMALL = dict(batch_size=16, latent_dim=2, sample_every=0, log_every=2, checkpoint_every=4,
             progress=False)
#: no schedule over the total steps (WGAN-GP decays its rate to 0 at the last): a run of 5
#: steps resumed to 10 is then the run of 10
RECIPE = ["nonsaturating"]


@pytest.fixture
def read_ahead(monkeypatch):
    """``read_ahead()`` makes the trainer read ahead on the CPU from then on, as it does on
    CUDA for data on the host, and returns the list of the readers it starts (their ``pin``)."""
    def enable():
        started = []
        real = Prefetcher.__init__
        monkeypatch.setattr(prefetch, "reads_ahead", lambda data, device: True)
        monkeypatch.setattr(Prefetcher, "__init__",
                            lambda self, *a, **k: started.append(k["pin"]) or real(self, *a, **k))
        return started
    return enable


def weights(trainer):
    return {f"{role}.{k}": v.clone() for role in ("generator", "discriminator")
            for k, v in getattr(trainer.models, role).state_dict().items()}


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def vectors(tmp_path) -> str:
    """A .npy file of 40 2-D samples, which training memory-maps: data that stays on the
    host (an epoch ends inside the 3rd batch of 16)."""
    memmap(tmp_path, np.random.default_rng(1).standard_normal((40, 2)).astype(np.float32))
    return str(tmp_path / "x.npy")


def test_a_run_read_ahead_and_resumed_is_the_plain_uninterrupted_run(tmp_path, read_ahead):
    data = vectors(tmp_path)
    whole = Trainer(RECIPE, data, steps=10, **SMALL).fit()
    started = read_ahead()
    Trainer(RECIPE, data, out=tmp_path / "run", steps=5, **SMALL).fit()
    assert started == [False] and readers() == []  # unpinned on the CPU; closed as fit ended
    resumed = Trainer.resume(tmp_path / "run", steps=10).fit()
    assert started == [False, False] and resumed.step == 10
    assert same_weights(resumed, whole)
    # no run folder: a second fit goes on from where the first one's steps left the data
    again = Trainer(RECIPE, data, steps=5, **SMALL).fit()
    again.settings.steps = 10
    assert same_weights(again.fit(), whole) and len(started) == 4 and readers() == []


FAIL = {"at": None}


class Flaky(Regularizer):
    """A generator term that raises at the update FAIL['at']."""

    name = "flaky"
    summary = "a term that fails at the update FAIL['at']"

    def g_term(self, batch):
        if batch.step == FAIL["at"]:
            raise RuntimeError("the flaky term broke")
        return 0.1 * batch.fake.pow(2).mean()


def test_a_failed_step_replayed_while_reading_ahead_resumes_exactly(tmp_path, add_tricks,
                                                                    read_ahead):
    """A trick failing in step 7 makes the trainer replay steps 5–6 from the checkpoint of
    step 4 (`gantrix.recovery.replay`): the batch read ahead is dropped before the data's
    state is loaded, and the checkpoint written resumes to the plain run's weights."""
    add_tricks(Flaky)
    FAIL["at"] = None
    recipe = ["nonsaturating", "flaky"]
    data = vectors(tmp_path)
    whole = Trainer(recipe, data, steps=12, **SMALL).fit()
    started = read_ahead()
    FAIL["at"] = 6
    with pytest.raises(TrickFailed, match="steps 5 to 6 replayed"):
        Trainer(recipe, data, out=tmp_path / "run", steps=12, **SMALL).fit()
    assert len(started) == 2 and readers() == []  # one reader closed for the replay
    FAIL["at"] = None
    resumed = Trainer.resume(tmp_path / "run").fit()
    assert resumed.step == 12 and same_weights(resumed, whole)
