"""bench/kernels.py runs to its table on CPU (it is what a lent GPU runs first, so it must not crash
for a reason a CPU can show): every case once at tiny sizes, and the whole ``--quick`` run."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parents[2] / "bench" / "kernels.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_kernels", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("mode", ["torch", "triton"])
def test_critic_step_case_runs_on_the_dcgan_critic(mode, monkeypatch):
    """The "WGAN-GP critic step" case: the DCGAN critic's (B, 1, 1, 1) output reaches the
    penalty as one score per sample (it crashed there), on both backends (Triton through the
    interpreter on CPU)."""
    monkeypatch.setenv("GANTRIX_KERNELS", "auto")  # the cases set it: restored after the test
    bench = load_bench()
    (op, size, impls, _), = bench.critic_step_cases(ndf=4, image=16, batch=4)
    assert op == "WGAN-GP critic step"
    for impl in impls:
        if impl.name == "gantrix":
            impl.mode = mode
        impl()  # a step: losses, the penalty, backward, Adam
        impl()


@pytest.mark.slow
def test_quick_run_ends_with_its_table(tmp_path):
    out = tmp_path / "rows.json"
    env = dict(os.environ, TRITON_INTERPRET="1", GANTRIX_KERNELS="auto")
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--budget", "0.05", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "| WGAN-GP critic step |" in done.stdout
    assert out.exists()
