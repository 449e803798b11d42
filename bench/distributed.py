"""Data-parallel training on the CPU: steps/s of one process with 2 threads against two
processes (torchrun, gloo) with 1 thread each, on the same global batch, and the share of a
two-process step spent in collectives (gradient averaging, gathered batches: the time
includes waiting for the slower process).

    python bench/distributed.py                      # ring8 wgan-gp and 32×32 MNIST dcgan
    python bench/distributed.py --steps 300 --cases ring8

Each configuration trains ``--warmup`` steps, then ``--steps`` timed steps (wall time of the
training loop, log lines included). Prints a Markdown table last.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: name: (recipe or tricks, data, global batch)
CASES = {
    "ring8": ("wgan-gp", "ring8", 256),
    "mnist": ("dcgan", "mnist", 64),
}


def worker(case: str, warmup: int, steps: int, out: str) -> None:
    """Train ``case`` in this process (one of several under torchrun) and write the timing."""
    import torch

    from gantrix import distributed
    from gantrix.trainer import Trainer

    distributed.init_from_environment("cpu")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    spent = {"seconds": 0.0}

    def timed(function):
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent["seconds"] += time.perf_counter() - start
        return run

    for name in ("average_gradients", "gather_rows", "mean_across_ranks"):
        setattr(distributed, name, timed(getattr(distributed, name)))
    recipe, data, batch = CASES[case]
    trainer = Trainer(recipe, data, steps=warmup + steps, batch_size=batch, seed=0, device="cpu",
                      progress=False, log_every=10, sample_every=0, checkpoint_every=0)
    trainer.settings.steps = warmup  # warm up first (the schedules keep the whole length)
    trainer.fit()
    trainer.settings.steps = warmup + steps
    spent["seconds"] = 0.0
    start = time.perf_counter()
    trainer.fit()
    step_time = (time.perf_counter() - start) / steps
    if distributed.is_writer():
        # the collectives' share: their time over the timed steps, against the steps' time
        Path(out).write_text(json.dumps({
            "steps_per_s": 1.0 / step_time, "processes": distributed.world_size(),
            "threads": torch.get_num_threads(),
            "collective_seconds_per_step": spent["seconds"] / steps}))
    distributed.exit_now(0)


def measure(case: str, processes: int, threads: int, warmup: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        args = [__file__, "--worker", case, "--warmup", str(warmup), "--steps", str(steps),
                "--out", out]
        if processes > 1:
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                       f"--nproc-per-node={processes}", *args]
        else:
            command = [sys.executable, *args]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{case} with {processes} processes failed:\n{done.stderr[-3000:]}")
        return json.loads(Path(out).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.warmup, args.steps, args.out)
        return
    lines = ["| case (global batch) | 1 process × 2 threads | 2 processes × 1 thread | "
             "2 processes / 1 | collectives' share of a 2-process step |",
             "|---|---|---|---|---|"]
    for case in args.cases:
        one = measure(case, 1, 2, args.warmup, args.steps)
        two = measure(case, 2, 1, args.warmup, args.steps)
        share = two["collective_seconds_per_step"] * two["steps_per_s"]
        recipe, data, batch = CASES[case]
        lines.append(f"| {recipe} on {data} ({batch}) | {one['steps_per_s']:.1f} steps/s | "
                     f"{two['steps_per_s']:.1f} steps/s | {two['steps_per_s'] / one['steps_per_s']:.2f}× "
                     f"| {100 * share:.0f} % |")
        print(lines[-1], file=sys.stderr)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
