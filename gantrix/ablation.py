"""``gantrix ablate``: which trick of a composition earns its place, measured over seeds.

    table = gantrix.ablate("wgan-gp", data="ring8", seeds=3, out="runs/ablate-wgan-gp")
    table.rows[1].verdict        # 'gradient-penalty helps', ...

The composition (a recipe, a config file and tricks, as ``gantrix train`` takes them) is
planned once on the data, and its tricks as they survive composition are the *full* variant.
Then one variant per trick without it (leave-one-out; not for the tricks named in ``keep``,
the fixed part of the setting, e.g. its architecture), one per ``add`` (the full composition
plus that trick, which wins where it competes, as ``--trick`` does over a recipe) and one
per ``swap`` (``A=B``: A replaced by B in its place). Each variant is checked as ``gantrix
check`` would: one the checker refuses is a row saying why, not an abort.

Every variant is trained on the same seeds, and the runs are paired: seed s of every variant
starts from the same weights where the models are the same, and draws the same batches and
latent vectors (the trainer's streams all derive from the seed), so the differences the
table reports are the variants', not the seeds'.

The ablation folder (``out``) holds everything, so that it can be resumed and collected::

    ablation-plan.json          the arguments and the planned variants
    <variant>/recipe.toml       the variant's composition (gantrix train --config re-runs it)
    <variant>/seed-<s>/         an ordinary run folder, with score.json once evaluated
    ablation.md, .json, .png    the table (`gantrix.ablation_report`)

A killed ablation run again with the same arguments resumes: a scored cell is read back, a
cell cut short resumes from its checkpoint, nothing is trained twice. Each cell is exactly the
command `plan` prints (``gantrix train --config <variant>/recipe.toml --data D --seed s
--threads T ... --out <variant>/seed-<s>``), so a cluster can run the cells and `collect`
builds the same table.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import fcntl
import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from .atomic import write_atomic
from .errors import GantrixError, ParamError, UnknownNameError

if TYPE_CHECKING:
    from .compose import Composition

PLAN = "ablation-plan.json"
VARIANT_CONFIG = "recipe.toml"
SCORE = "score.json"
LOCK = ".ablation.lock"
#: the version of the plan file's layout
PLAN_VERSION = 1


@dataclass(frozen=True)
class Arguments:
    """What defines an ablation's cells: the same arguments on an existing folder resume it;
    different ones are refused (the seeds may grow, and the metric, the jobs and the
    reports may change: they do not change a cell)."""

    data: str
    recipe: str | None = None
    config: str | None = None
    tricks: tuple[str, ...] = ()
    add: tuple[str, ...] = ()
    swap: tuple[str, ...] = ()
    steps: int | None = None
    threads: int = 1
    #: tricks of the composition with no leave-one-out variant (the setting held fixed)
    keep: tuple[str, ...] = ()

    def differences(self, other: "Arguments") -> list[str]:
        """``--steps 500 (this folder: 400)``, ... for each argument that differs."""
        out = []
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if mine != theirs:
                out.append(f"--{f.name} {_shown(mine)} (this folder: {_shown(theirs)})")
        return out


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(value) if value else "none"
    return "none" if value is None else str(value)


@dataclass
class Variant:
    """One composition of the ablation: ``kind`` is ``full``, ``without``, ``add`` or ``swap``;
    ``subject`` what it changes (a trick name, a trick string, ``A=B``); ``tricks`` and
    ``train`` its composition (re-runnable trick strings, the ``[train]`` table); ``refused``
    the checker's words when it cannot train."""

    name: str
    label: str
    kind: str
    subject: str
    tricks: list[str] = field(default_factory=list)
    train: dict[str, Any] = field(default_factory=dict)
    refused: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Cell:
    """One variant trained on one seed: a run folder, and the ``gantrix train`` command
    that trains it (what `ablate` runs in process, and what `plan` prints)."""

    variant: str
    seed: int
    folder: str
    config: str
    data: str
    steps: int | None
    threads: int

    def settings(self) -> dict[str, Any]:
        """The run's settings, as the command passes them."""
        return {"seed": self.seed, "threads": self.threads,
                **({"steps": self.steps} if self.steps is not None else {})}

    def command(self) -> str:
        words = ["gantrix", "train", "--config", self.config, "--data", self.data,
                 "--seed", str(self.seed), "--threads", str(self.threads),
                 *(["--steps", str(self.steps)] if self.steps is not None else []),
                 "--quiet", "--out", self.folder]
        return " ".join(shlex.quote(w) for w in words)


