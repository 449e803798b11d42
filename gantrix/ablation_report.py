"""An ablation's table: each variant's metric over seeds with its 95 % t interval, the
paired difference from the full composition with its own interval, a verdict, the worst
seed and the training time — as data (`Ablation`), Markdown, JSON and a plot.

The verdict is about the variant's change, read from the paired interval (`gantrix.intervals`):
``gradient-penalty helps`` when removing it makes the metric worse on a measurable scale (the
interval of the difference excludes 0), ``… hurts`` when removing it makes it better, and
``no measurable effect at N seeds`` otherwise — which is not "no effect": more seeds may
tell. Added tricks and swaps read the same way (``+ pac:2``: pac:2 helps; ``adam → rmsprop``:
rmsprop beats adam).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import atomic_file, write_atomic
from .intervals import Interval, LEVEL, mean_interval, paired_difference

MARKDOWN = "ablation.md"
JSON = "ablation.json"
PLOT = "ablation.png"

#: decimals a metric is shown with
DIGITS = {"high_quality": 1, "confident": 1, "asked_class": 1, "modes": 1, "classes": 1,
          "kl": 3, "fd": 2, "fid": 2, "kid": 4, "precision": 3, "recall": 3,
          "code_mi": 3, "code_accuracy": 3}
#: the names of metrics, for people
NAMES = {"high_quality": "high-quality samples %", "modes": "modes", "kl": "KL to uniform",
         "classes": "classes", "confident": "confident %", "fd": "Fréchet distance",
         "fid": "FID", "kid": "KID", "precision": "precision", "recall": "recall",
         "asked_class": "asked class %", "code_mi": "code MI / H(code)",
         "code_accuracy": "code accuracy (matched)"}
#: what a variant whose generator has no categorical code shows for a code metric
NO_CODE = "no categorical code: nothing to measure"


def verdict(kind: str, subject: str, diff: Interval | None, better: int) -> str:
    """The verdict on a variant's change from its paired difference (variant − full)."""
    if kind == "full":
        return "reference"
    if diff is None:
        return "not run yet"
    if diff.half is None:
        return "one seed: no interval"
    if not diff.excludes_zero():
        return f"no measurable effect at {diff.n} seeds"
    variant_better = better * diff.mean > 0
    if kind == "without":
        return f"{subject} {'hurts' if variant_better else 'helps'}"
    if kind == "add":
        return f"{subject} {'helps' if variant_better else 'hurts'}"
    old, new = subject.split("=", 1)
    return f"{new} beats {old}" if variant_better else f"{old} beats {new}"


@dataclass
class Row:
    """One variant of the table; ``values`` is the judged metric per scored seed."""

    name: str
    label: str
    kind: str
    subject: str
    tricks: list[str]
    refused: str | None = None
    notes: list[str] = field(default_factory=list)
    values: dict[int, float] = field(default_factory=dict)
    metric: Interval | None = None
    diff: Interval | None = None
    verdict: str = ""
    worst_seed: int | None = None
    seconds: float | None = None
    others: dict[str, Interval] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)
    #: seeds whose run diverged (kept as results: the same on every try)
    diverged: list[int] = field(default_factory=list)


