"""Markdown rows of chosen variants of one ablation (docs/ablations/NAME.json), for the
report card (docs/tricks.md): each variant's metric (mean ± 95 % t interval), its paired
difference from the full composition, the verdict and the worst seed.

    python bench/report_rows.py docs/ablations/wgan-ring8.json [VARIANT ...]
"""
from __future__ import annotations

import json
import sys

from gantrix.ablation_report import DIGITS, NAMES


def rows(path: str, names: list[str]) -> str:
    table = json.loads(open(path).read())
    digits = DIGITS.get(table["metric"], 3)
    variants = [v for v in table["variants"] if not names or v["name"] in names]
    out = [f"| variant | {NAMES.get(table['metric'], table['metric'])} | Δ vs full [95 % CI] "
           f"| verdict |", "|---|---|---|---|"]
    for v in variants:
        if v["refused"]:
            out.append(f"| {v['label']} | refused: {v['refused']} | | |")
            continue
        m, d = v["metric"], v["difference"]
        metric = "" if m is None else (f"{m['mean']:.{digits}f}" if m["half_width"] is None
                                       else f"{m['mean']:.{digits}f} ± {m['half_width']:.{digits}f}")
        diff = "—" if d is None else (f"{d['mean']:+.{digits}f}" if d["half_width"] is None else
                                      f"{d['mean']:+.{digits}f} [{d['low']:+.{digits}f}, "
                                      f"{d['high']:+.{digits}f}]")
        out.append(f"| {v['label']} | {metric} | {diff} | {v['verdict']} |")
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(rows(sys.argv[1], sys.argv[2:]))
