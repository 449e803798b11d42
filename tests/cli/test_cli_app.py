"""The app itself: plugin commands, errors turned into ``error: ...`` and exit 2 for every
command (a plugin's too), the built-in command modules, the console entry point, startup."""
import subprocess
import sys

import pytest

from gantrix import registry
from gantrix.cli import app as cli_app

HELLO = '''
import typer
from gantrix import GantrixError, hookimpl


@hookimpl
def gantrix_register_commands(app):
    @app.command("t-hello")
    def hello(name: str = typer.Argument("world")):
        """Say hello (a plugin's command)."""
        if name == "nobody":
            raise GantrixError("cannot greet nobody")
        if name == "bug":
            raise RuntimeError("a bug, not a user mistake")
        typer.echo(f"hello {name}")
'''

BROKEN_COMMANDS = '''
import typer
from gantrix import Loss, hookimpl


class Orphan(Loss):
    name = "t-orphan"


@hookimpl
def gantrix_register_tricks(register):
    register(Orphan)


@hookimpl
def gantrix_register_commands(app):
    @app.command("t-half-added")
    def half():
        """Added before the failure."""

    raise RuntimeError("cannot add my command")
'''

CLASHING = '''
import typer
from gantrix import Loss, hookimpl


class Clashing(Loss):
    name = "t-clashing"


@hookimpl
def gantrix_register_tricks(register):
    register(Clashing)


@hookimpl
def gantrix_register_commands(app):
    @app.command("t-fine")
    def fine():
        """A command of its own."""
        typer.echo("fine")

    @app.command(COMMAND)
    def mine():
        """Tries to take over a command."""
        typer.echo("hijacked")
'''


@pytest.fixture
def hello(install):
    install("gx-hello", {"gx_hello": HELLO}, {"hello": "gx_hello"})


def test_a_plugin_adds_a_command(gantrix, hello):
    assert "t-hello" in gantrix("--help").output
    result = gantrix("t-hello", "plugins")
    assert (result.exit_code, result.stdout) == (0, "hello plugins\n")
    assert "register_commands" in gantrix("plugins").stdout


def test_a_plugin_command_gets_the_same_error_handling(gantrix, hello, user_error):
    user_error(gantrix("t-hello", "nobody"), "error: cannot greet nobody")


def test_a_bug_is_not_disguised_as_a_user_error(gantrix, hello):
    result = gantrix("t-hello", "bug")
    assert result.exit_code == 1
    assert isinstance(result.exception, RuntimeError)


def test_a_plugin_that_fails_to_add_commands_is_reported_and_contributes_nothing(
        gantrix, hello, install, capsys):
    install("gx-badcmd", {"gx_badcmd": BROKEN_COMMANDS}, {"badcmd": "gx_badcmd"})
    result = gantrix("t-hello", "again")  # the app is created, and warns, before it runs
    assert result.exit_code == 0 and result.stdout == "hello again\n"
    assert ("warning: plugin 'badcmd' could not add its commands, so it is not loaded: "
            "RuntimeError: cannot add my command") in capsys.readouterr().err
    plugins = gantrix("plugins").stdout
    assert "badcmd (gx-badcmd 1.0, gx_badcmd): gantrix_register_commands failed: RuntimeError" in plugins
    assert "t-half-added" not in gantrix("--help").output
    assert "t-orphan" not in gantrix("list").stdout


@pytest.mark.parametrize("command", ["list", "check"])
def test_a_plugin_command_named_like_a_built_in_one_loses_and_fails_the_plugin(
        gantrix, install, capsys, command):
    install("gx-clash", {"gx_clash": CLASHING.replace("COMMAND", repr(command))}, {"clash": "gx_clash"})
    result = gantrix(command, "--help")
    assert result.exit_code == 0 and "hijacked" not in result.output
    assert "Tries to take over" not in result.output
    error = (f"command {command!r} already belongs to gantrix: a plugin cannot replace it "
             f"(rename the plugin's command)")
    assert (f"warning: plugin 'clash' could not add its commands, so it is not loaded: {error}"
            in capsys.readouterr().err)
    assert (f"clash (gx-clash 1.0, gx_clash): gantrix_register_commands failed: {error}"
            in gantrix("plugins").stdout)
    assert "t-clashing" not in gantrix("list").stdout and "t-fine" not in gantrix("--help").output


