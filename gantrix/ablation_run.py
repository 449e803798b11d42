"""Running an ablation (`gantrix.ablation`): its cells trained in this process or in worker
processes side by side, resumably; its cells printed as commands for a scheduler; and the
table collected from finished run folders. ``gantrix.ablate`` is `ablate`.
"""
from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Callable, Sequence

from .ablation import (Arguments, Cell, Layout, check_metric, default_metric, read_score,
                       run_cell, score_cell, scored)
from .ablation_report import Ablation, DIGITS, NAMES, summarize
from .errors import GantrixError

#: the most seeds an ablation takes (a typo guard: 1,000 seeds of every variant is a week)
MAX_SEEDS = 1000


def _arguments(recipe, data, tricks, config, add, swap, steps, threads, keep=()) -> Arguments:
    if data is None:
        from .data import BUILTIN

        raise GantrixError(f"no data: give --data ({', '.join(BUILTIN)}, an image folder or "
                           f"a .npy/.pt file)")
    if steps is not None and steps < 1:
        raise GantrixError(f"--steps must be at least 1, got {steps}")
    if threads < 1:
        raise GantrixError(f"--threads must be at least 1, got {threads}")
    return Arguments(str(data), recipe, None if config is None else str(config),
                     tuple(tricks), tuple(add), tuple(swap), steps, threads, tuple(keep))


def _check_counts(seeds: int, jobs: int | None) -> None:
    if not 1 <= seeds <= MAX_SEEDS:
        raise GantrixError(f"--seeds must be from 1 to {MAX_SEEDS}, got {seeds}")
    if jobs is not None and jobs < 1:
        raise GantrixError(f"--jobs must be at least 1, got {jobs}")


def _metric(metric: str | None, args: Arguments, report: Callable[[str], None]) -> str:
    metric = metric or default_metric(args.data)
    check_metric(metric, args.data, report, args)
    return metric


def ablate(recipe: str | None = None, *, data: str, tricks: Sequence[str] = (),
           config: str | Path | None = None, seeds: int = 3, add: Sequence[str] = (),
           swap: Sequence[str] = (), metric: str | None = None, steps: int | None = None,
           threads: int = 1, jobs: int | None = None, out: str | Path,
           keep: Sequence[str] = (), report: Callable[[str], None] = print,
           command: str = "") -> Ablation:
    """Train the full composition and each variant on ``seeds`` seeds in ``out``, and
    return the table (also written to out/ablation.md, .json, .png).

    ``recipe``/``config``/``tricks`` are the composition, as ``gantrix train`` takes them;
    ``add`` and ``swap`` (``"A=B"``) variants beside the leave-one-out ones (none for the
    tricks named in ``keep``: the setting held fixed, e.g. the architecture). ``metric`` (by
    default the data's: `gantrix.ablation.default_metric`) judges the variants. Each cell
    trains with ``threads`` CPU threads; ``jobs`` cells at once (default: the usable cores
    // ``threads``, or 1 on a GPU). Run again with the same arguments to resume."""
    _check_counts(seeds, jobs)
    args = _arguments(recipe, data, tricks, config, add, swap, steps, threads, keep)
    metric = _metric(metric, args, report)
    layout = Layout.open(out, args, seeds, report)
    with layout.locked():
        scores = run_cells(layout.cells(), metric, _jobs(jobs, threads), threads, report)
    return _written(layout, scores, metric, command)


def plan(recipe: str | None = None, *, data: str, tricks: Sequence[str] = (),
         config: str | Path | None = None, seeds: int = 3, add: Sequence[str] = (),
         swap: Sequence[str] = (), steps: int | None = None, threads: int = 1,
         out: str | Path, keep: Sequence[str] = (),
         report: Callable[[str], None] = print) -> list[str]:
    """Write the ablation folder (plan and variant configs) and return one ``gantrix train``
    command per cell: exactly what `ablate` would run. `collect` builds the table after."""
    _check_counts(seeds, None)
    layout = Layout.open(out, _arguments(recipe, data, tricks, config, add, swap, steps,
                                         threads, keep), seeds, report)
    return [cell.command() for cell in layout.cells()]


