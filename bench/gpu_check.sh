#!/usr/bin/env bash
# Every GPU check of gantrix in one command of at most 8 minutes on an H100 (after the machine
# starts), for one call of the device tool; it ends with one table (bench/kernels.py --summary):
#
#   bash bench/gpu_check.sh                 # from the repository root; logs and JSON go to $OUT
#   bash bench/gpu_check.sh --device cpu    # the rehearsal: every stage at tiny sizes on CPU
#
# Stages, each under its own time limit (and all under GPU_CHECK_BUDGET seconds, 450 by
# default: a stage gets what is left when less), each one's output tee'd to
# $OUT/stages/NAME.log and appended to $OUT/gpu_check.log; a failed or timed-out stage is
# reported and the next one runs:
#  machine      GPU, driver, torch, triton, and TF32's state (what "fp32" means here);
#  install      gantrix in place, without its dependencies (the image has them; nothing can
#               be fetched there); its exit status is checked: without it nothing else runs;
#  first_call   first-call time of every kernel with an empty Triton cache (its compile);
#  correctness  each kernel in fp32/bf16/fp16 against float64;
#  steps        the whole training step: steps/s of DCGAN-64 wgan-gp and rasgan at batch 64
#               and 256 with GANTRIX_KERNELS=triton, =torch, and a hand-written eager loop;
#               GPU-busy share (profiler kernel time over wall time);
#  tests        pytest of the kernel tests and the CUDA-only tests (slow CPU-only tests left out);
#  kernels      bench/kernels.py at the DESIGN.md §5 sizes: wall and GPU (graph replay) time
#               against eager PyTorch and torch.compile, bandwidth against a device copy;
#  agreement    bf16/fp16 against fp32 over 200 wgan-gp steps: loss curves, outputs;
#  precision    the wgan-gp step's time in fp32, bf16 and fp16.
# The device tool brings back at most 8 files from $OUT: the stage logs and JSON files are
# packed into $OUT/stages.tar.gz at the end; gpu_check.log and summary.md stay beside it.
# Nothing here changes the card's settings.
set -uo pipefail
DEVICE=cuda
if [[ "${1:-}" == "--device" ]]; then DEVICE=${2:?--device cpu|cuda}; fi
OUT=${OUT:-/tmp/gantrix-gpu}
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET:-450}
export PYTHONUNBUFFERED=1
STAGES="$OUT/stages"
mkdir -p "$STAGES"
LOG="$OUT/gpu_check.log"
: > "$LOG"
START=$SECONDS
declare -a REPORT=()

if [[ $DEVICE == cpu ]]; then  # the rehearsal: Triton's interpreter, tiny sizes
  export TRITON_INTERPRET=1 CUDA_VISIBLE_DEVICES=""
  TINY=(--tiny) ; KERNEL_ARGS=(--tiny --no-compile --budget 0.02)
  STEP_ARGS=(--size 16 --width 4 --steps 1 --rounds 1 --batches 4)
  AGREE_ARGS=(--size 16 --width 4 --batch-size 4 --agreement 4)
  PREC_ARGS=(--size 16 --width 4 --batch-size 4 --steps 1 --rounds 1)
  TESTS=(${GPU_CHECK_TESTS:-tests/kernels/test_device_guard.py})
  INSTALL=(--dry-run)
else
  TINY=() ; KERNEL_ARGS=(--budget 0.5)
  STEP_ARGS=(--steps 10 --rounds 3 --batches 64 256)
  AGREE_ARGS=(--agreement 200)
  PREC_ARGS=(--steps 10 --rounds 3)
  TESTS=(${GPU_CHECK_TESTS:-tests/kernels tests/train/test_cross_device.py tests/bench/test_kernels_bench.py})
  INSTALL=()
fi

# stage NAME LIMIT_SECONDS COMMAND...: run it under the limit (or what is left of the budget)
stage() {
  local name=$1 limit=$2
  shift 2
  local left=$(( BUDGET - (SECONDS - START) ))
  (( left < limit )) && limit=$left
  if (( limit < 5 )); then
    echo "== $name: not run (the ${BUDGET}s budget is spent)" | tee -a "$LOG"
    REPORT+=("$name: not run (budget)")
    return 1
  fi
  echo "== $name (limit ${limit}s) $*" | tee -a "$LOG"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$STAGES/$name.log" >> "$LOG"
  local rc=${PIPESTATUS[0]}
  local took=$(( SECONDS - t0 ))
  tail -n 4 "$STAGES/$name.log"
  if (( rc == 124 || rc == 137 )); then
    REPORT+=("$name: TIMED OUT after ${took}s")
  elif (( rc != 0 )); then
    REPORT+=("$name: FAILED (exit $rc) after ${took}s")
  else
    REPORT+=("$name: ok in ${took}s")
  fi
  echo "== $name: exit $rc in ${took}s" | tee -a "$LOG"
  return "$rc"
}

machine() {
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv \
    || echo "(no nvidia-smi)"
  "$PY" -c "
import sys, torch
print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda,
      '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')
try:
    import triton; print('triton', triton.__version__)
except ImportError as e:
    print('no triton:', e)
from gantrix.precision import describe_tf32
print(describe_tf32())"
}

stage machine 30 env PY="$PY" bash -c "$(declare -f machine); machine"  # (timeout runs programs, not functions)
if ! stage install 90 "$PY" -m pip install -q --no-index --no-deps --no-build-isolation "${INSTALL[@]}" -e .; then
  echo "gantrix could not be installed: nothing else can run" | tee -a "$LOG"
  printf '%s\n' "${REPORT[@]}"
  exit 2
fi
stage first_call 90 "$PY" bench/kernels.py --device "$DEVICE" "${TINY[@]}" --first-call --json "$STAGES/first_call.json"
stage correctness 60 "$PY" bench/kernels.py --device "$DEVICE" "${TINY[@]}" --correctness --json "$STAGES/correctness.json"
stage steps 120 "$PY" bench/precision.py --device "$DEVICE" --train-steps "${STEP_ARGS[@]}" --json "$STAGES/steps.json"
stage tests 120 "$PY" -m pytest -q -p no:cacheprovider -m "not slow" "${TESTS[@]}"
stage kernels 150 "$PY" bench/kernels.py --device "$DEVICE" "${KERNEL_ARGS[@]}" --json "$STAGES/kernels.json"
stage agreement 60 "$PY" bench/precision.py --device "$DEVICE" "${AGREE_ARGS[@]}" --json "$STAGES/agreement.json"
stage precision 60 "$PY" bench/precision.py --device "$DEVICE" "${PREC_ARGS[@]}"

echo | tee -a "$LOG"
printf '%s\n' "${REPORT[@]}" | tee -a "$LOG"
echo "total $(( SECONDS - START ))s" | tee -a "$LOG"
"$PY" bench/kernels.py --summary "$STAGES" | tee "$OUT/summary.md" | tee -a "$LOG"
tar -czf "$OUT/stages.tar.gz" -C "$OUT" stages && rm -rf "$STAGES"
failures=$(printf '%s\n' "${REPORT[@]}" | grep -vc ': ok in ')
exit $(( failures > 0 ))
