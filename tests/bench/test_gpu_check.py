"""bench/gpu_check.sh rehearsed end to end on CPU (``--device cpu``: Triton's interpreter, tiny
sizes): every stage runs and exits 0, the files come back in at most 8 files, and the run ends
with the one table. So a lent GPU's few minutes are never lost to a crash a CPU could show."""
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils' timeout")
def test_gpu_check_rehearsal_on_cpu(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=shutil.which("python") or "python3")
    env.pop("GANTRIX_KERNELS", None)
    done = subprocess.run(["bash", "bench/gpu_check.sh", "--device", "cpu"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    log = (tmp_path / "gpu_check.log").read_text() if (tmp_path / "gpu_check.log").exists() else ""
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:] + log[-4000:]
    for stage in ("machine", "install", "first_call", "correctness", "steps", "tests", "kernels",
                  "agreement", "precision"):
        assert f"{stage}: ok in" in done.stdout, stage
    assert "fp32 on CUDA =" in log  # the TF32 state is printed
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == ["gpu_check.log", "stages.tar.gz", "summary.md"]
    with tarfile.open(tmp_path / "stages.tar.gz") as tar:
        names = {Path(n).name for n in tar.getnames()}
    assert {"first_call.json", "correctness.json", "steps.json", "kernels.json", "agreement.json",
            "tests.log"} <= names
    table = done.stdout[done.stdout.index("| part | case | figure |"):]
    for part in ("kernel correctness vs float64", "kernel time vs eager", "training step",
                 "precision vs fp32", "first call (compile)"):
        assert f"| {part} |" in table, part
    assert "missing" not in table
