"""The quality benchmark: recipes × data × seeds, trained with default settings, scored with
`gantrix.metrics`, and written as Markdown tables (mean ± std over seeds, and time).

Each entry is a recipe name or a lone trick (a bare loss such as ``minimax`` trains with the
core's defaults and nothing else). A cell that cannot run (a recipe that does not fit the
data) is reported with its reason instead of numbers.
"""
from __future__ import annotations

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
    training wall time) and the steps and batch size it used."""
    from .trainer import Trainer

    trainer = Trainer(recipe, data, seed=seed, steps=steps, progress=False)
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    result = trainer.evaluate()
    result["seconds"] = seconds
    return result, trainer.settings.steps, trainer.settings.batch_size


def quality_grid(recipes: Sequence[str], datas: Sequence[str], seeds: int, *,
                 steps: int | None = None, report: Callable[[str], None] = print,
                 checkpoint: Callable[[list[Cell]], None] | None = None) -> list[Cell]:
    """Run every cell; ``report`` gets a line per run, ``checkpoint`` the cells so far after
    each cell (to write partial results)."""
    from .data import load_data
    from .trainer import recipe_or_trick

    for recipe in recipes:  # unknown names and unusable data fail before any training
        recipe_or_trick(recipe).check()
    for data in datas:
        load_data(data)
    cells = []
    for data in datas:
        for recipe in recipes:
            cell = Cell(recipe, data)
            cells.append(cell)
            for seed in range(seeds):
                try:
                    result, cell.steps, cell.batch_size = run_one(recipe, data, seed, steps)
                except GantrixError as exc:
                    cell.error = str(exc).splitlines()[0]
                    report(f"{recipe} on {data}: cannot run: {cell.error}")
                    break
                cell.runs.append(result)
                report(f"{recipe} on {data}, seed {seed}: {_brief(result)}")
            if checkpoint is not None:
                checkpoint(cells)
    return cells


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


def tables(cells: list[Cell]) -> str:
    """One Markdown table per data set."""
    out = []
    for data in dict.fromkeys(c.data for c in cells):
        rows = [c for c in cells if c.data == data]
        sample = next((c.runs[0] for c in rows if c.runs), {})
        if "modes_real" in sample:
            head = ("| recipe | steps × batch | modes (of {k}) | KL to uniform | all digits "
                    "confident % | real data: modes / KL | train time (s) |\n"
                    "|---|---|---|---|---|---|---|").format(k=sample["total_modes"])
        elif "modes" in sample:
            head = ("| recipe | steps × batch | modes (of {k}) | high quality % | KL to uniform | "
                    "train time (s) |\n|---|---|---|---|---|---|").format(k=sample["total_modes"])
        elif "classes" in sample:
            head = ("| recipe | steps × batch | classes (of 10) | confident % | KL to uniform | "
                    "Fréchet distance (real-vs-real floor) | train time (s) |\n"
                    "|---|---|---|---|---|---|---|")
        else:
            head = "| recipe | steps × batch | train time (s) |\n|---|---|---|"
        lines = [f"### {data}", "", head]
        for c in rows:
            if c.error:
                lines.append(f"| {c.recipe} | – | cannot run: {c.error} |")
                continue
            r = c.runs
            size = f"{c.steps} × {c.batch_size}"
            t = _stat([x["seconds"] for x in r], 0)
            if "modes_real" in sample:
                lines.append(f"| {c.recipe} | {size} | {_stat([x['modes'] for x in r])} | "
                             f"{_stat([x['kl'] for x in r], 2)} | "
                             f"{_stat([x['confident'] for x in r])} | "
                             f"{r[0]['modes_real']} / {r[0]['kl_real']:.3f} | {t} |")
            elif "modes" in sample:
                lines.append(f"| {c.recipe} | {size} | {_stat([x['modes'] for x in r])} | "
                             f"{_stat([x['high_quality'] for x in r])} | "
                             f"{_stat([x['kl'] for x in r], 2)} | {t} |")
            elif "classes" in sample:
                floor = statistics.fmean(x["fd_real"] for x in r)
                lines.append(f"| {c.recipe} | {size} | {_stat([x['classes'] for x in r])} | "
                             f"{_stat([x['confident'] for x in r])} | "
                             f"{_stat([x['kl'] for x in r], 2)} | "
                             f"{_stat([x['fd'] for x in r])} ({floor:.1f}) | {t} |")
            else:
                lines.append(f"| {c.recipe} | {size} | {t} |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def machine() -> str:
    """The machine the numbers come from, in one line."""
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
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
