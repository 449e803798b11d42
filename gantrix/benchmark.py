"""The quality benchmark: recipes × data × seeds, trained with default settings, scored with
`gantrix.metrics`, and written as Markdown tables (mean ± std over seeds, and time).

Each entry is a recipe name or a lone trick (a bare loss such as ``minimax`` trains with the
core's defaults and nothing else). A cell that cannot run (a recipe that does not fit the
data) is reported with its reason instead of numbers.
"""
from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from .errors import GantrixError

BEGIN = "<!-- gantrix bench quality: begin -->"
END = "<!-- gantrix bench quality: end -->"


@dataclass
class Cell:
    """One recipe on one data set: a result per seed, or why it could not run."""

    recipe: str
    data: str
    runs: list[dict] = field(default_factory=list)
    error: str | None = None
    steps: int | None = None
    batch_size: int | None = None


def run_one(recipe: str, data: str, seed: int, steps: int | None = None) -> tuple[dict, int, int]:
    """Train and evaluate one run in memory; returns its metrics (with ``seconds``, the
    training wall time, and ``seed``) and the steps and batch size it used."""
    from .trainer import Trainer

    trainer = Trainer(recipe, data, seed=seed, steps=steps, progress=False)
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    result = trainer.evaluate()
    result["seconds"] = seconds
    result["seed"] = seed
    return result, trainer.settings.steps, trainer.settings.batch_size


def _run_or_error(recipe: str, data: str, seed: int, steps: int | None):
    """`run_one`, or the first line of the `GantrixError` that stopped it (a plain string
    crosses a process boundary where an exception object may not)."""
    from .trainer import TrainingInterrupted

    try:
        return run_one(recipe, data, seed, steps)
    except TrainingInterrupted:  # Ctrl-C or SIGTERM stops the benchmark, not just the run
        raise
    except GantrixError as exc:  # the first line, and the first finding under a heading
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]


def worker_pool(jobs: int, threads: int | None = None, what: str = "runs"):
    """A pool of ``jobs`` worker processes (spawned) that train side by side, the usable
    cores split among them by `gantrix.threads.split` (which says what it chose), or None
    for ``jobs=1`` (train in this process). ``gantrix bench quality --jobs`` and
    ``gantrix ablate --jobs`` use it."""
    if jobs <= 1:
        return None
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from .threads import split, worker

    choice = split(jobs, threads, what)
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=worker, initargs=(choice.threads, os.getpid()))


def quality_grid(recipes: Sequence[str], datas: Sequence[str], seeds: int, *,
                 steps: int | None = None, report: Callable[[str], None] = print,
                 checkpoint: Callable[[list[Cell]], None] | None = None,
                 jobs: int = 1, threads: int | None = None) -> list[Cell]:
    """Run every cell; ``report`` gets a line per run, ``checkpoint`` the cells so far after
    each cell (to write partial results). ``jobs`` > 1 trains that many runs side by side in
    worker processes (`worker_pool`), the usable cores split among them (``threads`` each
    when given); every run is seeded, so the numbers are those of ``jobs=1`` (with as many
    threads: `gantrix.threads`)."""
    from .data import load_data
    from .recipe import Recipe

    for recipe in recipes:  # unknown names and unusable data fail before any training
        Recipe(recipe).check()
    for data in datas:
        load_data(data)
    cells = [Cell(recipe, data) for data in datas for recipe in recipes]
    pool = worker_pool(jobs, threads)
    with pool or contextlib.nullcontext():
        pending = [[pool.submit(_run_or_error, c.recipe, c.data, seed, steps)
                    for seed in range(seeds)] for c in cells] if pool else None
        for i, cell in enumerate(cells):  # in table order, as the runs finish
            for seed in range(seeds):
                outcome = (pending[i][seed].result() if pool
                           else _run_or_error(cell.recipe, cell.data, seed, steps))
                if not _record(cell, seed, outcome, report):
                    break
            if checkpoint is not None:
                checkpoint(cells[:i + 1])
    return cells


def _record(cell: Cell, seed: int, outcome, report: Callable[[str], None]) -> bool:
    """Add one run's outcome (a result, or an error message) to ``cell``; False on error."""
    if isinstance(outcome, str):
        cell.error = outcome
        report(f"{cell.recipe} on {cell.data}: cannot run: {outcome}")
        return False
    result, cell.steps, cell.batch_size = outcome
    cell.runs.append(result)
    report(f"{cell.recipe} on {cell.data}, seed {seed}: {_brief(result)}")
    return True


def _brief(r: dict) -> str:
    if "modes_real" in r:
        return f"{r['modes']}/{r['total_modes']} modes, KL {r['kl']:.2f}, {r['seconds']:.0f} s"
    if "modes" in r:
        return f"{r['modes']}/{r['total_modes']} modes, {r['high_quality']:.1f}% HQ, {r['seconds']:.0f} s"
    if "classes" in r:
        return f"{r['classes']}/10 classes, FD {r['fd']:.1f}, {r['seconds']:.0f} s"
    return f"{r['seconds']:.0f} s"


