"""Compositions compared at the same wall-clock budget: each trains for as many generator
updates as fit in ``--budget`` seconds, as timed on this machine, and is scored by the
evaluation `gantrix train` ends with (`gantrix eval`'s figures, in eval.json).

A composition that costs twice as much a step gets half the steps: that is the comparison
a user with a fixed machine and a fixed afternoon makes (the ResNet against DCGAN's models,
issue 31). The step counts are settled once, before any run, by a short *calibration*:
each composition trains ``--calibrate`` steps on each data set with the threads the runs
will have, side by side as the runs will be (``--jobs``), and the median time of the
steps after the first (``step_time`` in metrics.jsonl) is its seconds per step. The
budget divided by it is the run's ``--steps``, so the runs themselves are deterministic
and a rerun trains the same steps (the calibration is kept in ``RUNS/calibration.json``).

    python bench/same_budget.py --budget 240 --seeds 0 1 2 --jobs 2 \\
        --data mnist --data stacked-mnist --train-arg=--image-size=32 \\
        --cell "wgan-gp, resnet=--recipe wgan-gp-resnet --trick resnet:width=32,critic_width=32" \\
        --cell "wgan-gp, dcgan=--recipe wgan-gp-resnet --trick dcgan:critic_norm=none"

A cell is ``LABEL=ARGUMENTS``: the label names its row, the arguments are those of
``gantrix train`` (a recipe, tricks). A finished run is not trained again and an
interrupted one resumes, so the script can be stopped (Ctrl-C, SIGTERM: passed on to the
runs, which save a checkpoint) and started again with the same command. One Markdown
table per data set is printed last and, with ``--json``, every run's figures are written.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import shutil
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from gantrix.children import Children
from gantrix.threads import child_environment, split

#: the gantrix commands running, to which a signal to the script is passed on
CHILDREN = Children()

#: eval.json's figures worth a column, in order, with their heading and decimals
COLUMNS = [("asked_class", "asked class read back %", 1), ("classes", "classes (of 10)", 1),
           ("modes", "modes", 1), ("high_quality", "high quality %", 1),
           ("confident", "confident %", 1),
           ("kl", "KL to uniform", 2), ("fd", "Fréchet distance", 1)]


@dataclass(frozen=True)
class Cell:
    """One composition: its row's label and its ``gantrix train`` arguments."""
    label: str
    args: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> "Cell":
        label, sep, args = text.partition("=")
        if not sep or not label.strip() or not args.strip():
            raise argparse.ArgumentTypeError(f"a cell is LABEL=ARGUMENTS, got {text!r}")
        return cls(label.strip(), tuple(shlex.split(args)))

    def folder(self, data: str, tag: str) -> str:
        """A run folder's name: the label made file-name safe, a short digest of the
        arguments (two cells with one label never share a folder), the data and ``tag``."""
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.label).strip("-")
        digest = hashlib.sha1("\0".join(self.args).encode()).hexdigest()[:6]
        return f"{safe}-{digest}-{data}-{tag}"


def train(cmd: list[str], log: Path, threads: int) -> None:
    """Run one gantrix command, its output appended to ``log``; a signal to the script
    stops it (it saves a checkpoint) and then the script."""
    with open(log, "a") as out:
        code = CHILDREN.run(cmd, env=child_environment(threads), stdout=out,
                            stderr=subprocess.STDOUT)
    if CHILDREN.signum is not None:
        raise SystemExit(128 + CHILDREN.signum)
    if code:
        raise subprocess.CalledProcessError(code, cmd, output=f"see {log}")


def metrics_lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def calibrate(cell: Cell, data: str, steps: int, runs: Path, threads: int,
              extra: list[str]) -> float:
    """Seconds per generator update of ``cell`` on ``data``: the median ``step_time`` of
    ``steps`` logged steps after the first (which pays for warm-up)."""
    out = runs / "calibration" / cell.folder(data, "calib")
    if not (out / "eval.json").is_file():
        if out.exists():  # an interrupted calibration: timed again from the start
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        train(["gantrix", "train", *cell.args, "--data", data, *extra, "--seed", "0",
               "--steps", str(steps + 1), "--log-every", "1", "--sample-every", "0",
               "--out", str(out), "--quiet"], out.parent / f"{out.name}.log", threads)
    times = [line["step_time"] for line in metrics_lines(out)[1:]]
    return statistics.median(times)


