"""Does conditioning on the label make GAN training converge faster? (Mirza & Osindero
2014; the seed summary's "the input is more determined"). Measured, not repeated.

Each composition (the nonsaturating loss alone, or ``--base`` such as the dcgan recipe, and
the same with ``cgan``) is trained on a labelled
data set with several seeds; every ``--every`` steps the run is scored as ``gantrix eval``
scores it (classes covered of 10 and confident %, on 2,500 samples; conditional runs
sample with uniform labels as `gantrix sample` does). A run has converged at the first
checkpoint where it covers all 10 classes with at least ``--target`` % confident samples.

    python bench/cgan_convergence.py --data digits --steps 2000 --every 100 --seeds 0 1 2 \\
        --png docs/cgan-convergence-digits.png
    python bench/cgan_convergence.py --data mnist --base dcgan --batch-size 64 \\
        --steps 2000 --every 250 --png docs/cgan-convergence-mnist.png

Prints a Markdown table (steps to the target per seed, and the confident % at a few
checkpoints, mean ± std) and writes the curves (mean over seeds, each seed thin) as a PNG.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path



def compositions(base: str) -> dict[str, list[str]]:
    """The unconditional composition and the same with ``cgan``: ``base`` is a trick or
    recipe name (``nonsaturating``: the loss on the core's models; ``dcgan``: the DCGAN
    recipe, its models normalised)."""
    return {base: [base], f"{base} + cgan": [base, "cgan"]}


def curve(tricks: list[str], data: str, seed: int, steps: int, every: int, settings: dict) -> list[dict]:
    """The run's scores every ``every`` steps: [{"step", "classes", "confident", ...}]."""
    from gantrix.recipe import Recipe
    from gantrix.trainer import Trainer

    recipe = Recipe(tricks[0]).extend(tricks[1:])  # a lone name: the recipe, else the trick
    trainer = Trainer(recipe, data, steps=steps, seed=seed, progress=False, **settings)
    points = []
    for target in range(every, steps + 1, every):
        trainer.settings.steps = target  # fit continues where it stopped
        trainer.fit()
        points.append({"step": target, **trainer.evaluate(), "elapsed": trainer.elapsed})
    return points


def steps_to(points: list[dict], target: float) -> int | None:
    """The first checkpoint with all 10 classes and ``target`` % confident samples."""
    return next((p["step"] for p in points
                 if p["classes"] == 10 and p["confident"] >= target), None)


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def table(results: dict[str, list[list[dict]]], target: float, marks: list[int]) -> str:
    head = ["composition", f"steps to 10/10 classes and ≥ {target:g} % confident (per seed)",
            *[f"confident % at {m}" for m in marks], "train time per run (s)"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, runs in results.items():
        reached = ", ".join(str(steps_to(r, target) or "not reached") for r in runs)
        at = [mean_std([next(p["confident"] for p in r if p["step"] == m) for r in runs])
              for m in marks]
        seconds = mean_std([r[-1]["elapsed"] for r in runs])
        rows.append("| " + " | ".join([name, reached, *at, seconds]) + " |")
    return "\n".join(rows)


def plot(results: dict[str, list[list[dict]]], target: float, path: Path, title: str) -> None:
    """Confident % and classes covered against steps: each seed thin, their mean thick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    for (name, runs), color in zip(results.items(), ("tab:blue", "tab:orange")):
        steps = [p["step"] for p in runs[0]]
        for ax, key in zip(axes, ("confident", "classes")):
            for r in runs:
                ax.plot(steps, [p[key] for p in r], color=color, alpha=0.3, lw=0.8)
            mean = [statistics.mean(r[i][key] for r in runs) for i in range(len(steps))]
            ax.plot(steps, mean, color=color, lw=2, label=f"{name} (mean of {len(runs)} seeds)")
    axes[0].axhline(target, color="grey", ls="--", lw=1, label=f"target {target:g} %")
    axes[0].set_ylabel("confident samples %")
    axes[1].set_ylabel("classes covered (of 10)")
    for ax in axes:
        ax.set_xlabel("generator updates")
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="digits")
    ap.add_argument("--base", default="nonsaturating",
                    help="the unconditional recipe or loss (default: the nonsaturating loss)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--target", type=float, default=50.0, help="confident %% to reach")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--png", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="keep the raw curves here")
    ap.add_argument("--replot", type=Path, default=None,
                    help="table and PNG from a --json file of an earlier run; no training")
    args = ap.parse_args()
    settings = {"batch_size": args.batch_size} if args.batch_size else {}
    results: dict[str, list[list[dict]]] = {}
    if args.replot:
        results = json.loads(args.replot.read_text())
    for name, tricks in compositions(args.base).items() if not args.replot else ():
        for seed in args.seeds:
            start = time.perf_counter()
            results.setdefault(name, []).append(
                curve(tricks, args.data, seed, args.steps, args.every, settings))
            print(f"{name}, seed {seed}: {time.perf_counter() - start:.0f} s", file=sys.stderr,
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.png:
        plot(results, args.target, args.png, f"{args.data}: conditioning and convergence")
    marks = [m for m in (args.steps // 4, args.steps // 2, args.steps)
             if m % args.every == 0]
    print(table(results, args.target, marks))


if __name__ == "__main__":
    main()
