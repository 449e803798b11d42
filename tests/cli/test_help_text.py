"""The help of every command reads well: no flag shown as if it took a value (``--mirror
<bool>``, ``--help <bool>``), a repeatable option shown with the one value each use takes,
and every command's description a full sentence on one line in its group's command list,
not broken where its docstring's source line was wrapped."""
from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from gantrix.cli.app import create_app, reflow


def _commands(group, path=()):
    """``(path, command)`` for every command and group under ``group``, the root included."""
    yield path, group
    for name, command in getattr(group, "commands", {}).items():
        yield from _commands(command, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(create_app())))
PATHS = [path for path, _ in COMMANDS]


def helps(path, columns):
    result = CliRunner().invoke(create_app(), [*path, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_every_command_is_covered():
    names = {" ".join(path) for path in PATHS}
    assert {"", "list", "check", "train", "sample", "eval", "data", "data prepare"} <= names


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "gantrix")
def test_no_flag_shows_a_value_and_no_option_a_list(path):
    text = helps(path, 80)
    assert "--help" in text
    assert "<bool>" not in text
    options = text.split("─ Options ─", 1)[1]
    assert "<list[" not in options  # (a variadic argument may say list: it takes several)


@pytest.mark.parametrize("path", [p for p, c in COMMANDS if getattr(c, "commands", None)],
                         ids=lambda p: " ".join(p) or "gantrix")
def test_every_description_in_a_command_list_is_a_full_sentence_on_one_line(path):
    group = dict(COMMANDS)[path]
    wide = helps(path, 400)
    for name, command in group.commands.items():
        first = (command.short_help or command.help or "").split("\n\n")[0]
        assert "\n" not in first, name
        assert re.fullmatch(r"[A-Z].*[.)]", first), f"{name}: {first!r} is not a sentence"
        assert re.search(rf"│ {re.escape(name)} +{re.escape(first)} +│", wide), name


def test_the_check_command_s_paragraphs_are_reflowed():
    text = helps(("check",), 400)
    assert ("Without --data only the tricks' metadata is checked; with it the models are built "
            "(never trained) and checked too. Exits with status 1") in text


@pytest.mark.parametrize("doc, shown", [
    ("One line\nwrapped.\n\n  Second\n  paragraph.", "One line wrapped.\n\nSecond paragraph."),
    ("Intro.\n\n- a list\n- kept", "Intro.\n\n- a list\n- kept"),
    ("Intro.\n\n\b\nkept\n  as is", "Intro.\n\n\b\nkept\n  as is"),
    ("Shown\nhere.\f\nhidden\ntext", "Shown here.\f\nhidden\ntext"),
])
def test_reflow(doc, shown):
    assert reflow(doc) == shown