def collect(out: str | Path, metric: str | None = None,
            report: Callable[[str], None] = print, command: str = "") -> Ablation:
    """The table of the ablation in ``out`` from its finished run folders (each scored once,
    its score.json kept); unfinished cells are listed as missing."""
    layout = Layout.read(out)
    metric = _metric(metric, layout.args, report)
    scores, missing = {}, []
    with layout.locked():
        for cell in layout.cells():
            if not (Path(cell.folder) / "checkpoint.pt").exists():
                missing.append(f"{cell.variant}/seed-{cell.seed} (not started)")
                continue
            try:
                scores[(cell.variant, cell.seed)] = score_cell(cell, metric)
            except GantrixError as exc:
                missing.append(f"{cell.variant}/seed-{cell.seed} ({str(exc).splitlines()[0]})")
    if missing:
        report(f"{len(missing)} cell(s) not finished, left out of the table: "
               + "; ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    return _written(layout, scores, metric, command)


def _written(layout: Layout, scores: dict, metric: str, command: str) -> Ablation:
    from .periodic_eval import BETTER

    args = layout.args
    what = args.recipe or (Path(args.config).stem if args.config else "")
    title = " + ".join([w for w in (what, *args.tricks) if w]) + f" on {args.data}"
    table = summarize(title, args.data, layout.variants, scores, layout.seeds, metric,
                      BETTER[metric], command)
    table.write(layout.out)
    return table


# ---------------------------------------------------------------------------- running


def _jobs(jobs: int | None, threads: int) -> int:
    """``jobs`` or, by default, the usable cores // ``threads`` (1 on a CUDA machine: the
    cells would share one GPU)."""
    if jobs is not None:
        return jobs
    import torch

    if torch.cuda.is_available():
        return 1
    from .threads import usable_cores

    return max(1, usable_cores() // threads)


def _brief(score: dict, metric: str) -> str:
    m = score["metrics"]
    if score.get("failed"):
        return score["failed"]
    shown = [metric] + [k for k in ("modes", "kl", "confident") if k in m and k != metric][:2]
    parts = [f"{NAMES.get(k, k)} {m[k]:.{DIGITS.get(k, 3)}f}" for k in shown
             if isinstance(m.get(k), (int, float))]
    return ", ".join(parts) + f" ({score['seconds']:.0f} s)"


def work(cell: Cell, metric: str) -> tuple[str, object]:
    """One cell, as a worker runs it: ``("ok", score)``, ``("error", message)`` for a cell
    that could not run (tried again next time), ``("interrupted", (message, exit code))``."""
    from .trainer import TrainingDiverged, TrainingInterrupted

    try:
        return "ok", run_cell(cell, metric)
    except TrainingInterrupted as exc:
        return "interrupted", (str(exc), exc.exit_code)
    except TrainingDiverged as exc:  # a result, the same on every try: kept
        return "ok", _diverged(cell, str(exc))
    except GantrixError as exc:
        return "error", " ".join(str(exc).split())


def _diverged(cell: Cell, message: str) -> dict:
    import json

    from .atomic import write_atomic
    from .ablation import SCORE

    score = {"variant": cell.variant, "seed": cell.seed, "seconds": 0.0, "metrics": {},
             "failed": f"diverged: {message.splitlines()[0]}"}
    write_atomic(Path(cell.folder) / SCORE, (json.dumps(score, indent=1) + "\n").encode())
    return score


class Interrupted(GantrixError):
    """The ablation was stopped by a signal; its cells keep their checkpoints."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def run_cells(cells: list[Cell], metric: str, jobs: int, threads: int,
              report: Callable[[str], None] = print) -> dict[tuple[str, int], dict]:
    """Every cell's score: read back where scored, else trained (resumed) and scored, ``jobs``
    at a time; a line per cell to ``report``. Raises `Interrupted` on Ctrl-C or SIGTERM
    after every running cell has saved its checkpoint."""
    scores: dict[tuple[str, int], dict] = {}
    todo = []
    for cell in cells:
        score = read_score(cell.folder)
        if scored(score, metric):
            scores[(cell.variant, cell.seed)] = score
        else:
            todo.append(cell)
    if scores:
        report(f"{len(scores)} of {len(cells)} cells already scored: read back")
    errors: list[str] = []
    count = len(scores)

    def record(cell: Cell, outcome: tuple[str, object]) -> None:
        nonlocal count
        status, value = outcome
        count += 1
        where = f"[{count}/{len(cells)}] {cell.variant}, seed {cell.seed}"
        if status == "ok":
            scores[(cell.variant, cell.seed)] = value
            report(f"{where}: {_brief(value, metric)}")
        elif status == "error":
            errors.append(f"{cell.variant}/seed-{cell.seed}: {value}")
            report(f"{where}: could not run: {value}")
        else:
            message, code = value
            raise Interrupted(f"ablation interrupted ({message.split(':')[0]}); the cells "
                              f"keep their checkpoints: run the same command again to resume",
                              code)

    jobs = min(jobs, len(todo)) or 1
    with _stop_requests() as stop:
        if jobs == 1:
            for cell in todo:
                if stop.is_set():
                    break
                record(cell, work(cell, metric))
        else:
            _in_workers(todo, metric, jobs, threads, stop, record)
        if stop.is_set():
            raise Interrupted(f"ablation interrupted by {signal.Signals(stop.signum).name}; "
                              f"the cells keep their checkpoints: run the same command again "
                              f"to resume", 128 + stop.signum)
    if errors:
        report(f"{len(errors)} cell(s) could not run and are left out (run again to retry): "
               + "; ".join(errors[:3]))
    return scores


class _Stop:
    """Whether Ctrl-C or SIGTERM asked the ablation to stop: an event the worker processes
    share (a cell not yet started is not started), and the signal."""

    def __init__(self, event):
        self.event, self.signum = event, 0

    def is_set(self) -> bool:
        return self.event.is_set()


@contextlib.contextmanager
def _stop_requests():
    """Catch Ctrl-C and SIGTERM while the cells run (a trainer's own handlers take over
    inside its `fit`, and save its checkpoint)."""
    import multiprocessing

    stop = _Stop(multiprocessing.get_context("spawn").Event())

    def ask(signum, frame):
        stop.signum = stop.signum or signum
        stop.event.set()

    previous = {s: signal.signal(s, ask) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


_worker_stop = None


def _worker(threads: int, parent: int, stop) -> None:
    """Initializer of a cell worker: `gantrix.threads.worker`, and the shared stop event."""
    global _worker_stop
    from .threads import worker

    worker(threads, parent)
    _worker_stop = stop


def _work_unless_stopped(cell: Cell, metric: str) -> tuple[str, object]:
    if _worker_stop is not None and _worker_stop.is_set():
        return "interrupted", ("stopped before it started", 0)
    return work(cell, metric)


def _in_workers(cells: list[Cell], metric: str, jobs: int, threads: int, stop: _Stop,
                record) -> None:
    """`work` on every cell in ``jobs`` worker processes. When ``stop`` is set, a SIGTERM
    goes to each worker (a training saves its checkpoint and returns; Ctrl-C reached them
    from the terminal already) and cells not started are not started. A worker killed from
    outside (the OOM killer, a kill -9) breaks the pool: the cells it took down are given
    to a new pool once (they resume from their checkpoints), then reported."""
    from .threads import split

    split(jobs, threads, "cells")
    retried: set[Cell] = set()
    while cells and not stop.is_set():
        again = []
        for cell in _one_pool(cells, metric, jobs, threads, stop, record):
            if cell in retried:
                record(cell, ("error", "its worker process was killed twice (out of "
                                       "memory?); run again to retry"))
            else:
                retried.add(cell)
                again.append(cell)
        cells = again


def _one_pool(cells: list[Cell], metric: str, jobs: int, threads: int, stop: _Stop,
              record) -> list[Cell]:
    """`_in_workers` with one pool; returns the cells a broken pool took down."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker, initargs=(threads, os.getpid(), stop.event))
    forwarded, broken = False, []
    try:
        pending = {pool.submit(_work_unless_stopped, cell, metric): cell for cell in cells}
        while pending:
            done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            if stop.is_set() and not forwarded:
                forwarded = True
                if stop.signum == signal.SIGTERM:
                    for process in list(getattr(pool, "_processes", {}).values()):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(process.pid, signal.SIGTERM)
            for future in done:
                cell = pending.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    if not stop.is_set():
                        broken.append(cell)
                    continue
                if stop.is_set() and outcome[0] != "ok":
                    continue  # `run_cells` says it once
                if outcome[0] == "interrupted":  # a signal sent to that worker alone
                    outcome = ("error", outcome[1][0])
                record(cell, outcome)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return broken
