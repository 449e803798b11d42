"""The ``gantrix`` command line: the built-in commands, then every plugin's commands.

The CLI only parses, calls the library and prints. A user mistake (any `gantrix.GantrixError`)
prints ``error: <message>`` on stderr and exits with status 2, never a traceback: every
command, a plugin's too, is wrapped by `user_errors` when the app is created, so this holds
however the app is invoked (the console script, ``python -m gantrix.cli``, or
``typer.testing.CliRunner``).
"""
from __future__ import annotations

import functools
import inspect
import os
import re
import warnings
from importlib import import_module
from typing import Any, Callable, NoReturn

import typer
import typer.core
import typer.main

from gantrix import __version__
from gantrix.errors import GantrixError

#: the built-in command modules, in help order; each exposes ``register(app)``.
BUILTIN_COMMANDS = ("browse", "train", "ablate", "data", "export")

#: the exit status of a command stopped by a user mistake.
USER_ERROR = 2


def user_errors(command: Callable) -> Callable:
    """Turn a `GantrixError` raised by ``command`` into ``error: ...`` on stderr and exit 2."""
    if getattr(command, "__gantrix_guarded__", False):
        return command

    @functools.wraps(command)
    def guarded(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except GantrixError as exc:
            fail(str(exc))

    guarded.__gantrix_guarded__ = True
    return guarded


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and stop with the user-error status."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(USER_ERROR)


def _guard(app: typer.Typer) -> None:
    for info in app.registered_commands:
        if info.callback is not None:
            info.callback = user_errors(info.callback)
    for group in app.registered_groups:
        if isinstance(group.typer_instance, typer.Typer):
            _guard(group.typer_instance)


#: a paragraph that is a list (each line a ``-``, ``*`` or numbered item) keeps its lines
_LIST = re.compile(r"\s*([-*\u2022]|\d+[.)])\s")


def reflow(text: str) -> str:
    """``text`` (a command's docstring) with each paragraph on one line.

    Typer's rich help keeps a docstring's single line breaks in the command list and in the
    paragraphs after the first, so a description broke mid-sentence wherever its source
    line was wrapped. Paragraphs click marks as preformatted (``\\b``), lists, and what
    follows ``\\f`` (never shown) are left as they are."""
    shown, cut, hidden = inspect.cleandoc(text).partition("\f")
    paragraphs = []
    for paragraph in shown.split("\n\n"):
        lines = paragraph.splitlines()
        if paragraph.startswith("\b") or len(lines) > 1 and all(map(_LIST.match, lines)):
            paragraphs.append(paragraph)
        else:
            paragraphs.append(" ".join(" ".join(lines).split()))
    return "\n\n".join(paragraphs) + cut + hidden


def _reflow_help(app: typer.Typer) -> None:
    """Every command's and group's help (given, or its docstring) through `reflow`."""
    for info in app.registered_commands:
        doc = info.help if isinstance(info.help, str) else inspect.getdoc(info.callback)
        if doc:
            info.help = reflow(doc)
        if isinstance(info.short_help, str):
            info.short_help = reflow(info.short_help)
    for group in app.registered_groups:
        for holder in (group, group.typer_instance.info):
            if isinstance(holder.help, str):
                holder.help = reflow(holder.help)
        if isinstance(group.typer_instance, typer.Typer):
            _reflow_help(group.typer_instance)


def _value_types(command: Any, ctx: typer.Context) -> None:
    """Each option's type in the help as the value it takes: none beside a flag (typer shows
    ``--mirror <bool>``, even ``--help <bool>``, as if a flag took a value) and one value's
    beside a repeatable option (``--data <str>``, not ``<list[str]>``: each ``--data`` takes
    one). The help shows an option's metavar when it has one: these are set where the
    command did not choose its own. Through ``command``'s subcommands too (groups), its
    help option included."""
    for param in command.get_params(ctx):
        if param.param_type_name != "option" or param.metavar is not None:
            continue
        if getattr(param, "is_flag", False):
            param.metavar = ""
        elif getattr(param, "multiple", False):
            param.metavar = re.sub(r"^<list\[(.*)\]>$", r"<\1>", param.display_type(ctx))
    for sub in getattr(command, "commands", {}).values():
        _value_types(sub, ctx)


class GantrixGroup(typer.core.TyperGroup):
    """The root command: its help, and that of every command it resolves, shows each
    option's value as `_value_types` says."""

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _value_types(command, ctx)
        return command

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        _value_types(self, ctx)
        super().format_help(ctx, formatter)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"gantrix {__version__}")
        raise typer.Exit()