# ---------------------------------------------------------------------------- planning


def folder_name(kind: str, subject: str) -> str:
    """A variant's folder: ``full``, ``without-n-critic``, ``add-pac-2``, ``swap-adam-rmsprop``."""
    text = subject.replace("=", "-").replace(":", "-").replace(",", "-")
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "x"
    return "full" if kind == "full" else f"{kind}-{text}"[:100]


def _label(kind: str, subject: str) -> str:
    if kind == "full":
        return "full composition"
    if kind == "without":
        return f"− {subject}"
    if kind == "add":
        return f"+ {subject}"
    old, new = subject.split("=", 1)
    return f"{old} → {new}"


def _recipe(tricks: Iterable[str], train: dict[str, Any]):
    from .recipe import Recipe

    recipe = Recipe().extend(tricks)  # never the lone-name rule: these are tricks
    recipe.train = dict(train)
    return recipe


def _errors_of(plan) -> str:
    return "; ".join(f"{' + '.join(f.tricks) + ': ' if f.tricks else ''}{f.message}"
                     + (f" ({f.paper})" if f.paper else "")
                     for f in plan.findings if f.severity == "error")


def _checked(variant: Variant, recipe, data, settings: dict[str, Any]) -> Variant:
    """``variant`` with its composition as ``recipe`` resolves on ``data`` (the tricks that
    survive, their notes), or refused with the checker's words."""
    from .plan import plan_run

    try:
        plan = plan_run(recipe, data, settings=settings, strict=False)
    except (UnknownNameError, ParamError):
        raise  # a misspelt --add or --swap is the user's to fix, not a row
    except GantrixError as exc:
        variant.refused = " ".join(str(exc).split())
        return variant
    if not plan.ok:
        variant.refused = _errors_of(plan)
    else:
        variant.tricks = [t.spec() for t in plan.tricks]
        variant.notes = [f.message for f in plan.findings if f.severity == "note"]
    return variant


def _suggestion(name: str, names: list[str]) -> str:
    """``; did you mean A or B?`` for the tricks of the composition closest to ``name``."""
    close = difflib.get_close_matches(name, names, n=2)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def _swap(full: list[str], names: list[str], text: str) -> tuple[str, str, list[str]]:
    old, sep, new = text.partition("=")
    old, new = old.strip(), new.strip()
    if not sep or not old or not new:
        raise GantrixError(f"--swap {text!r}: write OLD=NEW, a trick of the composition and "
                           f"the trick to put in its place (e.g. --swap adam=rmsprop)")
    if ":" in old:
        raise GantrixError(f"--swap {text!r}: name the trick to replace by its name alone "
                           f"({old.split(':')[0]}=...)")
    if old not in names:
        raise GantrixError(f"--swap {text!r}: {old!r} is not a trick of the composition "
                           f"({', '.join(names)}){_suggestion(old, names)}")
    return old, new, [new if n == old else spec for n, spec in zip(names, full)]


def _kept(keep: tuple[str, ...], names: list[str]) -> list[str]:
    """The tricks of the composition that get a leave-one-out variant: all but ``keep``'s,
    each of which must be a trick of the composition (by its name alone)."""
    for name in keep:
        if name not in names:
            alone = "; name one by its name alone" if ":" in name else ""
            raise GantrixError(f"--keep {name!r}: not a trick of the composition "
                               f"({', '.join(names)}){alone}"
                               f"{_suggestion(name.split(':')[0], names)}")
    return [name for name in names if name not in keep]


