"""A real training process killed with SIGKILL resumes from its last checkpoint; SIGTERM
saves one and exits with 143."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from gantrix import GantrixError
from gantrix.checkpoint import load_checkpoint


def _start(out, cache):
    args = [sys.executable, "-m", "gantrix.cli", "train", "--trick", "nonsaturating",
            "--data", "ring8", "--steps", "100000", "--batch-size", "8", "--latent-dim", "4",
            "--checkpoint-every", "5", "--sample-every", "0", "--quiet", "--out", str(out)]
    env = {**os.environ, "GANTRIX_CACHE": str(cache)}
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_checkpoint(proc, path, step, timeout=120.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"training exited early: {proc.communicate()}")
        try:
            found = load_checkpoint(path)["step"]
            if found >= step:
                return found
        except GantrixError:
            pass
        time.sleep(0.1)
    proc.kill()
    pytest.fail("no checkpoint in time")


def test_kill_9_then_resume(cli, tmp_path):
    out = tmp_path / "run"
    proc = _start(out, tmp_path / "cache")
    try:
        _wait_for_checkpoint(proc, out / "checkpoint.pt", 10)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    saved = load_checkpoint(out / "checkpoint.pt")["step"]  # whole, never half-written
    target = saved + 5
    result = cli("train", "--resume", out, "--steps", target, "--quiet")
    assert result.exit_code == 0, result.output
    assert f"from step {saved} of {target}" in result.stderr
    assert load_checkpoint(out / "checkpoint.pt")["step"] == target
    assert not list(out.glob(".*.tmp"))


def test_sigterm_saves_and_exits_143(cli, tmp_path):
    out = tmp_path / "run"
    proc = _start(out, tmp_path / "cache")
    try:
        _wait_for_checkpoint(proc, out / "checkpoint.pt", 5)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143
    assert "interrupted by SIGTERM: checkpoint saved at step" in stderr
    assert "Traceback" not in stderr
    step = load_checkpoint(out / "checkpoint.pt")["step"]
    assert f"step {step};" in stderr
    result = cli("train", "--resume", out, "--steps", step + 2, "--quiet")
    assert result.exit_code == 0, result.output