def _builtin_modules():
    """The built-in command modules, imported when the app is created (not at import)."""
    return [import_module(f"{__package__}.{name}") for name in BUILTIN_COMMANDS]


def _command_names(commands, groups) -> set[str]:
    """The names typer gives these registered commands and command groups."""
    scratch = typer.Typer()
    scratch.registered_commands, scratch.registered_groups = list(commands), list(groups)
    return set(typer.main.get_group(scratch).commands)


def _warn(message: str) -> None:
    typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)


def _plugin_commands(app: typer.Typer) -> None:
    """Let every plugin add commands. One that fails, or that names a command gantrix (or an
    earlier plugin) already has, gets none of them, and is reported as failed to load (it
    contributes nothing); the others still load. Built-in commands always win."""
    from gantrix.errors import GantrixWarning
    from gantrix.hookspecs import call_plugin
    from gantrix.registry import catalogue

    with warnings.catch_warnings():  # printed below as the CLI prints every warning
        warnings.simplefilter("ignore", GantrixWarning)
        cat = catalogue()
    for message in cat.warnings:
        _warn(message)
    owners = dict.fromkeys(_command_names(app.registered_commands, app.registered_groups),
                           "gantrix")
    for impl in cat.pm.hook.gantrix_register_commands.get_hookimpls():  # in loading order
        commands, groups = len(app.registered_commands), len(app.registered_groups)
        try:
            call_plugin(cat.pm, "gantrix_register_commands", impl.plugin, app=app)
            added = _command_names(app.registered_commands[commands:],
                                   app.registered_groups[groups:])
            error = "; ".join(f"command {name!r} already belongs to {owners[name]}: a plugin "
                              f"cannot replace it (rename the plugin's command)"
                              for name in sorted(added & set(owners)))
        except Exception as exc:  # a broken plugin must not take the CLI down
            error = f"{type(exc).__name__}: {exc}"
        if not error:
            owners.update(dict.fromkeys(added, f"plugin {impl.plugin_name!r}"))
            continue
        del app.registered_commands[commands:], app.registered_groups[groups:]
        cat.withdraw(impl.plugin_name, f"gantrix_register_commands failed: {error}")
        _warn(f"plugin {impl.plugin_name!r} could not add its commands, so it is not "
              f"loaded: {error}")


def create_app() -> typer.Typer:
    """A fresh app with the built-in commands and every plugin's commands."""
    app = typer.Typer(
        cls=GantrixGroup,
        name="gantrix",
        help="GAN training tricks as composable plugins: browse, check, train.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def root(
        version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                     help="Print gantrix's version and exit."),
    ) -> None:
        """GAN training tricks as composable plugins: browse, check, train."""

    for module in _builtin_modules():
        module.register(app)
    _plugin_commands(app)
    _guard(app)
    _reflow_help(app)
    return app


def main() -> None:
    """Console entry point (``gantrix``). Ctrl-C while the app is built (torch and the
    plugins loading, a few seconds) ends with one line and status 130, not a traceback."""
    try:
        app = create_app()
    except GantrixError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise SystemExit(USER_ERROR) from None
    except KeyboardInterrupt:
        typer.echo("gantrix: interrupted while starting", err=True)
        raise SystemExit(130) from None
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        app(prog_name="gantrix")
        return
    # a process of a torchrun launch: leave the process group and exit without the
    # interpreter's teardown, where gloo's worker threads can abort the process (SIGABRT)
    # after the run has ended well
    from gantrix import distributed

    try:
        app(prog_name="gantrix")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    distributed.exit_now(code)