@dataclass
class Ablation:
    """The table of one ablation (`gantrix.ablate` returns it)."""

    title: str
    data: str
    metric: str
    better: int
    seeds: int
    rows: list[Row]
    command: str = ""
    steps: int | None = None
    features: str | None = None
    others: list[str] = field(default_factory=list)

    def row(self, label_or_name: str) -> Row:
        """The row of a variant by its folder name or label."""
        for r in self.rows:
            if label_or_name in (r.name, r.label):
                return r
        raise KeyError(label_or_name)

    def as_dict(self) -> dict[str, Any]:
        def interval(i: Interval | None):
            return None if i is None else {"mean": i.mean, "half_width": i.half, "n": i.n,
                                           "low": i.low, "high": i.high}

        return {"title": self.title, "data": self.data, "metric": self.metric,
                "higher_is_better": self.better > 0, "features": self.features,
                "confidence": LEVEL, "seeds": self.seeds, "steps": self.steps,
                "command": self.command, "variants": [{
                    "name": r.name, "label": r.label, "kind": r.kind, "subject": r.subject,
                    "tricks": r.tricks, "refused": r.refused, "notes": r.notes,
                    "values": {str(s): v for s, v in r.values.items()},
                    "metric": interval(r.metric), "difference": interval(r.diff),
                    "verdict": r.verdict, "worst_seed": r.worst_seed,
                    "seconds_per_run": r.seconds, "missing_seeds": r.missing,
                    "diverged_seeds": r.diverged,
                    "other_metrics": {k: interval(v) for k, v in r.others.items()}}
                    for r in self.rows]}

    def markdown(self) -> str:
        digits = DIGITS.get(self.metric, 3)
        name = NAMES.get(self.metric, self.metric)
        where = f", in {self.features}" if self.features else ""
        full = self.rows[0]
        lines = [f"## Ablation: {self.title}", ""]
        if self.command:
            lines += [f"`{self.command}`", ""]
        steps = f" × {self.steps} steps" if self.steps else ""
        lines += [
            f"{self.seeds} seed{'s' * (self.seeds != 1)}{steps} per variant; judged by "
            f"**{name}** ({'higher' if self.better > 0 else 'lower'} is better{where}). "
            f"Intervals: {LEVEL * 100:.0f} % Student-t over seeds. Δ: the paired difference from the "
            f"full composition, seed by seed (variant − full); a verdict needs its interval "
            f"to exclude 0.", "",
            f"Full composition: `{' '.join(full.tricks)}`", ""]
        cols = ["variant", name, "Δ vs full", "verdict", "worst seed",
                *(NAMES.get(k, k) for k in self.others), "train time / run (s)"]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in self.rows:
            label = r.label + (f" ({len(r.values)} of {self.seeds} seeds)" if r.missing else "")
            if r.refused:
                lines.append(f"| {label} | refused: {_cell(r.refused)} |"
                             + " |" * (len(cols) - 2))
                continue
            worst = ("" if r.worst_seed is None else
                     f"{r.values[r.worst_seed]:.{digits}f} (seed {r.worst_seed})")
            diff = "—" if r.kind == "full" else _signed(r.diff, digits)
            cells = [label, _text(r.metric, digits), diff, r.verdict, worst,
                     *(_text(r.others.get(k), DIGITS.get(k, 3)) for k in self.others),
                     "" if r.seconds is None else f"{r.seconds:.0f}"]
            lines.append("| " + " | ".join(cells) + " |")
        notes = [f"- {r.label}: {n}" for r in self.rows for n in r.notes
                 if r is full or n not in full.notes]  # the full composition's: said once
        if notes:
            lines += ["", "Notes from the checker:", *notes]
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path) -> None:
        """Each variant's paired difference with its interval, the zero line marked."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = [r for r in self.rows if r.kind != "full" and not r.refused and r.diff]
        fig, ax = plt.subplots(figsize=(7, 0.45 * max(len(rows), 1) + 1.4))
        for y, r in enumerate(rows):
            half = r.diff.half or 0.0
            color = ("tab:gray" if r.diff.half is None or not r.diff.excludes_zero()
                     else "tab:green" if self.better * r.diff.mean > 0 else "tab:red")
            ax.errorbar(r.diff.mean, y, xerr=half, fmt="o", color=color, capsize=4)
        ax.axvline(0, color="black", linewidth=1)
        ax.set_yticks(range(len(rows)), [r.label for r in rows])
        ax.invert_yaxis()
        better = "higher" if self.better > 0 else "lower"
        ax.set_xlabel(f"Δ {NAMES.get(self.metric, self.metric)}, variant − full composition "
                      f"({better} is better)\n{LEVEL * 100:.0f} % t interval over {self.seeds} "
                      f"seeds; green: the variant is better, red: worse, grey: not measurable",
                      fontsize=9)
        ax.set_title(f"Ablation: {self.title}", fontsize=10)
        fig.tight_layout()
        with atomic_file(path) as f:
            fig.savefig(f, format="png", dpi=110, bbox_inches="tight")  # long labels kept whole
        plt.close(fig)

    def write(self, out: str | Path) -> list[Path]:
        """Write ablation.md, ablation.json and ablation.png into ``out``."""
        out = Path(out)
        write_atomic(out / MARKDOWN, self.markdown().encode())
        write_atomic(out / JSON, (json.dumps(self.as_dict(), indent=1) + "\n").encode())
        self.plot(out / PLOT)
        return [out / MARKDOWN, out / JSON, out / PLOT]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _text(i: Interval | None, digits: int) -> str:
    return "" if i is None else "n/a" if math.isnan(i.mean) else i.text(digits)


def _signed(i: Interval | None, digits: int) -> str:
    if i is None:
        return ""
    if i.half is None:
        return f"{i.mean:+.{digits}f}"
    return f"{i.mean:+.{digits}f} [{i.low:+.{digits}f}, {i.high:+.{digits}f}]"


def summarize(title: str, data: str, variants, scores: dict[tuple[str, int], dict],
              seeds: int, metric: str, better: int, command: str = "") -> Ablation:
    """The table of ``variants`` (`gantrix.ablation.Variant`, the full one first) from
    ``scores`` (score.json per (variant, seed)) over seeds 0 … ``seeds`` − 1. Judged by a
    code metric, a variant whose scored runs have none (its generator has no categorical
    code) says so (`NO_CODE`)."""
    from .metrics import CODE_METRICS

    rows = []
    for v in variants:
        row = Row(v.name, v.label, v.kind, v.subject, list(v.tricks), v.refused, list(v.notes))
        if not v.refused:
            runs = {s: scores[(v.name, s)] for s in range(seeds) if (v.name, s) in scores}
            row.missing = [s for s in range(seeds) if s not in runs]
            row.diverged = sorted(s for s, run in runs.items() if run.get("failed"))
            row.values = {s: _value(run, metric) for s, run in runs.items()
                          if _value(run, metric) is not None}
            if row.values:
                row.metric = mean_interval(list(row.values.values()))
                row.worst_seed = min(row.values, key=lambda s: (better * row.values[s], s))
                row.seconds = sum(r["seconds"] for r in runs.values()) / len(runs)
            row.others = {}
            for key in _other_metrics(scores, metric):
                vals = [_value(r, key) for r in runs.values()]
                if vals and None not in vals:
                    row.others[key] = mean_interval(vals)
        rows.append(row)
    full = rows[0]
    for row in rows:
        if row.kind != "full" and not row.refused:
            row.diff = paired_difference(row.values, full.values)
        row.verdict = "" if row.refused else verdict(row.kind, row.subject, row.diff, better)
        if row.diff is None and row.kind != "full" and len(row.missing) < seeds:
            row.verdict = f"no {NAMES.get(metric, metric)} on a seed the full composition has"
        if metric in CODE_METRICS and not row.refused and not row.values and \
                len(row.diverged) < seeds - len(row.missing):
            row.verdict = NO_CODE  # scored runs without the figure: the generator has no code
        if row.diverged:
            seeds_text = ", ".join(str(s) for s in row.diverged)
            row.verdict += f"{'; ' if row.verdict else ''}diverged on seed {seeds_text}"
    features = next((s["metrics"].get("features") for s in scores.values()
                     if s["metrics"].get("features")), None)
    steps = next((s.get("step") for s in scores.values()), None)
    return Ablation(title, data, metric, better, seeds, rows, command, steps, features,
                    _other_metrics(scores, metric))


def _value(score: dict, key: str) -> float | None:
    value = score["metrics"].get(key)
    return None if value is None or isinstance(value, str) else float(value)


def _other_metrics(scores: dict, metric: str, most: int = 3) -> list[str]:
    """Up to ``most`` other rankable metrics the runs have, in `DIGITS`' order."""
    have = set().union(*(s["metrics"] for s in scores.values())) if scores else set()
    return [k for k in DIGITS if k in have and k != metric][:most]
