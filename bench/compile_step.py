"""The training step with and without ``--compile`` (torch.compile on the models' forward
passes: `gantrix.compiling`), side by side in one run, on this machine.

Each composition trains ``--steps`` steps with ``gantrix train``, eager and compiled in
turn, ``--repeats`` times each (alternating, so both see the same machine); the times come
from the runs' metrics.jsonl (``step_time``, one line a step). The first step of a compiled
run pays for the compilation: the *compile time* is that step's time minus the eager run's
first step. The steady step time is the median over the steps after ``--warm`` (recompiles
for a second mode or shape happen in the first steps).

    python bench/compile_step.py --data mnist --image-size 32 --steps 40 --repeats 2 \\
        --threads 1 dcgan wgan-gp

Prints one Markdown table: per composition, the eager and compiled step times (median of
the repeats), their ratio (eager / compiled: above 1 means --compile is faster), the compile
time, and the steps after which the compiled run has paid its compilation back (none when
it is slower).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from gantrix.threads import child_environment


def step_times(recipe: str, compiled: bool, args: argparse.Namespace, out: Path) -> list[float]:
    """The step times of one fresh run of ``recipe`` (``--compile`` when ``compiled``)."""
    if out.exists():
        shutil.rmtree(out)
    cmd = ["gantrix", "train", "--recipe", recipe, "--data", args.data, "--steps",
           str(args.steps), "--log-every", "1", "--sample-every", "0", "--checkpoint-every", "0",
           "--seed", "0", "--out", str(out), "--quiet"]
    if args.image_size:
        cmd += ["--image-size", str(args.image_size)]
    cmd += ["--device", args.device] + (["--compile"] if compiled else [])
    done = subprocess.run(cmd, env=child_environment(args.threads), capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step_time"] for line in lines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="+")
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warm", type=int, default=3, help="steps left out of the steady time")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    if args.steps <= args.warm:
        parser.error("--steps must be more than --warm")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in args.recipes:
            first = {False: [], True: []}
            steady = {False: [], True: []}
            for repeat in range(args.repeats):
                for compiled in (False, True):
                    times = step_times(recipe, compiled, args, Path(tmp) / "run")
                    first[compiled].append(times[0])
                    steady[compiled].append(statistics.median(times[args.warm:]))
                    print(f"{recipe} {'compiled' if compiled else 'eager'} #{repeat + 1}: first "
                          f"step {times[0]:.1f} s, then {steady[compiled][-1]:.3f} s a step",
                          file=sys.stderr, flush=True)
            eager, fast = statistics.median(steady[False]), statistics.median(steady[True])
            compile_s = statistics.median(first[True]) - statistics.median(first[False])
            saved = eager - fast
            payback = f"{math.ceil(compile_s / saved):,}" if saved > 0 else "never"
            rows.append(f"| {recipe} | {eager:.3f} | {fast:.3f} | {eager / fast:.2f}× | "
                        f"{compile_s:.0f} | {payback} |")
    print(f"\n{args.data} ({args.image_size or 'native'} px) on {args.device}, {args.threads} "
          f"thread(s), "
          f"median of {args.repeats} runs each of {args.steps} steps (steady: after step "
          f"{args.warm})\n")
    print("| recipe | eager s / step | --compile s / step | eager / compiled | compile time (s) "
          "| steps to pay it back |\n|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
