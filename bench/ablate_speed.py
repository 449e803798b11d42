"""What ``gantrix ablate --jobs J`` saves: the wall time of one ablation run three ways on
this machine, each in a fresh folder, one after another:

- by hand: the cells' ``gantrix train`` commands (``gantrix ablate --plan``) run one after
  another, as a user would without ablate (each its own process, gantrix's default threads),
  then ``gantrix ablate --collect``;
- ``gantrix ablate --jobs 1`` (cells in this one process, 1 thread each);
- ``gantrix ablate --jobs 2`` (two worker processes, 1 thread each).

    python bench/ablate_speed.py [--steps 4000] [--seeds 3] [--recipe wgan-gp] [--data ring8]

Prints the times, the ratios to "by hand", and whether the three tables agree (by hand runs
with the default threads, so on images its last digits may differ; on 2-D data they agree).
Measure on an idle machine: every figure is wall time.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _gantrix(*args: str) -> list[str]:
    return [sys.executable, "-m", "gantrix.cli", *args]


def _timed(commands: list[list[str]]) -> float:
    start = time.perf_counter()
    for command in commands:
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _without_threads(words: list[str]) -> list[str]:
    """A cell's command without its ``--threads N``: gantrix's default, as a user's own."""
    kept = []
    for word in words:
        if kept[-1:] == ["--threads"]:
            kept.pop()
        else:
            kept.append(word)
    return kept


def _values(out: Path) -> dict:
    table = json.loads((out / "ablation.json").read_text())
    return {v["name"]: v["values"] for v in table["variants"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="wgan-gp")
    parser.add_argument("--data", default="ring8")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()
    base = ["--recipe", args.recipe, "--data", args.data, "--seeds", str(args.seeds),
            *(["--steps", str(args.steps)] if args.steps else [])]
    root = Path(tempfile.mkdtemp(prefix="gantrix-ablate-speed-"))
    try:
        hand = root / "by-hand"
        plan = subprocess.run(_gantrix("ablate", *base, "--out", str(hand), "--plan"),
                              check=True, capture_output=True, text=True).stdout
        cells = [shlex.split(line)[1:] for line in plan.splitlines() if not line.startswith("#")]
        # by hand: a user's own gantrix train per cell, with gantrix's default threads
        by_hand = [_gantrix(*_without_threads(c)) for c in cells]
        seconds = {"by hand": _timed(by_hand + [_gantrix("ablate", "--collect", str(hand))])}
        for jobs in (1, 2):
            out = root / f"jobs-{jobs}"
            seconds[f"--jobs {jobs}"] = _timed([_gantrix("ablate", *base, "--jobs", str(jobs),
                                                         "--out", str(out))])
        same = _values(root / "jobs-1") == _values(root / "jobs-2")
        same_hand = _values(hand) == _values(root / "jobs-1")
        print(f"gantrix ablate {' '.join(base)}: {len(cells)} cells")
        print(f"{'how':<10} {'wall (s)':>9} {'vs by hand':>11}")
        for how, s in seconds.items():
            print(f"{how:<10} {s:9.1f} {seconds['by hand'] / s:10.2f}x")
        print(f"tables of --jobs 1 and --jobs 2 identical: {same}; by hand identical: {same_hand}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
