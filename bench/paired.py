"""The paired difference between two variants of one ablation (both trained on the same
seeds), from its ablation.json: for comparisons the table does not make itself, e.g.
RaLSGAN against LSGAN when both were swapped in for SGAN's loss.

    python bench/paired.py runs/report-card/losses-ring8 swap-nonsaturating-ralsgan swap-nonsaturating-lsgan

Prints the mean of (A − B) over the seeds both have, its 95 % t interval, and which is better.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from gantrix.intervals import paired_difference
from gantrix.periodic_eval import BETTER


def compare(folder: str, a: str, b: str) -> str:
    table = json.loads((Path(folder) / "ablation.json").read_text())
    rows = {v["name"]: v for v in table["variants"]}
    values = {name: {int(s): x for s, x in rows[name]["values"].items()} for name in (a, b)}
    diff = paired_difference(values[a], values[b])
    if diff is None:
        return f"{a} and {b} share no scored seed"
    better = BETTER[table["metric"]]
    if diff.half is None or not diff.excludes_zero():
        verdict = f"no measurable difference at {diff.n} seeds"
    else:
        verdict = f"{a if better * diff.mean > 0 else b} is better"
    interval = "" if diff.half is None else f" [{diff.low:+.2f}, {diff.high:+.2f}]"
    return f"{table['metric']}: {a} − {b} = {diff.mean:+.2f}{interval} over {diff.n} seeds: {verdict}"


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    print(compare(*sys.argv[1:]))