def _stat(values: list[float | None], digits: int = 1) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    mean = statistics.fmean(vals)
    if len(vals) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def _headline(sample: dict) -> tuple[str, ...]:
    """The figures each kind of table judges a run by, most important first (higher is
    better): the worst seed is the lowest in that order (a seed that drops modes is worse
    than one a little off them), and each of them is flagged where the seeds disagree."""
    return (("modes",) if "modes_real" in sample else ("modes", "high_quality")
            if "modes" in sample else ("classes", "confident") if "classes" in sample else ())


#: the flag of a cell that depends on its seed, and the note under a table that has one.
UNSTABLE = "⚠"
UNSTABLE_NOTE = (f"{UNSTABLE}: the std over seeds is more than a quarter of the mean; the "
                 "cell depends on the seed (its worst seed is beside it).")


def unstable(values: list[float]) -> bool:
    """True when the std of ``values`` over seeds exceeds a quarter of their mean."""
    return len(values) > 1 and statistics.stdev(values) > abs(statistics.fmean(values)) / 4


def _worst(runs: list[dict], keys: tuple[str, ...]) -> str:
    r = min(runs, key=lambda x: tuple(x[k] for k in keys))
    seed = f"seed {r['seed']}"
    if "modes_real" in r:
        return f"{r['modes']} / {r['kl']:.2f} ({seed})"
    if "modes" in r:
        return f"{r['modes']}/{r['total_modes']}, {r['high_quality']:.1f} % ({seed})"
    return f"{r['confident']:.1f} % ({seed})"


def tables(cells: list[Cell]) -> str:
    """One Markdown table per data set; with several seeds, each cell's worst seed and a
    flag (`UNSTABLE`) where the seeds disagree."""
    out = []
    for data in dict.fromkeys(c.data for c in cells):
        rows = [c for c in cells if c.data == data]
        sample = next((c.runs[0] for c in rows if c.runs), {})
        keys = _headline(sample)
        seeded = bool(keys) and max(len(c.runs) for c in rows) > 1
        if "modes_real" in sample:
            cols = ["modes (of {k})".format(k=sample["total_modes"]), "KL to uniform",
                    "all digits confident %", "real data: modes / KL"]
        elif "modes" in sample:
            cols = ["modes (of {k})".format(k=sample["total_modes"]), "high quality %",
                    "KL to uniform"]
        elif "classes" in sample:
            cols = ["classes (of 10)", "confident %", "KL to uniform",
                    "Fréchet distance (real-vs-real floor)"]
        else:
            cols = []
        cols = ["recipe", "steps × batch", *cols,
                *(["worst seed: modes / KL" if "modes_real" in sample else "worst seed"]
                  if seeded else []), "train time (s)"]
        lines = [f"### {data}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        flagged = False
        for c in rows:
            if c.error:
                lines.append(f"| {c.recipe} | – | cannot run: {c.error} |")
                continue
            r = c.runs
            stat = {k: _stat([x[k] for x in r], 2 if k == "kl" else 1)
                    for k in ("modes", "high_quality", "kl", "confident", "classes", "fd")
                    if k in r[0]}
            for key in keys:
                if unstable([x[key] for x in r]):
                    stat[key] += f" {UNSTABLE}"
                    flagged = True
            if "modes_real" in sample:
                values = [stat["modes"], stat["kl"], stat["confident"],
                          f"{r[0]['modes_real']} / {r[0]['kl_real']:.3f}"]
            elif "modes" in sample:
                values = [stat["modes"], stat["high_quality"], stat["kl"]]
            elif "classes" in sample:
                floor = statistics.fmean(x["fd_real"] for x in r)
                values = [stat["classes"], stat["confident"], stat["kl"],
                          f"{stat['fd']} ({floor:.1f})"]
            else:
                values = []
            values = [c.recipe, f"{c.steps} × {c.batch_size}", *values,
                      *([_worst(r, keys)] if seeded else []),
                      _stat([x["seconds"] for x in r], 0)]
            lines.append("| " + " | ".join(values) + " |")
        if flagged:
            lines += ["", UNSTABLE_NOTE]
        out.append("\n".join(lines))
    return "\n\n".join(out)


def machine() -> str:
    """The machine the numbers come from, in one line."""
    from .threads import usable_cores

    return (f"{platform.processor() or platform.machine()}, {usable_cores()} CPU cores, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads)")


def write_results(path: Path, cells: list[Cell], command: str) -> None:
    """Write the tables to ``path`` between the benchmark's markers, keeping any text the
    file has outside them (the analysis written by hand)."""
    seeds = max((len(c.runs) for c in cells), default=0)
    block = "\n".join([
        BEGIN,
        f"Command: `{command}`",
        "",
        f"Machine: {machine()}. Seeds per cell: {seeds} (mean ± std over seeds). "
        "Metrics on 2,500 samples (26,000 on stacked-mnist; `gantrix eval`).",
        "",
        tables(cells),
        END,
    ])
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        text = before + block + rest.split(END, 1)[1]
    else:
        text = "# Quality of the recipes\n\n" + block + "\n" + text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
