"""A run folder has one writer (`gantrix.run_folder.writing`): a second run on a folder that
a live process trains in is refused, naming that process, before it touches anything; the
lock is the OS's, so a kill -9 frees it; `sample` and `eval` read whole files while a run
writes them. Real processes throughout."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from gantrix import GantrixError, Trainer, run_folder
from gantrix.checkpoint import load_checkpoint

from folder_state import digests

TRAIN = ["--trick", "nonsaturating", "--data", "ring8", "--batch-size", "8", "--latent-dim",
         "4", "--sample-every", "0", "--quiet"]


def _train(out, cache, *extra: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "gantrix.cli", "train", *TRAIN, "--out", str(out), *extra]
    env = {**os.environ, "GANTRIX_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def _wait_for_checkpoint(proc, out, step, timeout=120.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            found = load_checkpoint(out / "checkpoint.pt")["step"]
            if found >= step:
                return found
        except GantrixError:
            pass
        time.sleep(0.1)
    proc.kill()
    pytest.fail("no checkpoint in time")


def _hold(out) -> subprocess.Popen:
    """Another process holding ``out``'s lock (as a training run's `writing` does)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from gantrix.run_folder import writing; "
         "w = writing(Path(sys.argv[1]), str, new=False, prepare=lambda: None); "
         "w.__enter__(); print('held', flush=True); time.sleep(600)", str(out)],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    return holder


LIVE = ("checkpoint.pt", "metrics.jsonl", "losses.png")  # what the live run rewrites


def _live(name):
    """A file the live run keeps rewriting, or the temp file of a write it is making now
    (`.checkpoint.pt.<random>.tmp`, renamed in place a moment later)."""
    return name in LIVE or (name.endswith(".tmp") and "in-flight" not in name
                            and name.lstrip(".").startswith(LIVE))


def _snapshot(folder):
    return digests(folder, skip=_live, mtimes=True)


def test_a_second_writer_is_refused_untouched_and_a_kill_9_frees_the_folder(cli, tmp_path):
    out = tmp_path / "run"
    proc = _train(out, tmp_path / "cache", "--steps", "100000", "--checkpoint-every", "2",
                  "--log-every", "2")
    try:
        _wait_for_checkpoint(proc, out, 2)
        assert (out / ".lock").read_text().split() == [str(proc.pid)]
        stray = out / ".checkpoint.pt.in-flight.tmp"  # what a resumed run used to delete
        stray.write_bytes(b"x")
        before = _snapshot(out)
        for args in (["--resume", out, "--steps", 5], [*TRAIN, "--out", out]):
            result = cli("train", *args)
            assert result.exit_code == 2, result.output
            assert f"{out} is in use: process {proc.pid} is training in it" in result.stderr
            assert f"kill {proc.pid}" in result.stderr and "Traceback" not in result.output
        assert _snapshot(out) == before  # config.toml not rewritten, the temp file kept
        # readers take a whole checkpoint while it is replaced every 2 steps
        steps = set()
        for _ in range(8):
            trainer = Trainer.load(out)
            assert trainer.sample(16).shape == (16, 2)
            steps.add(trainer.step)
        assert len(steps) > 1  # the run went on writing meanwhile
        result = cli("eval", out, "--n", 200)
        assert result.exit_code == 0 and result.stdout.startswith("step "), result.output
        assert proc.poll() is None  # the run never noticed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    step = load_checkpoint(out / "checkpoint.pt")["step"]
    result = cli("train", "--resume", out, "--steps", step + 2)
    assert result.exit_code == 0, result.output
    assert f"from step {step} of {step + 2}" in result.stderr
    assert load_checkpoint(out / "checkpoint.pt")["step"] == step + 2