def plan_variants(args: Arguments, report: Callable[[str], None] = print) -> list[Variant]:
    """The full composition and every variant of ``args``, each checked on the data."""
    from .compose import CONFIG
    from .plan import open_data, plan_run
    from .recipe import Recipe, TrickSpec

    settings = {"seed": 0, **({"steps": args.steps} if args.steps is not None else {})}
    base = Recipe(recipe=args.recipe, config=args.config).extend(args.tricks)
    if not base.specs:
        raise GantrixError("nothing to ablate: give --recipe NAME, --config FILE or --trick NAME")
    plan = plan_run(base, args.data, settings=settings, strict=False)
    if not plan.ok:
        raise GantrixError("the composition to ablate does not train, so it has no variants "
                           "to compare: " + _errors_of(plan))
    train = {k: v for k, v in plan.recipe.train.items() if k != "data"}
    data, _ = open_data(args.data, settings)
    full = [t.spec() for t in plan.tricks]
    names = [t.name for t in plan.tricks]
    variants = [Variant("full", _label("full", ""), "full", "", full, train,
                        notes=[f.message for f in plan.findings if f.severity == "note"])]
    for name in _kept(args.keep, names):
        variants.append(Variant(folder_name("without", name), _label("without", name),
                                "without", name, [s for n, s in zip(names, full) if n != name],
                                train))
    for text in args.add:
        TrickSpec.parse(text)  # an empty name is refused here
        variants.append(Variant(folder_name("add", text), _label("add", text), "add", text,
                                [], train))
    for text in args.swap:
        old, new, tricks = _swap(full, names, text)
        variants.append(Variant(folder_name("swap", f"{old}={new}"), _label("swap", f"{old}={new}"),
                                "swap", f"{old}={new}", tricks, train))
    seen: dict[str, int] = {}
    for v in variants:  # two --add of one trick with other parameters: distinct folders
        seen[v.name] = seen.get(v.name, 0) + 1
        if seen[v.name] > 1:
            v.name = f"{v.name}-{seen[v.name]}"
    checked = []
    for v in variants:
        if v.kind == "add":  # the added trick wins where it competes, as --trick does
            recipe = Recipe()
            recipe.specs = [TrickSpec.parse(s, f"{CONFIG}:ablation") for s in full]
            recipe.extend([v.subject]).train = dict(train)
            v = _checked(v, recipe, data, settings)
        elif v.kind != "full":
            v = _checked(v, _recipe(v.tricks, train), data, settings)
        checked.append(v)
    for v in checked:  # once every name is known good
        if v.refused:
            report(f"{v.label}: refused: {v.refused}")
    return checked


# ---------------------------------------------------------------------------- the folder


