"""``gantrix ablate``: which trick of a composition earns its place (`gantrix.ablation`)."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

from gantrix.errors import GantrixError

HELP = """Train a composition and each variant of it over seeds, and tell which tricks help.

The variants: the composition without each of its tricks (leave-one-out; --keep T holds T
fixed: no variant without it), with each --add trick, and with each --swap OLD=NEW. All
train on the same seeds (paired: seed s of every variant starts from the same weights where
the models agree and sees the same batches). The table (mean ± 95 % t interval over seeds,
the paired difference from the full composition with its own interval, a verdict, the worst
seed, the time per run) is printed and written to OUT/ablation.md, .json and .png. A
variant the checker refuses is a row saying why.

Each cell (a variant on a seed) is an ordinary run folder, OUT/VARIANT/seed-S. Run the same
command again to resume a killed ablation: scored cells are read back, a cell cut short
resumes from its checkpoint.

Cores: each cell trains with --threads T CPU threads (default 1: for the small models of an
ablation, cells side by side use the cores far better than threads inside one run), and
--jobs J cells run at once (default: the usable cores // T; 1 on a GPU). T is part of the
ablation (the last bits of a convolution depend on it); J does not change any number.

A cluster: --plan prints one `gantrix train` command per cell (exactly what ablate runs;
run them with a Slurm array, GNU parallel, ..., each with --nproc if you like); then
`gantrix ablate --collect OUT` builds the table from the finished run folders.
"""


def _default_out(recipe: str | None, config: Path | None, tricks: list[str],
                 data: str) -> Path:
    """``runs/ablate-<recipe, config or first trick>-<data>``: the same for the same
    arguments, so running a command again resumes it."""
    name = recipe or (config.stem if config else tricks[0].split(":")[0] if tricks else "x")
    return Path("runs") / f"ablate-{name}-{Path(data).name}"


def ablate(
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r",
                                         help="A named recipe (gantrix recipes)."),
    trick: List[str] = typer.Option([], "--trick", "-t", metavar="NAME[:k=v,...]",
                                    help="A trick of the composition; repeatable."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="A recipe TOML file."),
    data: Optional[str] = typer.Option(None, "--data", "-d",
                                       help="Built-in data, an image folder or a .npy/.pt file."),
    seeds: int = typer.Option(3, "--seeds", "-s", help="Seeds per variant (0, 1, ...)."),
    add: List[str] = typer.Option([], "--add", metavar="NAME[:k=v,...]",
                                  help="A variant with this trick added; repeatable."),
    swap: List[str] = typer.Option([], "--swap", metavar="OLD=NEW",
                                   help="A variant with trick OLD replaced by NEW "
                                        "(e.g. adam=rmsprop); repeatable."),
    keep: List[str] = typer.Option([], "--keep", metavar="NAME",
                                   help="A trick of the composition held fixed: no variant "
                                        "without it (e.g. the architecture); repeatable."),
    metric: Optional[str] = typer.Option(None, "--metric", "-m",
                                         help="The metric that judges the variants (default: "
                                              "high_quality on 2-D data, modes on "
                                              "stacked-mnist, fd on digits and mnist, fid on "
                                              "other images)."),
    steps: Optional[int] = typer.Option(None, "--steps",
                                        help="Steps per run (default: the composition's)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j",
                                       help="Cells trained at once (default: usable cores "
                                            "// --threads; 1 on a GPU)."),
    threads: int = typer.Option(1, "--threads", help="CPU threads of each cell."),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help="The ablation folder (default: "
                                            "runs/ablate-NAME-DATA)."),
    plan: bool = typer.Option(False, "--plan",
                              help="Print one gantrix train command per cell; train nothing."),
    collect: Optional[Path] = typer.Option(None, "--collect",
                                           help="Build the table from the finished cells "
                                                "of this ablation folder."),
) -> None:
    from gantrix import ablation_run

    def report(line: str) -> None:
        typer.echo(line, err=True)

    command = " ".join(shlex.quote(w) for w in ["gantrix", "ablate", *sys.argv[2:]]) \
        if len(sys.argv) > 1 and sys.argv[1] == "ablate" else ""
    if collect is not None:
        given = [flag for flag, value in (("--recipe", recipe), ("--trick", trick),
                                          ("--config", config), ("--data", data),
                                          ("--add", add), ("--swap", swap),
                                          ("--keep", keep), ("--steps", steps), ("--out", out),
                                          ("--plan", plan), ("--jobs", jobs)) if value]
        if given:
            raise GantrixError(f"--collect reads the ablation as it was planned; drop "
                               f"{', '.join(given)} (only --metric may be given)")
        table = ablation_run.collect(collect, metric, report=report, command=command)
        _show(table, collect)
        return
    if data is None:
        from gantrix.data import BUILTIN

        raise GantrixError(f"no data: give --data ({', '.join(BUILTIN)}, an image folder or "
                           f"a .npy/.pt file)")
    out = out or _default_out(recipe, config, trick, data)
    kwargs = dict(data=data, tricks=trick, config=config, seeds=seeds, add=add, swap=swap,
                  keep=keep, steps=steps, threads=threads, out=out, report=report)
    if plan:
        commands = ablation_run.plan(recipe, **kwargs)
        typer.echo(f"# {len(commands)} cells of the ablation in {out}; run each (in any "
                   f"order, anywhere that sees this folder), then:\n"
                   f"#   gantrix ablate --collect {shlex.quote(str(out))}\n"
                   f"# a cell stopped part-way continues with: gantrix train --resume FOLDER")
        for line in commands:
            typer.echo(line)
        return
    table = ablation_run.ablate(recipe, metric=metric, jobs=jobs, command=command, **kwargs)
    _show(table, out)


def _show(table, out: Path) -> None:
    typer.echo(table.markdown())
    typer.echo(f"wrote {out / 'ablation.md'}, ablation.json and ablation.png", err=True)


def _interruptible(command):
    """Exit 128 + signal when the ablation was stopped (its message on stderr)."""
    import functools

    @functools.wraps(command)
    def run(*args, **kwargs):
        from gantrix.ablation_run import Interrupted

        try:
            return command(*args, **kwargs)
        except Interrupted as exc:
            typer.secho(str(exc), fg=typer.colors.YELLOW, err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:  # Ctrl-C while planning or writing the table
            typer.secho("interrupted: finished cells are kept; run the same command again "
                        "to resume", fg=typer.colors.YELLOW, err=True)
            raise typer.Exit(130) from None

    return run


def register(app: typer.Typer) -> None:
    """Add ``gantrix ablate`` to ``app``."""
    app.command("ablate", help=HELP, short_help="Train a composition and each variant of it "
                "over seeds: which tricks help.")(_interruptible(ablate))