def test_two_runs_started_on_one_folder_one_trains_the_other_is_refused(tmp_path):
    out = tmp_path / "run"
    procs = [_train(out, tmp_path / "cache", "--steps", "400", "--checkpoint-every", "50")
             for _ in range(2)]
    results = [(p.pid, *p.communicate(timeout=300), p.returncode) for p in procs]
    codes = sorted(code for *_, code in results)
    assert codes == [0, 2], results
    (winner, *_), (_, _, stderr, _) = sorted(results, key=lambda r: r[3])
    assert f"{out} is" in stderr and "Traceback" not in stderr
    assert str(winner) in stderr or "is not empty" in stderr  # refused while or after it ran
    steps = [int(line.split('"step": ')[1].split(",")[0])
             for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 400  # one run's lines, in order
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 400


def test_fit_takes_the_lock_so_a_library_run_is_refused_too(tmp_path):
    """Trainer.fit holds the lock (not only the CLI): a trainer planned before another
    process took the folder is refused at fit, and leaves the folder as it found it."""
    out = tmp_path / "run"
    trainer = Trainer(["nonsaturating"], "ring8", out=out, steps=2, batch_size=8,
                      progress=False)
    holder = _hold(out)
    try:
        with pytest.raises(GantrixError, match=f"process {holder.pid} is training in it"):
            trainer.fit()
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
        with pytest.raises(GantrixError, match=f"process {holder.pid}"):
            Trainer(["nonsaturating"], "ring8", out=out, steps=2, batch_size=8)
    finally:
        holder.kill()
        holder.wait()
    trainer.fit()  # the holder's death freed it
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 2
    assert (out / ".lock").read_text() == ""  # the pid is cleared when the run ends


def test_a_new_run_refuses_a_folder_filled_after_it_was_planned(tmp_path):
    """Two trainers planned on one empty folder: the first trains, the second is refused
    at fit (the folder is no longer empty), and the first run's files stay as they were."""
    out = tmp_path / "run"
    first = Trainer(["nonsaturating"], "ring8", out=out, steps=2, batch_size=8, progress=False)
    second = Trainer(["nonsaturating"], "ring8", out=out, steps=3, batch_size=8,
                     progress=False)
    first.fit()
    before = digests(out)
    with pytest.raises(GantrixError, match="is not empty"):
        second.fit()
    assert digests(out) == before
    first.fit()  # the same trainer may go on (it holds nothing between fits)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 2


def test_the_lock_is_not_needed_to_read_and_a_stale_lock_file_is_ignored(tmp_path):
    out = tmp_path / "run"
    Trainer(["nonsaturating"], "ring8", out=out, steps=2, batch_size=8, progress=False).fit()
    (out / ".lock").write_text("999999999\n")  # left by a killed process: no lock held
    run_folder.check_free(out)
    assert Trainer.resume(out, steps=4, progress=False).fit().step == 4


@pytest.mark.parametrize("kind", ["folder", "fifo", "symlink"])
def test_a_lock_that_is_not_a_plain_file_is_named_and_never_hangs(tmp_path, kind):
    out = tmp_path / "run"
    Trainer(["nonsaturating"], "ring8", out=out, steps=2, batch_size=8, progress=False).fit()
    lock = out / ".lock"
    lock.unlink()
    {"folder": lock.mkdir, "fifo": lambda: os.mkfifo(lock),
     "symlink": lambda: lock.symlink_to(out / "config.toml")}[kind]()
    trainer = Trainer.resume(out, steps=4, progress=False)  # the early check passes it by
    with pytest.raises(GantrixError, match=r"cannot use .*\.lock, the run folder's lock "
                                           r"\(.*\); it must be a plain file: remove it"):
        trainer.fit()
    assert (out / "config.toml").read_text().count("steps = 2") == 1  # untouched


def test_nproc_is_refused_before_it_starts_a_process(cli, tmp_path):
    """`--nproc` checks the lock in its launcher: no torchrun starts for a busy folder."""
    out = tmp_path / "run"
    Trainer(["nonsaturating"], "ring8", out=out, steps=2, batch_size=8, progress=False).fit()
    holder = _hold(out)
    try:
        started = time.monotonic()
        result = cli("train", "--resume", out, "--steps", 4, "--nproc", 2)
        assert result.exit_code == 2, result.output
        assert f"process {holder.pid} is training in it" in result.stderr
        assert time.monotonic() - started < 5  # refused, not started and failed
    finally:
        holder.kill()
        holder.wait()
