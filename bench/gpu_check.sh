#!/usr/bin/env bash
# Every GPU check of gantrix.kernels in one command, for a lent GPU machine (one call of the
# device tool, about 6–8 minutes on an H100 after the machine starts):
#
#   bash bench/gpu_check.sh            # from the repository root; logs and JSON go to $OUT
#
# 1. the machine: GPU, driver, torch, triton (the image's own; nothing is downloaded);
# 2. gantrix installed in place without its dependencies (the image has torch, triton, pluggy,
#    typer; nothing can be fetched there);
# 3. pytest tests/kernels: on CUDA the Triton path runs compiled, plus the CUDA-only tests
#    (bf16/fp16, GPU-sized shapes, CUDA-graph capture and replay);
# 4. bench/kernels.py at the DESIGN.md §5 sizes: wall time, GPU time (graph replay) and
#    bandwidth against a device copy, side by side with eager PyTorch and torch.compile.
# 5. bench/precision.py: the DCGAN-64 wgan-gp step in fp32, bf16 and fp16 (target ≥ 1.5×).
# The kernel benchmark's table is printed last. Nothing here changes the card's settings.
set -uo pipefail
OUT=${OUT:-/tmp/gantrix-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  "$PY" -c "import sys, torch, triton; print('python', sys.version.split()[0], '| torch', torch.__version__, '| triton', triton.__version__, '| cuda', torch.version.cuda, '|', torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/machine.txt"

"$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . 2>&1 | tail -3

"$PY" -m pytest -q -p no:cacheprovider tests/kernels 2>&1 | tee "$OUT/pytest-kernels.txt" | tail -25
tests_rc=${PIPESTATUS[0]}

"$PY" bench/precision.py --steps 10 --rounds 3 2>&1 | tee "$OUT/bench-precision.txt" | tail -6
precision_rc=${PIPESTATUS[0]}

"$PY" bench/kernels.py --json "$OUT/kernels.json" 2>&1 | tee "$OUT/bench-kernels.txt" | grep -v '^{'
bench_rc=${PIPESTATUS[0]}

echo "pytest tests/kernels exit $tests_rc, bench/precision.py exit $precision_rc, bench/kernels.py exit $bench_rc"
exit $(( tests_rc || bench_rc || precision_rc ))