def run(cell: Cell, data: str, seed: int, steps: int, runs: Path, threads: int,
        extra: list[str]) -> dict:
    """Train (or resume) one run to ``steps`` and return its eval.json with its training
    wall time (``train_seconds``) and steps."""
    out = runs / cell.folder(data, f"s{seed}")
    scored = json.loads((out / "eval.json").read_text()) if (out / "eval.json").is_file() else {}
    if scored.get("step") != steps:
        if (out / "config.toml").is_file():
            cmd = ["gantrix", "train", "--resume", str(out), "--steps", str(steps), "--quiet"]
        else:
            cmd = ["gantrix", "train", *cell.args, "--data", data, *extra, "--seed", str(seed),
                   "--steps", str(steps), "--sample-every", "0", "--out", str(out), "--quiet"]
        train(cmd, runs / f"{out.name}.log", threads)
        scored = json.loads((out / "eval.json").read_text())
        print(f"{cell.label} on {data}, seed {seed}: {steps} steps", file=sys.stderr, flush=True)
    return {**scored, "train_seconds": metrics_lines(out)[-1]["elapsed"], "run": str(out)}


def stat(values: list[float], digits: int) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(data: str, cells: list[Cell], per_step: dict, steps: dict, results: dict,
          budget: float, threads: int) -> str:
    """The Markdown table of one data set: a row per cell, mean ± std over the seeds (each
    seed's value after it where there is room)."""
    rows = [results[(c, data)] for c in cells]
    present = [col for col in COLUMNS
               if any(r.get(col[0]) is not None for runs_ in rows for r in runs_)]
    head = ["composition", "s / step", f"steps in {budget:.0f} s"]
    head += [title + (" (floor)" if key == "fd" else "") for key, title, _ in present]
    head += [f"train time (s, {threads} thread{'s' * (threads != 1)})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell, runs_ in zip(cells, rows):
        row = [cell.label, f"{per_step[(cell, data)]:.2f}", str(steps[(cell, data)])]
        for key, _, digits in present:
            values = [r[key] for r in runs_ if r.get(key) is not None]
            text = stat(values, digits) if values else "—"
            if values and len(values) > 1:
                text += " (" + ", ".join(f"{v:.{digits}f}" for v in values) + ")"
            if key == "fd" and values:
                text += f" ({runs_[0]['fd_real']:.1f})"
            row.append(text)
        row.append(stat([r["train_seconds"] for r in runs_], 0))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", type=Cell.parse, action="append", required=True,
                        help="LABEL=ARGUMENTS of gantrix train (repeatable)")
    parser.add_argument("--data", action="append", required=True, help="repeatable")
    parser.add_argument("--budget", type=float, required=True,
                        help="seconds of training per run (as calibrated)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per run (default: the usable cores // --jobs)")
    parser.add_argument("--calibrate", type=int, default=3,
                        help="timed steps per composition, after a first untimed one")
    parser.add_argument("--runs", type=Path, default=Path("runs/same-budget"))
    parser.add_argument("--train-arg", action="append", default=[],
                        help="an extra argument for every gantrix train (repeatable)")
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    args = parser.parse_args()
    if args.budget <= 0 or args.calibrate < 1:
        parser.error("--budget must be positive and --calibrate at least 1")
    args.runs.mkdir(parents=True, exist_ok=True)
    threads = split(args.jobs, args.threads, "runs").threads
    pairs = [(c, d) for d in args.data for c in args.cell]
    with CHILDREN.forwarding(), ThreadPoolExecutor(args.jobs) as pool:
        try:
            per_step = dict(zip(pairs, pool.map(
                lambda p: calibrate(*p, args.calibrate, args.runs, threads, args.train_arg),
                pairs)))
            steps = {p: max(1, int(args.budget / s)) for p, s in per_step.items()}
            for (cell, data), s in per_step.items():
                print(f"{cell.label} on {data}: {s:.2f} s a step, {steps[(cell, data)]} steps",
                      file=sys.stderr)
            jobs = [(c, d, seed) for c, d in pairs for seed in args.seeds]
            done = list(pool.map(lambda j: run(*j, steps[j[:2]], args.runs, threads,
                                               args.train_arg), jobs))
        except SystemExit:
            print(CHILDREN.stopped(), file=sys.stderr)
            raise
    results: dict = {}
    for (cell, data, _), result in zip(jobs, done):
        results.setdefault((cell, data), []).append(result)
    if args.json:
        args.json.write_text(json.dumps([
            {"label": c.label, "args": list(c.args), "data": d, "seconds_per_step": per_step[(c, d)],
             "steps": steps[(c, d)], "runs": rs} for (c, d), rs in results.items()], indent=1))
    for data in args.data:
        print(f"\n### {data}: {args.budget:.0f} s of training per run\n")
        print(table(data, args.cell, per_step, steps, results, args.budget, threads))


if __name__ == "__main__":
    main()
