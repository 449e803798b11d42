"""Data-parallel training (`gantrix.distributed`): N processes train the one-process GAN.

The helpers are checked in one process (where they must be the identity of torch's own
calls); the runs are real ``torchrun`` launches of two gloo processes on the CPU, compared
with one process on the same global batch, seed and steps.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gantrix import GantrixError, distributed
from gantrix.compose import Composition
from gantrix.errors import CompositionError
from gantrix.recipe import Recipe
from gantrix.settings import check_settings

WORKER = Path(__file__).parent / "distributed" / "same_run.py"
sys.path.insert(0, str(WORKER.parent))
from same_run import COMPOSITIONS  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun(n: int, *args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc-per-node={n}", *args], env=ENV, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


# --------------------------------------------------------------------------- one process


def test_helpers_are_torch_itself_in_one_process():
    assert not distributed.active() and distributed.world_size() == 1 and distributed.is_writer()
    for draw, args in ((distributed.rand, (5, 3)), (distributed.randn, (7, 2, 2))):
        torch.manual_seed(1)
        ours = draw(*args)
        torch.manual_seed(1)
        assert torch.equal(ours, getattr(torch, draw.__name__)(*args))
    torch.manual_seed(1)
    ours = distributed.randint(-3, 4, 6, 1, 1)
    torch.manual_seed(1)
    assert torch.equal(ours, torch.randint(-3, 4, (6, 1, 1)))
    x = torch.randn(4, 3, requires_grad=True)
    assert distributed.gather_rows(x) is x and distributed.mean_across_ranks(x) is x
    assert distributed.shard(x) is not None and torch.equal(distributed.shard(x), x)
    assert distributed.mean_over_ranks({"a": 1.5}) == {"a": 1.5}
    assert distributed.any_rank(True) and not distributed.any_rank(False)


def test_a_shard_is_the_batch_in_one_process():
    from gantrix.data import Mirrored, TensorData, Toy2D

    images = torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8)
    labels = torch.arange(10) % 3
    for make in (lambda: Toy2D("grid25", seed=1),
                 lambda: TensorData("t", images, labels, seed=1),
                 lambda: Mirrored(TensorData("t", images, labels, seed=1), seed=1)):
        a, b = make(), make()
        for n in (4, 7, 7):  # across an epoch's end
            (xa, ya), (xb, yb) = a.next_batch(n), b.next_shard(n)
            assert torch.equal(xa, xb) and (ya is None and yb is None or torch.equal(ya, yb))


def test_a_batch_the_processes_cannot_share_is_a_clear_error():
    with pytest.raises(GantrixError, match="multiple of 3"):
        check_settings(Composition(Recipe(recipe="wgan-gp")), 64, processes=3)
    check_settings(Composition(Recipe(recipe="wgan-gp")), 63, processes=3)


def test_pac_knows_that_packs_never_span_two_processes():
    with pytest.raises(CompositionError, match=r"each of the 2 processes gets 6 .* divisible by 8"):
        check_settings(Composition(Recipe("nonsaturating", "pac:4")), 12, processes=2)
    check_settings(Composition(Recipe("nonsaturating", "pac:4")), 16, processes=2)


def test_top_k_counts_the_fakes_each_process_scores():
    with pytest.raises(CompositionError, match=r"batch size 8 \(each of 2 processes\)"):
        check_settings(Composition(Recipe("nonsaturating", "top-k:k=12")), 16, processes=2)
    check_settings(Composition(Recipe("nonsaturating", "top-k:k=8")), 16, processes=2)


def test_the_checker_names_what_cannot_match_one_process():
    from gantrix.models import ModelSpec
    from gantrix.step import build_models

    composition = Composition(Recipe(recipe="wgan-gp").extend(["minibatch-stddev"]))
    models = build_models(composition, ModelSpec((2,), None, 8, 16))
    assert distributed.findings(composition.tricks, models, 1) == []
    found = distributed.findings(composition.tricks, models, 4)
    assert [f.tricks for f in found] == [("minibatch-stddev",)]
    assert "1/4 of the batch" in found[0].message
    dcgan = Composition(Recipe(recipe="dcgan"))
    models = build_models(dcgan, ModelSpec((1, 8, 8), None, 8, 16))
    messages = [f.message for f in distributed.findings(dcgan.tricks, models, 2)]
    assert any("generator has BatchNorm" in m for m in messages)


# --------------------------------------------------------------------------- processes


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every composition of `same_run.COMPOSITIONS` trained by one process and by two."""
    one, two = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("two")
    single = subprocess.run([sys.executable, str(WORKER), str(one)], env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    double = torchrun(2, str(WORKER), str(two))
    assert double.returncode == 0, double.stderr[-3000:]
    load = lambda p: torch.load(p, weights_only=False)  # noqa: E731
    return load(one / "rank0.pt"), load(two / "rank0.pt"), load(two / "rank1.pt")


@pytest.mark.slow
@pytest.mark.parametrize("name", [c[0] for c in COMPOSITIONS])
def test_two_processes_train_the_one_process_gan(runs, name):
    """Same weights (the critic's and the generator's, and ema's average) up to
    floating-point reassociation: each model of the two runs differs by less than 2 % of
    the distance its weights moved in training (Adam turns the rounding of a gradient that
    is zero in exact arithmetic, as a relativistic critic's last bias has, into a full
    step, so single tensors can differ more; under bf16 and fp16, as far as half precision
    is from float32); the ranks identical to the bit."""
    single, rank0, rank1 = (r[name] for r in runs)
    assert single["processes"] == 1 and rank0["processes"] == 2
    half = name.endswith(("bf16", "fp16"))
    for role, weights in single["state"].items():
        flat = lambda state: torch.cat([state[k].double().flatten() for k in weights])  # noqa: E731
        start = single["start"].get(role, single["start"]["generator"])  # ema starts as G
        moved = (flat(single["state"][role]) - flat(start)).norm()
        apart = (flat(rank0["state"][role]) - flat(single["state"][role])).norm()
        allowed = 0.02 * moved
        if half:  # half precision rounds more than the reordering:
            # the two-process run may be as far from the one-process one as half precision
            # itself is from float32 (the same composition's fp32 run)
            fp32 = runs[0][name.rsplit("-", 1)[0]]["state"][role]
            allowed = 2 * (flat(single["state"][role]) - flat(fp32)).norm()
        assert moved > 0 and apart <= allowed, (name, role, float(apart), float(moved))
        for key in weights:
            assert torch.equal(rank0["state"][role][key], rank1["state"][role][key]), (role, key)
    for key, value in single["log"].items():  # the logged losses are the global batch's
        if key in ("step_time", "elapsed") or value is None or half and "grad_norm" in key:
            continue
        rel = 0.05 if half else 0.01
        assert rank0["log"][key] == pytest.approx(value, rel=rel, abs=1e-5), key


@pytest.mark.slow
def test_the_47562_case_a_penalised_critic_with_a_bias_in_its_last_layer(runs):
    """pytorch #47562: DDP gave wrong gradients to the last layer's bias under a gradient
    penalty. The default critic ends in a Linear with a bias; its bias matches."""
    single, rank0, _ = (r["wgan-gp"]["state"]["discriminator"] for r in runs)
    bias = [k for k in single if k.endswith("bias")][-1]
    assert single[bias].numel() == 1  # the scoring layer's bias
    torch.testing.assert_close(rank0[bias], single[bias], rtol=1e-4, atol=1e-6)


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gantrix", *args], env=ENV,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_nproc_writes_one_run_folder_that_one_process_resumes(tmp_path):
    """``gantrix train --nproc 2`` writes the run once (rank 0); ``--resume`` with one
    process continues it; the result is the uninterrupted one-process run's."""
    # no learning-rate schedule: it would follow the first run's total of steps
    tiny = ["-t", "hinge", "-t", "gradient-penalty", "-d", "ring8", "--batch-size", "32", "--checkpoint-every", "5",
            "--sample-every", "0", "-q"]
    two = _cli("train", *tiny, "--steps", "10", "--out", str(tmp_path / "two"), "--nproc", "2")
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 processes" in two.stderr and two.stdout.count("done: 10 steps") == 1
    steps = [line for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == 1  # log_every 10: one line, written once
    resumed = _cli("train", "--resume", str(tmp_path / "two"), "--steps", "15", "-q")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    one = _cli("train", *tiny, "--steps", "15", "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    a = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=False)
    assert b["step"] == a["step"] == 15
    for role in ("generator", "discriminator"):
        for key, value in a["models"][role].items():
            torch.testing.assert_close(b["models"][role][key], value, rtol=1e-3, atol=5e-5)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_a_killed_process_ends_the_run_within_seconds_and_it_resumes(tmp_path):
    out = tmp_path / "run"
    launch = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         "-m", "gantrix", "train", "-r", "wgan-gp", "-d", "ring8", "--steps", "100000",
         "--checkpoint-every", "20", "--sample-every", "0", "--out", str(out), "-q"],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.pt").exists() or len(_children(launch.pid)) < 2:
            assert launch.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(1.0)  # a few more checkpoints
        os.kill(_children(launch.pid)[-1], signal.SIGKILL)
        killed = time.monotonic()
        _, stderr = launch.communicate(timeout=60)
        assert time.monotonic() - killed < 15
    finally:
        if launch.poll() is None:
            launch.kill()
    assert launch.returncode != 0
    assert "another process of this distributed run stopped" in stderr
    assert f"continue with gantrix train --resume {out}" in stderr
    step = torch.load(out / "checkpoint.pt", weights_only=False)["step"]
    resumed = _cli("train", "--resume", str(out), "--steps", str(step + 10), "-q")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {out} from step {step}" in resumed.stderr


def test_nproc_mistakes_are_found_before_any_process_starts(app):
    from typer.testing import CliRunner

    runner = CliRunner()
    for args, message in ((["--nproc", "0"], "--nproc must be at least 1, got 0"),
                          (["--nproc", "2", "--batch-size", "63"], "must be a multiple of 2")):
        result = runner.invoke(app, ["train", "-r", "wgan-gp", "-d", "ring8", *args])
        assert result.exit_code == 2 and message in result.output, result.output
