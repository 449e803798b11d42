"""The training step with and without ``--compile`` (torch.compile on the models' forward
passes: `gantrix.compiling`), side by side in one run, on this machine.

Each composition trains ``--steps`` steps with ``gantrix train``, eager then compiled
twice, ``--repeats`` times (alternating, so both see the same machine); the times come from
the runs' metrics.jsonl (``step_time``, one line a step). The first step of a compiled run
pays for the compilation: the *compile time* is that step's time minus the eager run's first
step, once with an empty inductor cache (``TORCHINDUCTOR_CACHE_DIR``: what a first run on a
machine pays) and once with the first run's graphs on disk (what a later run of the same
models pays). The steady step time is the median over the steps after ``--warm``
(recompiles for a second mode or shape happen in the first steps).

    python bench/compile_step.py --data mnist --image-size 32 --steps 40 --repeats 2 \\
        --threads 1 dcgan wgan-gp

Prints one Markdown table: per composition, the eager and compiled step times (medians),
their ratio (eager / compiled: above 1 means --compile is faster), the two compile times,
and the steps after which a first compiled run has paid its compilation back ("never" when
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


def step_times(recipe: str, compiled: bool, args: argparse.Namespace, out: Path,
               cache: Path | None = None) -> list[float]:
    """The step times of one fresh run of ``recipe`` (``--compile`` when ``compiled``, with
    inductor's on-disk cache in ``cache``)."""
    if out.exists():
        shutil.rmtree(out)
    cmd = ["gantrix", "train", "--recipe", recipe, "--data", args.data, "--steps",
           str(args.steps), "--log-every", "1", "--sample-every", "0", "--checkpoint-every", "0",
           "--seed", "0", "--out", str(out), "--quiet"]
    if args.image_size:
        cmd += ["--image-size", str(args.image_size)]
    cmd += ["--device", args.device] + (["--compile"] if compiled else [])
    env = child_environment(args.threads)
    if cache is not None:
        env["TORCHINDUCTOR_CACHE_DIR"] = str(cache)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
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
            first = {"eager": [], "cold": [], "warm": []}
            steady = {"eager": [], "cold": [], "warm": []}

            def timed(kind: str, repeat: int, cache: Path | None) -> None:
                times = step_times(recipe, kind != "eager", args, Path(tmp) / "run", cache)
                first[kind].append(times[0])
                steady[kind].append(statistics.median(times[args.warm:]))
                print(f"{recipe} {kind} #{repeat + 1}: first step {times[0]:.1f} s, then "
                      f"{steady[kind][-1]:.3f} s a step", file=sys.stderr, flush=True)

            for repeat in range(args.repeats):
                cache = Path(tmp) / f"inductor-{recipe}-{repeat}"  # empty: compiled from scratch
                timed("eager", repeat, None)
                timed("cold", repeat, cache)
                timed("warm", repeat, cache)  # the same graphs again, from inductor's disk cache
            eager = statistics.median(steady["eager"])
            fast = statistics.median(steady["cold"] + steady["warm"])
            cold, warm = (statistics.median(first[k]) - statistics.median(first["eager"])
                          for k in ("cold", "warm"))
            saved = eager - fast
            payback = f"{math.ceil(cold / saved):,}" if saved > 0 else "never"
            rows.append(f"| {recipe} | {eager:.3f} | {fast:.3f} | {eager / fast:.2f}× | "
                        f"{cold:.0f} | {warm:.0f} | {payback} |")
    print(f"\n{args.data} ({args.image_size or 'native'} px) on {args.device}, {args.threads} "
          f"thread(s), "
          f"{args.repeats} eager and {2 * args.repeats} compiled runs of {args.steps} steps each (steady: after step "
          f"{args.warm})\n")
    print("| recipe | eager s / step | --compile s / step | eager / compiled | compile time (s), "
          "empty cache | compile time (s), cached on disk | steps to pay the first back |\n"
          "|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
