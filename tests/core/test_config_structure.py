"""``--config`` files that are not what a recipe TOML must be (not UTF-8, a folder, a FIFO,
``train = 5``, ``recipe = 5``), and ``gantrix check --config`` refusing what ``gantrix
train`` refuses: each a user error naming the file and the key, through the CLI."""
from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from gantrix import GantrixError, Recipe, registry
from gantrix.check import check
from gantrix.cli.app import create_app


def run(*args):
    return CliRunner().invoke(create_app(), [str(a) for a in args])


def refused(result, *fragments):
    """The command stopped as a user mistake: exit 2, ``error: ...`` naming each fragment."""
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and result.stderr.startswith("error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.fixture
def config(tmp_path):
    """``config(content)``: a config file with that content (bytes or text)."""

    def write(content, name="my.toml"):
        path = tmp_path / name
        if isinstance(content, str):
            content = content.encode()
        path.write_bytes(content)
        return path

    return write


BAD_FILES = [
    (b"\xff\xfetricks = []\n", "is not UTF-8 text (a TOML file must be): byte b'\\xff' at "
                               "offset 0"),
    ("train = 5\n", "'train' must be a table of settings ([train] with key = value lines), got 5"),
    ('tricks = ["wgan"]\nrecipe = 5\n', "'recipe' must be a recipe's name (a string), got 5"),
    ('tricks = ["wgan"]\nsummary = ["a"]\n', "'summary' must be a string, got ['a']"),
    ("tricks = [\n", "is not valid TOML"),
]


@pytest.mark.parametrize("content, message", BAD_FILES, ids=["utf8", "train", "recipe",
                                                              "summary", "toml"])
@pytest.mark.parametrize("command", ["check", "train"])
def test_a_bad_config_file_is_named_with_the_key(config, tmp_path, command, content, message):
    path = config(content)
    extra = ["--data", "ring8", "--out", tmp_path / "run"] if command == "train" else []
    refused(run(command, "--config", path, *extra), f"{path}", message)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["check", "train"])
def test_a_folder_or_a_fifo_given_as_config(tmp_path, command):
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)  # reading it would wait for a writer forever
    refused(run(command, "--config", tmp_path), f"{tmp_path} is a folder, not a TOML file")
    refused(run(command, "--config", fifo), f"{fifo} is not a regular file")


def test_a_plugin_recipe_of_the_wrong_shape_is_named(add_recipe):
    add_recipe("t-bad", {"tricks": ["wgan"], "train": 5})
    with pytest.raises(GantrixError, match=r"recipe 't-bad': 'train' must be a table"):
        Recipe(recipe="t-bad")


def test_a_plugin_registering_a_recipe_that_is_no_table_is_kept_out(install):
    install("gx-five", {"gx_five": """
from gantrix import hookimpl


@hookimpl
def gantrix_register_recipes(register):
    register("t-five", 5)
"""}, {"five": "gx_five"})
    five = next(p for p in registry.catalogue().plugins if p.name == "five")
    assert five.error == ("TypeError: register() of recipe 't-five' takes a table (a dict "
                          "shaped like a recipe TOML file) or a TOML file's path, got 5")
    assert "t-five" not in registry.catalogue().recipes


# --------------------------------------------------------------- check refuses as train does

TRAIN_REFUSES = [
    ("[train]\nbogus = 3\n", "unknown setting(s) bogus"),
    ("[train]\nstep = 3\n", "unknown setting(s) step (did you mean steps?)"),
    ('[train]\nsteps = "many"\n', "parameter 'steps' got 'many'"),
    ('[train]\nmirror = "yes"\n', "parameter 'mirror' got 'yes'; allowed: true or false"),
    ("[train]\nbatch_size = 0\n", "parameter 'batch_size' got 0"),
    # only for some data: train refuses it there, check refuses it without the data
    ("[points]\ntrain = { bogus = 1 }\n", "unknown setting(s) bogus"),
    ("[images.digits]\ntrain = { lr = -1.0 }\n", "parameter 'lr' got -1.0"),
]


@pytest.mark.parametrize("table, message", TRAIN_REFUSES)
def test_check_refuses_the_settings_train_refuses(config, tmp_path, table, message):
    path = config('tricks = ["wgan", "gradient-penalty"]\n' + table)
    data = "digits" if "digits" in table else "ring8"
    refused(run("train", "--config", path, "--data", data, "--out", tmp_path / "run"), message)
    refused(run("check", "--config", path), message)


def test_check_refuses_an_lr_beside_an_optimizer_trick(config, tmp_path):
    path = config('tricks = ["wgan", "gradient-penalty", "adam:beta1=0"]\n[train]\nlr = 0.001\n')
    rule = "lr sets the core's default Adam, but this composition has an optimizer trick"
    refused(run("train", "--config", path, "--data", "ring8", "--out", tmp_path / "run"), rule)
    for args in ((), ("--data", "ring8")):
        result = run("check", "--config", path, *args)
        assert result.exit_code == 1, result.output
        assert result.stdout.splitlines()[0].startswith(f"error: {rule}")
        assert result.stdout.splitlines()[-1].startswith("not runnable: 1 error")
    without_trick = config('tricks = ["wgan", "gradient-penalty"]\n[train]\nlr = 0.001\n',
                           "plain.toml")
    assert check(Recipe(config=without_trick)).ok
