"""The Stacked-MNIST benchmark of PacGAN (Lin et al. 2018, Tables 2 and 3), run with gantrix.

Each cell is a composition (a TOML config in ``bench/stacked-mnist/``, or any recipe name)
trained with ``gantrix train`` for a fixed number of generator updates and scored by
``gantrix eval`` (26,000 samples: modes hit of 1,000 and the KL of the mode histogram to
uniform, beside the same figures for 26,000 real stacked samples). Runs go to
``--runs`` (one folder per cell and seed); a finished run is not trained again (one scored
on fewer samples, by ``gantrix eval --n``, is scored again), and an interrupted one resumes,
so the script can be stopped and restarted at any time: Ctrl-C or SIGTERM is passed on to
the runs (`gantrix.children`), which save a checkpoint; the script waits for them and exits
with 128+signal.

    python bench/stacked_mnist.py --steps 5000 --seeds 0 1 2 --jobs 2 \\
        dcgan-dquarter pacdcgan4-dquarter

A cell may add tricks to a config with ``+``: ``dcgan-dquarter+top-k`` or
``dcgan-dquarter+lecam:weight=0.1`` trains the config with ``--trick top-k`` (or the
trick with those parameters), so a trick's row and the row without it share everything
else.

``--jobs`` runs cells side by side, the usable CPU cores split among them by gantrix's rule
(`gantrix.threads.split`: cores // jobs, said on stderr; ``--threads`` to choose). The table
(Markdown) is printed last.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gantrix.children import Children
from gantrix.metrics import STACKED_SAMPLES
from gantrix.threads import child_environment, split

CONFIGS = Path(__file__).parent / "stacked-mnist"
#: the gantrix commands running, to which a signal to the script is passed on
CHILDREN = Children()


def config_of(cell: str) -> list[str]:
    """The ``gantrix train`` arguments that name a cell's composition: a config or recipe,
    then each ``+``-joined trick as a ``--trick``."""
    base, *tricks = cell.split("+")
    path = CONFIGS / f"{base}.toml"
    args = ["--config", str(path)] if path.is_file() else ["--recipe", base, "--data", "stacked-mnist"]
    for trick in tricks:
        args += ["--trick", trick]
    return args


def folder_of(cell: str, seed: int) -> str:
    """A run folder's name for a cell and seed (``:``, ``=`` and ``,`` of trick parameters
    made file-name safe)."""
    return f"{cell.translate(str.maketrans(':=,', '_-_'))}-s{seed}"


def run_cell(cell: str, seed: int, steps: int, runs: Path, threads: int, extra: list[str]) -> dict:
    out = runs / folder_of(cell, seed)
    env = child_environment(threads)
    scored = json.loads((out / "eval.json").read_text()) if (out / "eval.json").is_file() else {}
    if scored.get("step") == steps and scored.get("samples") == STACKED_SAMPLES:
        return scored
    if scored.get("step") == steps:
        # trained to the end but scored on another number of samples (gantrix eval --n):
        # scored again, on the papers' 26,000
        cmd = ["gantrix", "eval", str(out)]
    elif (out / "config.toml").is_file():
        cmd = ["gantrix", "train", "--resume", str(out), "--steps", str(steps), "--quiet"]
    else:
        cmd = ["gantrix", "train", *config_of(cell), "--seed", str(seed), "--steps", str(steps),
               "--sample-every", str(max(steps // 5, 1)), "--out", str(out), "--quiet", *extra]
    start = time.perf_counter()
    with open(runs / f"{out.name}.log", "a") as log:
        code = CHILDREN.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if CHILDREN.signum is not None:  # stopped: the run saved a checkpoint (see its log)
        raise SystemExit(128 + CHILDREN.signum)
    if code:
        raise subprocess.CalledProcessError(code, cmd)
    print(f"{cell} seed {seed}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return json.loads((out / "eval.json").read_text())


def seconds_of(out: Path) -> float:
    """Training wall time, from the run's last metrics line."""
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return float(json.loads(lines[-1])["elapsed"])


def stat(values: list[float], digits: int) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cells", nargs="+", help="configs in bench/stacked-mnist/ or recipe names")
    parser.add_argument("--steps", type=int, required=True, help="generator updates per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per run (default: the usable cores // --jobs)")
    parser.add_argument("--runs", type=Path, default=Path("runs/stacked-mnist"))
    parser.add_argument("--train-arg", action="append", default=[],
                        help="an extra argument for gantrix train (repeatable)")
    args = parser.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    threads = split(args.jobs, args.threads, "runs").threads
    jobs = [(c, s) for c in args.cells for s in args.seeds]
    with CHILDREN.forwarding(), ThreadPoolExecutor(args.jobs) as pool:
        try:
            results = list(pool.map(lambda job: run_cell(*job, args.steps, args.runs, threads,
                                                         args.train_arg), jobs))
        except SystemExit:
            print(CHILDREN.stopped(), file=sys.stderr)
            raise
    by_cell: dict[str, list[tuple[dict, float]]] = {}
    for (cell, seed), result in zip(jobs, results):
        by_cell.setdefault(cell, []).append((result, seconds_of(args.runs / folder_of(cell, seed))))
    per_run = f"{threads} thread{'s' * (threads != 1)}"
    print("| composition | steps | seeds | modes (of 1000) | KL | all three digits confident % | "
          f"real data: modes / KL | train time (min, {per_run}) |\n|---|---|---|---|---|---|---|---|")
    for cell, rows in by_cell.items():
        r = [x for x, _ in rows]
        print(f"| {cell} | {args.steps} | {len(r)} | {stat([x['modes'] for x in r], 1)} | "
              f"{stat([x['kl'] for x in r], 2)} | {stat([x['confident'] for x in r], 1)} | "
              f"{r[0]['modes_real']} / {r[0]['kl_real']:.3f} | {stat([t / 60 for _, t in rows], 0)} |")


if __name__ == "__main__":
    main()
