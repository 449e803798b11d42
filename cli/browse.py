"""Browsing and checking commands: ``list``, ``info``, ``recipes``, ``plugins``, ``check``.

Each command reads the catalogue (`gantrix.registry`) or checks a `gantrix.Recipe` and prints
plain, aligned text, so the output reads well in a terminal and greps well in a pipe.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import typer

from gantrix.errors import GantrixError, UnknownNameError


def register(app: typer.Typer) -> None:
    """Add the browsing commands to ``app``."""
    app.command("list")(list_tricks)
    app.command("info")(info)
    app.command("recipes")(recipes)
    app.command("plugins")(plugins)
    app.command("check")(check)


# --------------------------------------------------------------------------- commands


def list_tricks(
    kind: Optional[str] = typer.Option(
        None, "--kind", "-k", help="Only this kind: loss, regularizer, policy or architecture."),
) -> None:
    """List every trick: name, kind, the plugin that provides it, and what it does."""
    from gantrix.registry import tricks
    from gantrix.trick import KINDS

    found = tricks(kind)
    order = {k: i for i, k in enumerate(KINDS)}
    rows = [(name, cls.kind, cls.plugin, cls.summary)
            for name, cls in sorted(found.items(), key=lambda nc: (order[nc[1].kind], nc[0]))]
    if not rows:
        typer.echo(f"no {kind} tricks are installed" if kind else "no tricks are installed")
        return
    _table(("NAME", "KIND", "PLUGIN", "SUMMARY"), rows)


def info(
    name: str = typer.Argument(..., help="A trick (or, with --recipe, a recipe) name."),
    recipe: bool = typer.Option(False, "--recipe", "-r", help="NAME is a recipe."),
) -> None:
    """Explain a trick (parameters, paper, relations) or, with --recipe, a recipe."""
    from gantrix.registry import catalogue

    cat = catalogue()
    if recipe:
        _recipe_info(cat.recipe(name))
    elif name in cat.tricks:
        _trick_info(cat.tricks[name], also_recipe=name in cat.recipes)
    elif name in cat.recipes:
        _recipe_info(cat.recipes[name])
    else:
        raise UnknownNameError("trick or recipe", name, [*cat.tricks, *cat.recipes])


def recipes() -> None:
    """List the named recipes (a paper's full setup each)."""
    from gantrix.registry import catalogue

    entries = sorted(catalogue().recipes.values(), key=lambda e: e.name)
    if not entries:
        typer.echo("no recipes are installed")
        return
    _table(("NAME", "PLUGIN", "SUMMARY"), [(e.name, e.plugin, e.summary) for e in entries])


def plugins() -> None:
    """List the installed plugins, their hooks, those that failed to load (every error) and
    those the environment kept from loading."""
    from gantrix.registry import catalogue

    cat = catalogue()
    ok = [p for p in cat.plugins if not p.errors]
    _table(("PLUGIN", "DISTRIBUTION", "VERSION", "HOOKS"),
           [(p.name, p.distribution, p.version, ", ".join(_short_hook(h) for h in p.hooks))
            for p in ok])
    failed = [p for p in cat.plugins if p.errors]
    if failed:
        typer.echo(f"\n{len(failed)} plugin(s) failed to load and contribute nothing "
                   f"(the others work):")
        for p in failed:
            for error in p.errors:
                typer.echo(f"  {p.name} ({p.distribution} {p.version}, {p.module}): {error}")
    if cat.skipped:
        typer.echo(f"\n{len(cat.skipped)} plugin(s) not loaded:")
        for s in cat.skipped:
            typer.echo(f"  {s.name} ({s.distribution} {s.version}): {s.why}")


def check(
    tricks: Optional[list[str]] = typer.Argument(
        None, help="Tricks to add, as NAME or NAME:key=value,... (e.g. gradient-penalty:weight=5)."),
    trick: list[str] = typer.Option([], "--trick", "-t", metavar="NAME[:k=v,...]",
                                    help="A trick to add, as in gantrix train (after the "
                                         "positional ones); repeatable."),
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help="Start from a named recipe."),
    config: Optional[Path] = typer.Option(None, "--config", "-c",
                                          help="Start from a recipe TOML file."),
    data: Optional[str] = typer.Option(
        None, "--data", "-d", help="Also build the models for this data (as gantrix train "
        "would: ring8, grid25, spiral, digits, an image folder, a .npy/.pt file) and check them."),
    nproc: int = typer.Option(1, "--nproc", help="Check it for training in N processes (what "
                              "cannot match one process, batches they cannot share); with --data."),
) -> None:
    """Check a composition before training: print its findings and the composed tricks.

    Without --data only the tricks' metadata is checked; with it the models are built (never
    trained) and checked too. Exits with status 1 when any finding is an error; warnings and
    notes do not fail.
    """
    from gantrix.check import check as check_recipe
    from gantrix.recipe import Recipe

    names = [*(tricks or ()), *trick]
    if not names and recipe is None and config is None:
        raise GantrixError("nothing to check: name tricks (gantrix check wgan weight-clip), "
                           "--recipe NAME or --config FILE.toml")
    if nproc < 1:
        raise GantrixError(f"--nproc must be at least 1, got {nproc}")
    if nproc > 1 and data is None:
        raise GantrixError("--nproc checks the models and the batch for N processes: give "
                           "--data too")
    # the positional names are tricks, always (a lone one too): gantrix check wgan
    report = check_recipe(Recipe(recipe=recipe, config=config).extend(names), data,
                          processes=nproc)
    models = report.models or ("not checked: the model checks need --data (what gantrix train "
                               "will get: ring8, digits, an image folder, ...)")
    _print_composition(report.tricks, report.findings, models=models)
    if not report.ok:
        raise typer.Exit(1)


