"""``gantrix train``, ``gantrix sample``, ``gantrix eval`` and ``gantrix bench quality``.

These commands parse, call `gantrix.Trainer` (and `gantrix.benchmark`) and print. A user
mistake is a `GantrixError`: its message, exit status 2. A run stopped by Ctrl-C or SIGTERM
saves a checkpoint and exits with 130 or 143.
"""
from __future__ import annotations

import functools
import inspect
import os
import time
from pathlib import Path
from typing import Callable, List, Optional

import typer

from gantrix.errors import GantrixError

#: what ``gantrix bench quality`` runs by default: vanilla losses without tricks, then the
#: recipes that claim to fight mode collapse.
BENCH_RECIPES = ("minimax", "nonsaturating", "dcgan", "wgan", "wgan-gp",
                 "rsgan", "rasgan", "ralsgan", "rahinge")
BENCH_DATA = ("ring8", "grid25", "digits")


def _errors(command: Callable) -> Callable:
    """Print a user mistake (or an interruption) as one line; never a traceback."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        from gantrix.trainer import TrainingInterrupted

        try:
            return command(*args, **kwargs)
        except TrainingInterrupted as exc:
            typer.secho(f"{_who()}{exc}", fg=typer.colors.YELLOW, err=True)
            raise typer.Exit(exc.exit_code) from None
        except GantrixError as exc:
            typer.secho(f"{_who()}error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:  # Ctrl-C outside training (training saves and says so)
            typer.secho(f"{_who()}interrupted (Ctrl-C) before anything was written",
                        fg=typer.colors.YELLOW, err=True)
            raise typer.Exit(130) from None

    return run


def _who() -> str:
    """In a distributed run every process reports; the lines of all but rank 0 say which."""
    from gantrix import distributed

    return "" if distributed.is_writer() else f"[process {distributed.rank()}] "


def _default_out(recipe: str | None, tricks: list[str], data: str | None) -> Path:
    """``runs/<recipe or first trick>-<data>``, numbered so no existing folder is reused."""
    name = recipe or (tricks[0].split(":")[0] if tricks else "run")
    stem = f"{name}-{Path(data).name if data else 'data'}"
    out = Path("runs") / stem
    i = 2
    while out.exists():
        out = Path("runs") / f"{stem}-{i}"
        i += 1
    return out


def _show_findings(trainer) -> None:
    for finding in trainer.findings:
        if finding.severity == "warning":
            typer.secho(str(finding), fg=typer.colors.YELLOW, err=True)


#: short spellings and fuller help of some settings' options; the rest come from the table.
SHORT = {"data": "-d"}
OPTION_HELP = {
    "data": "ring8, grid25, spiral, digits, mnist, stacked-mnist, an image folder, or a "
            ".npy/.pt file.",
    "precision": "fp32 (default), bf16 (autocast) or fp16 (autocast and a loss scaler per "
                 "optimizer).",
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _setting_option(name: str, param) -> inspect.Parameter:
    """The option of ``gantrix train`` for run setting ``name`` (`gantrix.settings.Settings`):
    its type and help from the table; a bool setting is a flag."""
    text = OPTION_HELP.get(name) or f"{param.help[0].upper()}{param.help[1:]}."
    if param.choices is not None and name not in OPTION_HELP:
        text += f" One of: {', '.join(param.choices)}."
    names = (_flag(name), *((SHORT[name],) if name in SHORT else ()))
    if param.type is bool:
        option, annotation = typer.Option(False, *names, help=text), bool
    else:
        option, annotation = typer.Option(None, *names, help=text), Optional[param.type]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                             annotation=annotation)


def _with_setting_options(command: Callable) -> Callable:
    """``command(..., **settings)`` as typer sees it: with an option per setting."""
    from gantrix.settings import with_setting_parameters

    @functools.wraps(command)
    def with_options(*args, **kwargs):
        return command(*args, **kwargs)

    return with_setting_parameters(with_options, _setting_option)  # command's, extended


def train(
    ctx: typer.Context,
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help="A named recipe (gantrix recipes)."),
    trick: List[str] = typer.Option([], "--trick", "-t", metavar="NAME[:k=v,...]",
                                    help="A trick to add (or override the recipe's); repeatable."),
    config: Optional[Path] = typer.Option(None, "--config", "-c",
                                          help="A recipe TOML file; its \\[train] table sets defaults."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The run folder (new or empty)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress line."),
    nproc: Optional[int] = typer.Option(None, "--nproc", help="Train with N processes on "
                                        "this machine (torchrun: gloo on CPU, nccl on CUDA); "
                                        "--batch-size stays the global batch."),
    **settings,
) -> None:
    """Train a GAN: a recipe and/or tricks, on built-in data or your images."""
    from gantrix import distributed
    from gantrix.metrics import format_metrics
    from gantrix.recipe import Recipe
    from gantrix.settings import FIXED_ON_RESUME, RESUMABLE
    from gantrix.trainer import Trainer

    # a flag left off is not given (False would override the recipe's table)
    settings = {k: v for k, v in settings.items() if v is not None and v is not False}
    data = settings.pop("data", None)
    if nproc is not None:
        _launch(ctx, nproc, resume or out or _default_out(
            recipe, trick, data or Recipe(recipe=recipe, config=config).extend(trick)
            .train.get("data")))
        return
    distributed.init_from_environment(settings.get("device"))
    progress = False if quiet or not distributed.is_writer() else None
    if resume is not None:
        given = [n for n, v in (("--recipe", recipe), ("--config", config), ("--out", out))
                 if v is not None] + (["--trick"] if trick else [])
        fixed = [_flag(name) for name in FIXED_ON_RESUME
                 if name in settings or (name == "data" and data is not None)]
        if given or fixed:
            raise GantrixError(f"--resume continues a run as it was configured; drop "
                               f"{', '.join(given + fixed)} (only "
                               f"{', '.join(_flag(n) for n in RESUMABLE)}"
                               f" may change)")
        trainer = Trainer.resume(resume, progress=progress, **settings)
        where = (f"step {trainer.resumed_from}" if trainer.resumed_from is not None
                 else "the start (no checkpoint yet)")
        _say(f"resuming {resume} from {where} of {trainer.settings.steps}"
             f"{_processes(trainer)}")
    else:
        if recipe is None and config is None and not trick:
            raise GantrixError("nothing to train: give --recipe NAME, --config FILE or "
                               "--trick NAME (see gantrix recipes, gantrix list)")
        spec = Recipe(recipe=recipe, config=config).extend(trick)
        if data is None and "data" not in spec.train:
            from gantrix.data import BUILTIN

            raise GantrixError(f"no data: give --data ({', '.join(BUILTIN)}, an image folder "
                               "or a .npy/.pt file)")
        # one folder for every process of a distributed run: rank 0's choice
        out = distributed.broadcast(out or _default_out(recipe, trick,
                                                        data or spec.train.get("data")))
        trainer = Trainer(spec, data, out=out, progress=progress, **settings)
        s = trainer.settings
        _say(f"training [{' '.join(trainer.composition.specs())}] on {s.data} for "
             f"{s.steps} steps (batch {s.batch_size}, {trainer.device}{_processes(trainer)}) "
             f"-> {out}")
    if trainer.writer:
        _show_findings(trainer)
    if trainer.settings.compile:
        from gantrix.compiling import announcement

        _say(announcement(trainer.composition))
    started, evaluated = time.perf_counter(), trainer.eval_seconds
    trainer.fit()  # a torchrun process leaves its group on exit (`gantrix.cli.app.main`)
    if trainer.writer:
        if trainer.evaluation is not None:
            wall = time.perf_counter() - started
            spent = trainer.eval_seconds - evaluated
            e = trainer.evaluation
            best = "none" if e.best is None else f"{e.best:.4g} at step {e.best_step}"
            _say(f"evaluation: {spent:.1f} s of {wall:.1f} s ({100 * spent / max(wall, 1e-9):.0f} "
                 f"% of this session); best {e.metric} {best} -> {trainer.out / 'best.pt'}")
        result = trainer.evaluate()
        typer.echo(f"done: {trainer.step} steps in {trainer.elapsed:.1f} s; "
                   f"{format_metrics(result)}")


def _say(message: str) -> None:
    """A status line on stderr, from one process of a distributed run only."""
    from gantrix import distributed

    if distributed.is_writer():
        typer.echo(message, err=True)


def _processes(trainer) -> str:
    return f", {trainer.processes} processes" if trainer.processes > 1 else ""


def _launch(ctx: typer.Context, nproc: int, run: Path) -> None:
    """Run this same ``gantrix train`` command in ``nproc`` processes through torch's own
    launcher (``python -m torch.distributed.run --standalone``), with the run folder fixed
    to ``run`` so that every process writes to one place. On the CPU the usable cores are
    split among the processes (`gantrix.threads.split`, said on stderr; ``--threads`` is
    each process's), given to them as ``OMP_NUM_THREADS``.

    Ctrl-C and SIGTERM are passed on to torchrun (`gantrix.children`), which passes them to
    the processes: they stop as one process does (a checkpoint, rank 0's message), this
    launcher waits for them and exits with 128+signal."""
    import sys

    import torch

    from gantrix import distributed, run_folder
    from gantrix.children import Children
    from gantrix.settings import check_shared_batch

    if nproc < 1:
        raise GantrixError(f"--nproc must be at least 1, got {nproc}")
    if distributed.launched():
        raise GantrixError("--nproc starts the processes itself; under torchrun, drop it")
    if ctx.params.get("batch_size") is not None:
        check_shared_batch(ctx.params["batch_size"], nproc)
    run_folder.check_free(run)  # a run training in it: refused before any process starts
    words: list[str] = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name == "nproc" or value is None or value is False or value == []:
            continue
        flag = max(param.opts, key=len)
        if getattr(param, "is_flag", False):
            words.append(flag)
        else:
            for v in value if isinstance(value, (list, tuple)) else [value]:
                words += [flag, str(v)]
    if ctx.params.get("resume") is None and ctx.params.get("out") is None:
        words += ["--out", str(run)]
    command = [sys.executable, "-c", "from gantrix.cli.train import torchrun; torchrun()",
               "--standalone", f"--nproc-per-node={nproc}", "-m", "gantrix", "train", *words]
    env = None  # on CUDA, torchrun's one CPU thread a process
    if ctx.params.get("device") == "cpu" or not torch.cuda.is_available():
        from gantrix.threads import child_environment, split

        env = child_environment(split(nproc, ctx.params.get("threads"), "processes").threads)
    env = {**(os.environ if env is None else env), LAUNCHER_ENV: str(os.getpid())}
    with Children().forwarding() as children:
        code = children.run(command, env=env)
    if children.signum is not None:  # the processes said where their checkpoint is
        raise typer.Exit(128 + children.signum)
    if code == 2:  # a user mistake, which the processes printed
        raise typer.Exit(code)
    if code:
        typer.secho(f"error: the {nproc}-process run stopped (exit status {code}; the "
                    f"processes' messages are above); resume it with gantrix train --resume "
                    f"{run}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code)


def torchrun() -> None:
    """torch's launcher (``python -m torch.distributed.run``, its arguments from the command
    line), ending without a traceback when a signal stopped it: the processes it passed the
    signal to say where their checkpoint is."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.run import main

    _stop_with_launcher()
    try:
        main()
    except SignalException as exc:
        raise SystemExit(128 + exc.sigval) from None


#: the pid of the ``gantrix train --nproc`` that started torchrun (`_stop_with_launcher`).
LAUNCHER_ENV = "GANTRIX_LAUNCHER_PID"


def _stop_with_launcher(every: float = 1.0) -> None:
    """SIGTERM to this torchrun when the ``gantrix train --nproc`` that started it dies (a
    kill -9 cannot be passed on): torchrun passes it to the processes, which save a
    checkpoint and stop, and none is left training the folder as an orphan."""
    import signal
    import threading

    launcher = int(os.environ.get(LAUNCHER_ENV) or os.getppid())

    def watch() -> None:
        while os.getppid() == launcher:
            time.sleep(every)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="gantrix-launcher-watch", daemon=True).start()


