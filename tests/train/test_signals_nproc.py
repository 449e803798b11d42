"""A signal to a parent that started gantrix processes reaches them (`gantrix.children`):
``gantrix train --nproc 2`` (real torchrun, gloo on the CPU) stops as one process does,
with a checkpoint, the message, 143, and no process left behind; bench/stacked_mnist.py
passes it to its ``gantrix train`` child and waits for it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gantrix import GantrixError
from gantrix.checkpoint import load_checkpoint
from gantrix.children import Children

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
LINUX = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")


def _descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(condition, proc, timeout=150.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@LINUX
def test_sigterm_to_nproc_2_saves_a_checkpoint_and_leaves_no_process(tmp_path):
    out = tmp_path / "run"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "gantrix", "train", "-t", "nonsaturating", "-d", "ring8",
         "--batch-size", "8", "--latent-dim", "4", "--steps", "100000", "--log-every", "2",
         "--checkpoint-every", "2", "--sample-every", "0", "-q", "--out", str(out),
         "--nproc", "2"],
        env={**ENV, "GANTRIX_CACHE": str(tmp_path / "cache")}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        def trained() -> bool:
            try:
                return load_checkpoint(out / "checkpoint.pt")["step"] >= 2
            except GantrixError:
                return False

        _wait_for(trained, launcher)
        family = _descendants(launcher.pid)
        assert len(family) >= 3  # torchrun and its two processes
        launcher.send_signal(signal.SIGTERM)  # the launcher only, as `kill PID` does
        _, stderr = launcher.communicate(timeout=60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 143, stderr[-3000:]
    step = load_checkpoint(out / "checkpoint.pt")["step"]
    assert (f"interrupted by SIGTERM: checkpoint saved at step {step}; continue with "
            f"gantrix train --resume {out}") in stderr
    assert "Traceback" not in stderr
    time.sleep(0.5)
    assert [pid for pid in family if _alive(pid)] == []  # no orphan goes on training



@LINUX
def test_kill_9_of_the_launcher_stops_torchrun_and_its_processes_with_a_checkpoint(tmp_path):
    """A kill -9 cannot be passed on: torchrun sees its launcher gone and stops the run as
    SIGTERM does (each process saves a checkpoint); no orphan goes on writing the folder."""
    out = tmp_path / "run"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "gantrix", "train", "-t", "nonsaturating", "-d", "ring8",
         "--batch-size", "8", "--latent-dim", "4", "--steps", "100000", "--log-every", "2",
         "--checkpoint-every", "1000", "--sample-every", "0", "-q", "--out", str(out),
         "--nproc", "2"],
        env={**ENV, "GANTRIX_CACHE": str(tmp_path / "cache")}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        def training() -> bool:
            rows = (out / "metrics.jsonl").read_text() if (out / "metrics.jsonl").exists() else ""
            return rows.count("\n") >= 2

        _wait_for(training, launcher)
        family = _descendants(launcher.pid)
        assert len(family) >= 3
        launcher.kill()
        launcher.wait()
        _wait_until(lambda: not [pid for pid in family if _alive(pid)], timeout=60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert load_checkpoint(out / "checkpoint.pt")["step"] > 2  # saved as the run stopped

CHILD = """
import signal, sys, time
def stop(signum, frame):
    print(f"got {signum}", flush=True)
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
print("ready", flush=True)
time.sleep(60)
"""


def test_a_signal_is_passed_on_once_and_nothing_new_starts_after_it(tmp_path):
    children = Children()
    result = {}
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where pytest runs in the background

    def run():
        result["code"] = children.run([sys.executable, "-c", CHILD], stdout=log)

    with open(tmp_path / "log", "w") as log, children.forwarding():
        worker = threading.Thread(target=run)
        worker.start()
        _wait_until(lambda: "ready" in (tmp_path / "log").read_text())
        os.kill(os.getpid(), signal.SIGINT)  # to this process: its handler passes it on
        worker.join(30)
    assert result["code"] == 128 + signal.SIGINT and children.signum == signal.SIGINT
    assert (tmp_path / "log").read_text().split("\n").count(f"got {int(signal.SIGINT)}") == 1
    assert children.run([sys.executable, "-c", "open('started', 'w')"], cwd=tmp_path) == 130
    assert not (tmp_path / "started").exists()
    assert signal.getsignal(signal.SIGINT) == before  # restored


def test_a_closed_terminal_stops_the_children_as_sigterm_does(tmp_path):
    """SIGHUP: the children, in sessions of their own, would not see the terminal close."""
    children = Children()
    result = {}
    with open(tmp_path / "log", "w") as log, children.forwarding():
        worker = threading.Thread(target=lambda: result.setdefault(
            "code", children.run([sys.executable, "-c", CHILD], stdout=log)))
        worker.start()
        _wait_until(lambda: "ready" in (tmp_path / "log").read_text())
        os.kill(os.getpid(), signal.SIGHUP)
        worker.join(30)
    assert result["code"] == 128 + signal.SIGTERM and children.signum == signal.SIGHUP
    assert f"got {int(signal.SIGTERM)}" in (tmp_path / "log").read_text()


def _wait_until(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


FAKE_GANTRIX = """#!{python}
import os, signal, sys, time
log = open(os.environ["FAKE_LOG"], "a")
def stop(signum, frame):
    log.write(f"got {{signum}}\\n"); log.flush()
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, stop)
log.write("started " + " ".join(sys.argv[1:3]) + "\\n"); log.flush()
time.sleep(60)
"""


@LINUX
def test_sigterm_to_the_stacked_mnist_bench_reaches_its_gantrix_train(tmp_path):
    """The bench's child (a stand-in `gantrix` on PATH that records its signals) gets the
    SIGTERM once; the script waits for it and exits 143."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "gantrix"
    fake.write_text(FAKE_GANTRIX.format(python=sys.executable))
    fake.chmod(0o755)
    log = tmp_path / "fake.log"
    log.touch()
    script = Path(__file__).parents[2] / "bench" / "stacked_mnist.py"
    bench = subprocess.Popen(
        [sys.executable, str(script), "--steps", "10", "--runs", str(tmp_path / "runs"),
         "wgan-gp"],
        env={**ENV, "PATH": f"{bin_dir}{os.pathsep}{ENV['PATH']}", "FAKE_LOG": str(log)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: "started train" in log.read_text(), bench, timeout=60)
        child = _descendants(bench.pid)
        bench.send_signal(signal.SIGTERM)
        _, stderr = bench.communicate(timeout=30)
    finally:
        if bench.poll() is None:
            bench.kill()
    assert bench.returncode == 143, stderr
    assert log.read_text().splitlines() == ["started train --recipe", f"got {int(signal.SIGTERM)}"]
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    assert [pid for pid in child if _alive(pid)] == []