# --------------------------------------------------------------------------- details


def _trick_info(cls, also_recipe: bool) -> None:
    from gantrix.findings import Replaces, Requires, as_relation

    typer.echo(f"{cls.name}  ({cls.kind}, from {cls.plugin or '?'})")
    typer.echo(cls.summary)
    description = cls.describe()
    if description and description != cls.summary:
        typer.echo("\n" + description)
    if cls.params:
        typer.echo("\nparameters:")
        _table(("NAME", "TYPE", "DEFAULT", "ALLOWED", "HELP"),
               [(p.name, p.type.__name__, _value(p.default), p.allowed, p.help)
                for p in cls.params], indent=2)
    else:
        typer.echo("\nparameters: none")
    if cls.paper:
        typer.echo(f"\npaper: {cls.paper}")
    requires = [as_relation(r, Requires) for r in cls.requires]
    replaces = [as_relation(r, Replaces) for r in cls.replaces]
    _relations("requires", [(r.target, r.reason, r.paper) for r in requires])
    _relations("conflicts", [(f"{c.target} [{c.severity}]", c.reason, c.paper)
                             for c in cls.conflicts])
    _relations("replaces", [(r.target, r.reason, r.paper) for r in replaces])
    if cls.provides:
        typer.echo(f"\nprovides: {', '.join(cls.provides)}")
    used = _recipes_using(cls.name)
    if used:
        typer.echo(f"\nin recipes: {', '.join(used)}")
    if also_recipe:
        typer.echo(f"\n{cls.name} is also a recipe: gantrix info --recipe {cls.name}")


def _recipe_info(entry) -> None:
    from gantrix.compose import resolve
    from gantrix.recipe import DATA_KINDS, Recipe, data_set_tables

    typer.echo(f"{entry.name}  (recipe, from {entry.plugin})")
    if entry.summary:
        typer.echo(entry.summary)
    if entry.data.get("paper"):
        typer.echo(f"\npaper: {entry.data['paper']}")
    recipe = Recipe(recipe=entry.name)
    if len(recipe.names) > 1:
        typer.echo(f"\nbuilds on: {' -> '.join(recipe.names)}")
    typer.echo("\ntricks:")
    for spec in recipe.specs:
        typer.echo(f"  {spec}")
    if recipe.train:
        typer.echo("\ntrain:")
        for key, value in recipe.train.items():
            typer.echo(f"  {key} = {value!r}")
    for kind in DATA_KINDS:
        for where, table in recipe.data_kind_tables(kind):
            _data_table_info(f"on {kind} data ([{kind}] of {where})", table, where)
            for name, sub in data_set_tables(table).items():
                _data_table_info(f"on {name} ([{kind}.{name}] of {where})", sub, where)
    typer.echo("\ncomposed:")
    _print_composition(*resolve(recipe), indent="  ")


def _data_table_info(title: str, table, where: str) -> None:
    from gantrix.recipe import USER, specs_from_table

    if not (table.get("tricks") or table.get("train")):  # only tables for data sets inside
        return
    typer.echo(f"\n{title}:")
    for spec in specs_from_table(table, USER, where):
        typer.echo(f"  + {spec}")
    for key, value in table.get("train", {}).items():
        typer.echo(f"  {key} = {value!r}")


def _print_composition(composed, findings, indent: str = "", models: str = "") -> None:
    for finding in findings:
        typer.echo(f"{indent}{finding}")
    typer.echo(f"{indent}tricks: {' '.join(t.spec() for t in composed) or '(none)'}")
    if models:
        typer.echo(f"{indent}models: {models}")
    counts = {s: sum(f.severity == s for f in findings) for s in ("error", "warning", "note")}
    verdict = "not runnable" if counts["error"] else "ok"
    summary = ", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items())
    typer.echo(f"{indent}{verdict}: {summary}")


def _relations(title: str, rows: list[tuple[str, str, str]]) -> None:
    if not rows:
        return
    typer.echo(f"\n{title}:")
    for target, reason, paper in rows:
        why = f": {reason}" if reason else ""
        src = f" ({paper})" if paper else ""
        typer.echo(f"  {target}{why}{src}")


def _recipes_using(trick: str) -> list[str]:
    from gantrix.registry import catalogue

    def names(entry) -> Iterable[str]:
        for item in entry.data.get("tricks", ()):
            if isinstance(item, str):
                yield item.partition(":")[0].strip()
            elif isinstance(item, dict):
                yield item.get("name")

    return sorted(e.name for e in catalogue().recipes.values() if trick in names(e))


def _short_hook(hook: str) -> str:
    return hook.removeprefix("gantrix_")


def _value(v: Any) -> str:
    return "none" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: int = 0) -> None:
    """Print ``rows`` under ``headers`` in aligned columns (the last column is not padded)."""
    cells = [tuple(str(c) for c in headers)] + [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers) - 1)]
    for row in cells:
        padded = [c.ljust(w) for c, w in zip(row, widths)] + [row[-1]]
        typer.echo((" " * indent + "  ".join(padded)).rstrip())