class Layout:
    """An ablation folder: its arguments, variants and cells (see the module docstring)."""

    def __init__(self, out: Path, args: Arguments, variants: list[Variant], seeds: int):
        self.out, self.args, self.variants, self.seeds = out, args, variants, seeds

    @classmethod
    def open(cls, out: str | Path, args: Arguments, seeds: int,
             report: Callable[[str], None] = print) -> "Layout":
        """The ablation in ``out``: read back when it holds one of the same arguments
        (different ones are an error), else planned and written."""
        out = Path(out).expanduser()
        if out.exists() and not out.is_dir():
            raise GantrixError(f"--out {out} exists and is not a folder")
        if (out / PLAN).exists():
            layout = cls.read(out)
            diff = args.differences(layout.args)
            if diff:
                raise GantrixError(
                    f"{out} holds an ablation with other arguments: {'; '.join(diff)}. Run it "
                    f"with the same arguments to resume it, or choose another --out")
            layout.seeds = seeds
            layout.write_plan()
            return layout
        if out.is_dir() and any(out.iterdir()):
            raise GantrixError(f"--out {out} is not empty and holds no ablation; choose a new "
                               f"folder")
        variants = plan_variants(args, report)
        layout = cls(out, args, variants, seeds)
        out.mkdir(parents=True, exist_ok=True)
        for v in variants:
            if not v.refused:
                (out / v.name).mkdir(exist_ok=True)
                write_atomic(out / v.name / VARIANT_CONFIG, variant_toml(v).encode())
        layout.write_plan()
        return layout

    @classmethod
    def read(cls, out: str | Path) -> "Layout":
        out = Path(out).expanduser()
        path = out / PLAN
        if not path.is_file():
            raise GantrixError(f"{out} is not an ablation folder (it has no {PLAN})")
        try:
            plan = json.loads(path.read_text())
            if plan.get("version") != PLAN_VERSION:
                raise ValueError(f"version {plan.get('version')!r}")
            args = plan["arguments"]
            for key in ("tricks", "add", "swap", "keep"):
                args[key] = tuple(args.get(key, ()))
            return cls(out, Arguments(**args), [Variant(**v) for v in plan["variants"]],
                       int(plan["seeds"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise GantrixError(f"{path} cannot be read as an ablation plan ({exc})") from None

    def write_plan(self) -> None:
        plan = {"version": PLAN_VERSION, "arguments": dataclasses.asdict(self.args),
                "seeds": self.seeds, "variants": [dataclasses.asdict(v) for v in self.variants]}
        write_atomic(self.out / PLAN, (json.dumps(plan, indent=1) + "\n").encode())

    def cells(self) -> list[Cell]:
        """Every cell to train, seed by seed (so the first seeds of all variants come first)."""
        return [Cell(v.name, seed, str(self.out / v.name / f"seed-{seed}"),
                     str(self.out / v.name / VARIANT_CONFIG), self.args.data, self.args.steps,
                     self.args.threads)
                for seed in range(self.seeds) for v in self.variants if not v.refused]

    @contextlib.contextmanager
    def locked(self):
        """Hold the folder for this process (released by the OS if it dies): two ablations
        of one folder would train the same cells."""
        handle = open(self.out / LOCK, "a+")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise GantrixError(f"{self.out} is being ablated by process {holder}; wait for "
                                   f"it to finish (or stop it), then run again to resume") from None
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            yield
        finally:
            handle.close()


def variant_toml(v: Variant) -> str:
    """A variant's composition as a recipe file (``gantrix train --config`` takes it)."""
    import tomli_w

    head = (f"# gantrix ablate: the variant {v.label!r}; each seed trains with\n"
            f"#   gantrix train --config THIS --data DATA --seed S ... --out FOLDER\n")
    return head + tomli_w.dumps({"summary": v.label, "tricks": v.tricks, "train": v.train})


# ---------------------------------------------------------------------------- one cell


def read_score(folder: str | Path) -> dict | None:
    """A cell's score.json, or None when it has none (or one cut short: it is redone)."""
    path = Path(folder) / SCORE
    try:
        score = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return score if isinstance(score, dict) and isinstance(score.get("metrics"), dict) else None


def _clear_unstarted(folder: Path) -> None:
    """Remove a cell folder a kill left before its config.toml was written (only folders,
    temporary and lock files: anything else is left, and the run refuses the folder)."""
    if not folder.is_dir() or (folder / "config.toml").exists():
        return
    entries = list(folder.iterdir())
    if all((e.is_dir() and not any(e.iterdir())) or e.name.startswith(".") for e in entries):
        shutil.rmtree(folder)


def train_cell(cell: Cell) -> None:
    """Train ``cell`` to its last step: a new run, or its run folder resumed."""
    from .recipe import Recipe
    from .run_folder import CONFIG
    from .trainer import Trainer

    folder = Path(cell.folder)
    _clear_unstarted(folder)
    if (folder / CONFIG).exists():
        trainer = Trainer.resume(folder, progress=False, threads=cell.threads)
        if trainer.step >= trainer.settings.steps:
            return
    else:
        trainer = Trainer(Recipe(config=cell.config), cell.data, out=folder, progress=False,
                          **cell.settings())
    trainer.fit()


def score_cell(cell: Cell, metric: str) -> dict:
    """Evaluate the trained cell (the run's data metrics, and ``metric`` where it is computed
    in features: FID, KID, precision/recall), keep them in its score.json and return it."""
    from .periodic_eval import FEATURE_METRICS
    from .trainer import Trainer

    folder = Path(cell.folder)
    score = read_score(folder) or {}
    metrics = dict(score.get("metrics", {}))
    if not metrics or (metric not in metrics and metric in FEATURE_METRICS):
        trainer = Trainer.load(folder)
        if trainer.step < trainer.settings.steps:
            raise GantrixError(f"{folder} stopped at step {trainer.step} of "
                               f"{trainer.settings.steps}; finish it with gantrix train "
                               f"--resume {folder}")
        if not metrics:
            metrics = _numbers(trainer.evaluate(save=False))
        if metric in FEATURE_METRICS and metric not in metrics:
            found = trainer.evaluate(metrics=[FEATURE_METRICS[metric]], save=False)
            metrics.update(_numbers(found))
            if "features" in found:
                metrics["features"] = found["features"]
        score = {"variant": cell.variant, "seed": cell.seed, "step": trainer.step,
                 "seconds": trainer.elapsed, "metrics": metrics}
        write_atomic(folder / SCORE, (json.dumps(score, indent=1) + "\n").encode())
    return score


def _numbers(result: dict) -> dict:
    return {k: v for k, v in result.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) or v is None}


def scored(score: dict | None, metric: str) -> bool:
    """Whether a cell's score.json answers for ``metric``: it has it, the run diverged (a
    result kept), or the metric is one of the data's own (all computed at once)."""
    from .periodic_eval import FEATURE_METRICS

    return score is not None and (metric in score["metrics"] or bool(score.get("failed"))
                                  or metric not in FEATURE_METRICS)


def run_cell(cell: Cell, metric: str) -> dict:
    """Train (or resume) and score one cell, unless it is scored already: what a worker runs."""
    score = read_score(cell.folder)
    if scored(score, metric):
        return score
    train_cell(cell)
    return score_cell(cell, metric)


# ---------------------------------------------------------------------------- the metric


def default_metric(data: str) -> str:
    """The metric an ablation of ``data`` is judged by unless told: the share of
    high-quality samples on 2-D points, the modes of stacked-mnist, the Fréchet distance in
    the classifier's features on digits and mnist, FID on other images."""
    from .data import load_data
    from .metrics import metrics_for

    loaded = load_data(data)
    if not loaded.is_image:
        return "high_quality"
    if data == "stacked-mnist":
        return "modes"
    return "fd" if metrics_for(data) is not None else "fid"


def check_metric(metric: str, data: str, report: Callable[[str], None] = print,
                 args: Arguments | None = None) -> None:
    """``metric`` is one the ablation can rank variants by on ``data`` (and, given the
    ablation's ``args``, for its full composition: `check_code_metric`); a metric measured
    in features has its feature space set up now (a folder's classifier trained and cached
    once, here, not by every cell), or the reason it cannot be, before any training."""
    from .features import feature_space
    from .periodic_eval import FEATURE_METRICS, check_metric as check
    from .plan import open_data

    loaded, source = open_data(data, {})
    try:
        check(metric, loaded.is_image)
    except GantrixError as exc:
        raise GantrixError(str(exc).replace("--eval-metric", "--metric")) from None
    check_code_metric(metric, data, args)
    if metric in FEATURE_METRICS:
        _, notes = feature_space(loaded, source, report=report)
        for note in notes:
            report(f"{metric}: {note}")


def _composition(args: Arguments) -> "Composition | None":
    """The full composition of ``args``; None when it does not compose (the planning says
    why)."""
    from .recipe import Recipe

    try:
        return Recipe(recipe=args.recipe, config=args.config).extend(args.tricks).compose()
    except GantrixError:
        return None


def has_code(args: Arguments) -> bool | None:
    """Whether the full composition of ``args`` gives its generator a categorical latent
    code (`gantrix.periodic_eval.gives_code`); None when it does not compose."""
    from .periodic_eval import gives_code

    composition = _composition(args)
    return None if composition is None else gives_code(composition)


def check_code_metric(metric: str, data: str, args: Arguments | None) -> None:
    """A code metric needs data a built-in classifier labels and, given ``args``, a full
    composition whose generator has a categorical code (the reference every variant is
    compared with); a variant without one is a row saying so
    (`gantrix.periodic_eval.check_code_metric`)."""
    from .periodic_eval import check_code_metric as check

    check("--metric", metric, data, None if args is None else _composition(args))
