"""The run folder: what a training run writes, and how it is read back.

    config.toml      the resolved run (``gantrix train --config`` re-runs it)
    checkpoint.pt    everything a resumed run needs, written atomically
    metrics.jsonl    one line per log interval
    samples/         a sample picture per ``sample_every`` steps
    losses.png       the loss curves so far
    eval.json        the last `Trainer.evaluate`

Every file but metrics.jsonl is replaced atomically; a line of it cut short by a kill, or
written after the checkpoint a run resumes from, is dropped when the run is prepared
again. In a distributed run only rank 0 writes.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from .checkpoint import write_atomic
from .errors import GantrixError

CONFIG = "config.toml"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
LOSSES = "losses.png"
EVAL = "eval.json"
SAMPLES = "samples"


def check_new(out: Path) -> None:
    """``out`` can hold a new run: it does not exist, or it is an empty folder."""
    if out.exists() and not out.is_dir():
        raise GantrixError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise GantrixError(f"--out {out} is not empty; choose a new folder, or continue "
                           f"the run in it with --resume {out}")


def existing(run_dir: str | Path) -> Path:
    """``run_dir`` as a path, checked to be a run folder (it has a config.toml)."""
    run = Path(run_dir).expanduser()
    if not (run / CONFIG).is_file():
        raise GantrixError(f"{run} is not a gantrix run folder (it has no {CONFIG})")
    return run


def prepare(out: Path, config_toml: str, steps: int, step: int) -> list[dict]:
    """Make ``out`` ready to train from ``step``: the folders, the config (written when new;
    when resumed, only its total of ``steps`` updated), no half-written file left, and the
    metrics lines up to ``step``, which it returns."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / SAMPLES).exists() and not (out / SAMPLES).is_dir():
        raise GantrixError(f"{out / SAMPLES} is not a folder: the run keeps its sample "
                           f"pictures in a folder of that name; move the file away, then resume")
    (out / SAMPLES).mkdir(exist_ok=True)
    for stale in out.glob(".*.tmp"):  # a write cut short by a kill
        stale.unlink()
    if not (out / CONFIG).exists():
        write_atomic(out / CONFIG, config_toml.encode())
    else:  # resumed: record a new total of steps, keep the rest as it was
        _update_steps(out / CONFIG, steps)
    path = out / METRICS
    if not path.exists():
        return []
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if row.get("step", math.inf) <= step:
            kept.append(row)
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in kept).encode())
    return kept


def _update_steps(path: Path, steps: int) -> None:
    import tomllib

    import tomli_w

    text = path.read_text()
    config = tomllib.loads(text)
    if config.get("train", {}).get("steps") == steps:
        return
    config.setdefault("train", {})["steps"] = steps
    head = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    write_atomic(path, (head + tomli_w.dumps(config)).encode())


def append_metrics(out: Path, row: dict) -> None:
    """Add one line to metrics.jsonl."""
    with open(out / METRICS, "a") as f:
        f.write(json.dumps(row) + "\n")


def config_toml(tricks: list[str], recipes: list[str], train: dict,
                custom_models: dict[str, str]) -> str:
    """A run's config.toml: its composed ``tricks`` (re-runnable trick strings), the named
    ``recipes`` it was built from, its ``[train]`` settings, and a note of the user's own
    modules it used (which it cannot record): ``gantrix train --config`` re-runs it."""
    import tomli_w

    head = ("# gantrix run configuration; re-run it with\n"
            "#   gantrix train --config config.toml --out NEW_FOLDER\n")
    if custom_models:
        head += ("# this run used your own modules (" + ", ".join(
            f"{role}: {name}" for role, name in custom_models.items()) + "), which are "
            "not recorded here;\n# load it with Trainer.load(run, generator=..., "
            "discriminator=...)\n")
    body: dict = {"tricks": tricks}
    if recipes:
        body["summary"] = f"built from recipe {' + '.join(recipes)}"
    body["train"] = train
    return head + tomli_w.dumps(body)