def test_a_command_group_named_like_a_built_in_command_loses(gantrix, install):
    install("gx-group", {"gx_group": '''
import typer
from gantrix import hookimpl


@hookimpl
def gantrix_register_commands(app):
    group = typer.Typer()

    @group.command("x")
    def x():
        """x"""

    app.add_typer(group, name="info")
'''}, {"group": "gx_group"})
    result = gantrix("info", "wgan")
    assert result.exit_code == 0 and result.stdout.startswith("wgan  (loss, from gantrix)")
    assert "command 'info' already belongs to gantrix" in gantrix("plugins").stdout


def test_of_two_plugins_with_one_command_name_the_first_loaded_keeps_it(gantrix, hello, install):
    install("gx-hello2", {"gx_hello2": HELLO.replace('f"hello {name}"', 'f"hi {name}"')},
            {"hello2": "gx_hello2"})
    first, second = [p.name for p in registry.catalogue().plugins if p.name.startswith("hello")]
    assert gantrix("t-hello", "you").stdout == ("hello you\n" if first == "hello" else "hi you\n")
    assert (f"{second} (gx-{second} 1.0, gx_{second}): gantrix_register_commands failed: command "
            f"'t-hello' already belongs to plugin {first!r}") in gantrix("plugins").stdout


def test_a_plugin_variable_naming_no_plugin_is_a_warning_on_every_command(gantrix, monkeypatch, capsys):
    monkeypatch.setenv("GANTRIX_LOAD_PLUGINS", "typo")
    registry.reset()
    result = gantrix("list", "--kind", "loss")
    assert result.exit_code == 0 and "wgan" in result.stdout
    assert capsys.readouterr().err == ("warning: GANTRIX_LOAD_PLUGINS names 'typo', which is no "
                                       "installed plugin's entry point or distribution (gantrix "
                                       "plugins lists them)\n")


def test_user_errors_guard_is_applied_once():
    def command():
        """Doc."""

    guarded = cli_app.user_errors(command)
    assert cli_app.user_errors(guarded) is guarded
    assert guarded.__name__ == "command" and guarded.__doc__ == "Doc."


def test_main_reports_a_broken_installation_without_a_traceback(monkeypatch, capsys):
    monkeypatch.setenv("GANTRIX_DISABLE_PLUGINS", "gantrix")
    monkeypatch.setattr(sys, "argv", ["gantrix", "list"])
    registry.reset()
    try:
        with pytest.raises(SystemExit) as exc:
            cli_app.main()
    finally:
        registry.reset()
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("error: gantrix's built-in plugins were not found")


def test_main_runs_a_command(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["gantrix", "--version"])
    with pytest.raises(SystemExit) as exc:
        cli_app.main()
    assert exc.value.code == 0 and capsys.readouterr().out == "gantrix 0.1.0\n"


def test_listing_imports_no_triton_and_builds_no_model():
    """`gantrix list` must start fast: plugins load once, lazily, and nothing heavy runs."""
    code = (
        "import sys, torch.nn\n"
        "built = []\n"
        "init = torch.nn.Module.__init__\n"
        "torch.nn.Module.__init__ = lambda self, *a, **k: (built.append(type(self).__name__), init(self, *a, **k))[1]\n"
        "from typer.testing import CliRunner\n"
        "from gantrix.cli.app import create_app\n"
        "result = CliRunner().invoke(create_app(), ['list'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in sys.modules if m == 'triton' or m.startswith('triton.')), built)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] []"
