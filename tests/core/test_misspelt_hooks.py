"""A hook implementation that matches none of gantrix's hooks (a misspelt name, most often):
its plugin is kept out, and that is said wherever plugins load (a `GantrixWarning` in
Python, ``warning: ...`` on the CLI's stderr for every command), with the hook it was
probably meant to be; a trick class with one is refused by name, never a raw pluggy error."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gantrix import GantrixError, Policy, Recipe, hookimpl, registry
from gantrix.cli.app import create_app
from gantrix.errors import GantrixWarning

GOOD_TRICK = '''
from gantrix import Policy, hookimpl


class Fine(Policy):
    """A policy of a plugin with a misspelt module hook."""
    name = "t-typo-policy"
'''

MISSPELT_MODULE = GOOD_TRICK + '''

@hookimpl
def gantrix_register_trick(register):
    register(Fine)
'''

MISSPELT_METHOD = '''
from gantrix import Policy, hookimpl


class Steps(Policy):
    """A policy whose hook method is misspelt."""
    name = "t-steps"

    @hookimpl
    def gantrix_critic_step(self, step):
        return 2


@hookimpl
def gantrix_register_tricks(register):
    register(Steps)
'''

MODULE_WARNING = ("plugin 'typo' (gx-typo 1.0) is not loaded: gantrix_register_trick matches "
                  "no gantrix hook; did you mean gantrix_register_tricks?")
METHOD_WARNING = ("plugin 'steps' (gx-steps 1.0) is not loaded: ValueError: trick 't-steps' "
                  "(Steps): gantrix_critic_step matches no gantrix hook; did you mean "
                  "gantrix_critic_steps?")


@pytest.fixture
def misspelt(install):
    install("gx-typo", {"gx_typo": MISSPELT_MODULE}, {"typo": "gx_typo"})
    install("gx-steps", {"gx_steps": MISSPELT_METHOD}, {"steps": "gx_steps"})


def test_python_warns_when_the_plugins_load(misspelt):
    with pytest.warns(GantrixWarning) as caught:
        cat = registry.catalogue()
    assert [str(w.message) for w in caught] == cat.warnings
    assert sorted(cat.warnings) == sorted([MODULE_WARNING, METHOD_WARNING])
    assert "t-typo-policy" not in cat.tricks and "t-steps" not in cat.tricks
    assert {"wgan", "gradient-penalty"} <= set(cat.tricks)  # the others load


@pytest.mark.parametrize("args", [["list"], ["check", "wgan", "weight-clip"], ["recipes"]])
def test_every_command_says_it_on_stderr(misspelt, args, capsys):
    app = create_app()  # (where the console script loads the plugins)
    assert sorted(capsys.readouterr().err.splitlines()) == sorted(
        [f"warning: {MODULE_WARNING}", f"warning: {METHOD_WARNING}"])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "did you mean" not in result.stdout


def test_a_hook_far_from_every_name_points_to_the_list(install):
    install("gx-odd", {"gx_odd": GOOD_TRICK + "\n\n@hookimpl\ndef gantrix_zzz(register):\n"
                                              "    pass\n"}, {"odd": "gx_odd"})
    with pytest.warns(GantrixWarning, match=r"gantrix_zzz matches no gantrix hook "
                                            r"\(gantrix.hookspecs lists them\)"):
        registry.catalogue()


def test_an_optional_or_renamed_hook_is_not_reported():
    class Renamed(Policy):
        name = "t-renamed"

        @hookimpl(specname="gantrix_critic_steps")
        def steps(self, step):
            return 2

        @hookimpl(optionalhook=True)
        def gantrix_someday(self):
            return None

    assert registry.unknown_hooks(Renamed) == []


def test_a_trick_class_put_in_the_catalogue_by_hand_is_refused_by_name(add_tricks):
    class Steps(Policy):
        name = "t-steps-by-hand"

        @hookimpl
        def gantrix_critic_step(self, step):
            return 2

    add_tricks(Steps)
    with pytest.raises(GantrixError, match=r"trick 't-steps-by-hand' \(Steps\): "
                                           r"gantrix_critic_step matches no gantrix hook; "
                                           r"did you mean gantrix_critic_steps\?"):
        Recipe("wgan", "weight-clip", "t-steps-by-hand").compose()