#: the --checkpoint option of sample and eval.
CHECKPOINT_OPTION = typer.Option("last", "--checkpoint", metavar="last|best",
                                 help="The last checkpoint, or best.pt: the generator that "
                                      "scored best during training (--eval-every).")


def _load_run(run: Path, device: str | None, checkpoint: str = "last"):
    """The trained run, saying on stderr which training-only tricks it was loaded without."""
    from gantrix.trainer import Trainer

    trainer = Trainer.load(run, device=device, checkpoint=checkpoint)
    if trainer.best is not None:
        b = trainer.best
        typer.echo(f"best.pt: step {b['step']}, {b['metric']} {b['value']:.4g}", err=True)
    if trainer.without:
        typer.echo(f"note: {', '.join(trainer.without)} (trained with, not installed) only "
                   "trains; sampling and scoring do not need it", err=True)
    return trainer


def sample(
    run: Path = typer.Argument(..., help="A run folder."),
    n: int = typer.Option(64, "--n", "-n", help="How many samples (with --interpolate: rows; "
                          "with --grid: samples per class)."),
    out: str = typer.Option(..., "--out", "-o", help="A .npy (array) or .png (grid) file, or "
                            "a folder (DIR/) for numbered PNGs, resumable."),
    labels: Optional[str] = typer.Option(None, help="Class labels for a conditional model: "
                                         "one label, or a comma-separated list (repeated to "
                                         "n); a class index, or its name where the run's "
                                         "data names its classes (an image folder's "
                                         "sub-folders)."),
    seed: int = typer.Option(0, help="Seed of the latent vectors."),
    truncation: float = typer.Option(1.0, "--truncation", metavar="PSI",
                                     help="Pull the latents toward the prior's mean: "
                                          "mean + PSI*(z - mean), PSI in [0, 1] (1: as drawn)."),
    interpolate: Optional[int] = typer.Option(None, "--interpolate", metavar="K",
                                              help="Rows of K steps between random latents "
                                                   "(spherical; straight for a trick's prior)."),
    grid: bool = typer.Option(False, "--grid", help="One row of --n samples per class "
                              "(--labels: those classes) of a conditional model."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or auto."),
    checkpoint: str = CHECKPOINT_OPTION,
) -> None:
    """Draw samples from a trained run (from its averaged generator when it has one)."""
    from gantrix import sample_modes
    from gantrix.sampling import check_truncation

    folder = out.endswith(("/", os.sep)) or Path(out).expanduser().is_dir()
    path = Path(out).expanduser()
    check_truncation(truncation)  # before loading the run
    if interpolate is not None and grid:
        raise GantrixError("--interpolate and --grid make different grids; choose one")
    if folder and (interpolate is not None or grid):
        raise GantrixError("a folder of numbered PNGs holds plain samples; write --interpolate "
                           "and --grid to a .png or .npy file")
    if not folder:
        _check_out_file(path)
    picked = None if labels is None else [v for v in labels.split(",") if v.strip()]
    trainer = _load_run(run, device, checkpoint)
    if folder:
        written, kept = sample_modes.write_numbered(trainer, path, n, picked, seed=seed,
                                                    truncation=truncation)
        typer.echo(f"{written} samples -> {path}/" + (f" ({kept} already there, kept)"
                                                      if kept else ""))
        return
    columns = None
    if interpolate is not None:
        x = sample_modes.interpolation(trainer, n, interpolate, picked, seed=seed,
                                       truncation=truncation)
    elif grid:
        x = sample_modes.class_grid(trainer, n, picked, seed=seed, truncation=truncation)
    else:
        x = sample_modes.draw(trainer, n, picked, seed=seed, truncation=truncation)
    if x.dim() > len(trainer.data.shape) + 1:  # rows of a grid: kept as rows in a .npy
        columns = x.shape[1]
    try:
        _save_samples(path, x, trainer, columns)
    except OSError as exc:
        raise GantrixError(f"could not write --out {path} ({exc.strerror or exc}); nothing was "
                           f"saved; choose another --out") from None
    typer.echo(f"{x.shape[0] * (columns or 1)} samples -> {path}")


def _check_out_file(out: Path) -> None:
    """--out is a .npy or .png file in a writable folder."""
    if out.suffix.lower() not in (".npy", ".png"):
        raise GantrixError(f"--out must end in .npy or .png, or be a folder (DIR/), got "
                           f"{out.name!r}")
    if not out.parent.is_dir():
        raise GantrixError(f"the folder of --out does not exist: {out.parent}")
    if not os.access(out.parent, os.W_OK):
        raise GantrixError(f"cannot write --out {out}: its folder {out.parent} is not "
                           f"writable; choose another --out")


def _save_samples(out: Path, x, trainer, columns: int | None = None) -> None:
    """Samples ``x`` of ``trainer``'s run as ``out``: an array (.npy, rows kept), or a
    picture (.png; ``x`` in rows of ``columns`` when given)."""
    import numpy as np

    from gantrix.checkpoint import write_atomic

    if out.suffix.lower() == ".npy":
        import io

        buffer = io.BytesIO()
        np.save(buffer, x.numpy())
        write_atomic(out, buffer.getvalue())
        return
    x = x.flatten(0, 1) if columns else x
    n = len(x)
    if trainer.data.is_image:
        from gantrix.plots import GRID_COLUMNS, grid_png

        grid_png(out, x, columns or GRID_COLUMNS)
    elif trainer.data.shape == (2,):
        from gantrix.plots import scatter_png

        scatter_png(out, x, trainer.data.reference(max(n, 1000)), f"{trainer.data.name}, step {trainer.step}")
    else:
        raise GantrixError(f"cannot draw samples of shape {tuple(trainer.data.shape)} as a "
                           "picture; use a .npy file")


def evaluate(
    run: Path = typer.Argument(..., help="A run folder."),
    n: Optional[int] = typer.Option(None, "--n", "-n", help="Samples to score (default 2,500; "
                                    "26,000 on stacked-mnist, as the papers; with --metric "
                                    "10,000, or half a smaller real set)."),
    seed: int = typer.Option(0, help="Seed of the latent vectors (and of the real draw)."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or auto."),
    metric: List[str] = typer.Option([], "--metric", "-m", metavar="fid|kid|pr",
                                     help="FID, KID or precision/recall (pr) against the real "
                                          "data, in a feature space; repeatable."),
    features: Optional[str] = typer.Option(None, "--features", metavar="inception|classifier",
                                           help="The --metric's feature space (default: "
                                                "Inception where its extra and weights are "
                                                "there, else the data's classifier)."),
    inception_weights: Optional[Path] = typer.Option(None, "--inception-weights",
                                                     help="The Inception-V3 weights file (never "
                                                          "downloaded)."),
    checkpoint: str = CHECKPOINT_OPTION,
) -> None:
    """Score a run's generator: modes on 2-D data and stacked-mnist; classes, confidence and
    Fréchet distance on digits and mnist; with --metric, FID, KID and precision/recall on
    any images, in a named feature space, beside the real data's own."""
    from gantrix.evaluation import check_metrics, format_result, save_result
    from gantrix.features import CHOICES
    from gantrix.metrics import format_metrics
    from gantrix.trainer import EVAL

    if n is not None and n < 2:
        raise GantrixError(f"--n must be at least 2, got {n}")
    if metric:
        metric = check_metrics(metric)
        if features is not None and features not in CHOICES:
            from gantrix.errors import UnknownNameError

            raise UnknownNameError("feature space", features, CHOICES,
                                   hint=f" for --features (one of: {', '.join(CHOICES)})")
    elif features is not None or inception_weights is not None:
        raise GantrixError("--features and --inception-weights choose the space of --metric "
                           "fid/kid/pr; add --metric")
    trainer = _load_run(run, device, checkpoint)
    if metric:
        from gantrix import evaluation

        result = evaluation.evaluate(trainer, metric, n=n, seed=seed, features=features,
                                     inception_weights=inception_weights,
                                     report=lambda line: typer.echo(line, err=True))
        for note in result["notes"]:
            typer.echo(f"note: {note}", err=True)
        lines = format_result(result)
        typer.echo(f"step {result['step']}: {lines[0]}")
        for line in lines[1:]:
            typer.echo(line)
    else:
        result = trainer.evaluate(n=n, seed=seed, save=False)
        typer.echo(f"step {result['step']}: {format_metrics(result)}")
    try:
        typer.echo(f"saved {save_result(Path(run), result, EVAL)}", err=True)
    except GantrixError as exc:
        typer.secho(f"note: {exc}", fg=typer.colors.YELLOW, err=True)


def quality(
    recipes: List[str] = typer.Option(list(BENCH_RECIPES), "--recipes", "-r",
                                      help="Recipes or lone loss tricks; repeatable."),
    data: List[str] = typer.Option(list(BENCH_DATA), "--data", "-d", help="Data sets; repeatable."),
    seeds: int = typer.Option(3, help="Seeds per cell (0, 1, ...)."),
    steps: Optional[int] = typer.Option(None, help="Steps per run (default: the data's default)."),
    out: Path = typer.Option(Path("docs/results.md"), "--out", "-o", help="The Markdown file."),
    jobs: int = typer.Option(1, help="Runs trained side by side (worker processes sharing the "
                             "CPU cores; the numbers do not change)."),
) -> None:
    """Train every recipe on every data set with several seeds; write a Markdown table
    (mean ± std, the worst seed, and a flag where the seeds disagree)."""
    import shlex

    from gantrix.benchmark import quality_grid, write_results

    if seeds < 1:
        raise GantrixError(f"--seeds must be at least 1, got {seeds}")
    if jobs < 1:
        raise GantrixError(f"--jobs must be at least 1, got {jobs}")
    words = ["gantrix", "bench", "quality", *(w for r in recipes for w in ("-r", r)),
             *(w for d in data for w in ("-d", d)), "--seeds", str(seeds),
             *(["--steps", str(steps)] if steps is not None else []), "--out", str(out)]
    command = " ".join(shlex.quote(w) for w in words)
    cells = quality_grid(recipes, data, seeds, steps=steps, jobs=jobs,
                         report=lambda line: typer.echo(line, err=True),
                         checkpoint=lambda done: write_results(out, done, command))
    write_results(out, cells, command)
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    """Add the training commands (and ``bench quality``) to ``app``."""
    app.command("train")(_errors(_with_setting_options(train)))
    app.command("sample")(_errors(sample))
    app.command("eval")(_errors(evaluate))
    bench = next((g.typer_instance for g in app.registered_groups if g.name == "bench"), None)
    if bench is None:
        bench = typer.Typer(help="Benchmarks: the quality of the recipes (kernel speed: python bench/kernels.py).",
                            no_args_is_help=True)
        app.add_typer(bench, name="bench")
    bench.command("quality")(_errors(quality))
