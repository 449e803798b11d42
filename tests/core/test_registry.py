"""Discovery (`gantrix.registry`): built-ins from `BUILTIN_PLUGINS`, third-party plugins
installed for real, the environment switches, and broken plugins reported without taking
the others down."""
import sys
import textwrap
from importlib import metadata

import pytest

import gantrix
from gantrix import GantrixError, ParamError, UnknownNameError, registry

pytestmark = pytest.mark.usefixtures("fresh_registry")

GOOD = '''
import torch
from gantrix import Loss, Param, hookimpl


class Margin(Loss):
    """A test loss from a third-party distribution."""
    name = "t-extra-loss"
    summary = "from gx-extra"
    params = (Param("margin", float, 1.0, low=0),)

    def d_loss(self, r, f):
        return torch.relu(self.margin - r).mean() + torch.relu(self.margin + f).mean()

    def g_loss(self, r, f):
        return -f.mean()


@hookimpl
def gantrix_register_tricks(register):
    register(Margin)


@hookimpl
def gantrix_register_recipes(register):
    register("t-extra", {"summary": "extra recipe", "tricks": ["t-extra-loss:margin=2"]})
'''


def plugin(name):
    return next(p for p in registry.catalogue().plugins if p.name == name)


@pytest.fixture
def extra(install):
    install("gx-extra", {"gx_extra": GOOD}, {"extra": "gx_extra"}, version="2.5")


def test_builtins_load_from_the_tuple_first():
    cat = registry.catalogue()
    losses = plugin("losses")
    assert (losses.distribution, losses.version, losses.module, losses.error) == (
        "gantrix", gantrix.__version__, "gantrix.plugins.losses", None)
    assert losses.hooks == ["gantrix_register_tricks"]
    assert {"minimax", "nonsaturating", "wgan", "hinge", "lsgan"} <= set(cat.tricks)
    assert cat.tricks["wgan"].plugin == "gantrix"
    assert [(p.name, p.module, p.error) for p in cat.plugins[:len(registry.BUILTIN_PLUGINS)]] == [
        (registry.builtin_name(m), m, None) for m in registry.BUILTIN_PLUGINS]
    assert plugin("spectral-norm").module == "gantrix.plugins.spectral_norm"


def test_builtins_need_no_installed_metadata(monkeypatch):
    """A source checkout whose metadata declares no entry point still has every built-in."""
    monkeypatch.setattr(metadata, "entry_points", lambda **_: [])
    cat = registry.catalogue()
    assert [p.module for p in cat.plugins] == list(registry.BUILTIN_PLUGINS)
    assert all(p.error is None and p.distribution == "gantrix" for p in cat.plugins)
    assert {"wgan", "gradient-penalty", "spectral-norm"} <= set(cat.tricks) and "wgan-gp" in cat.recipes


FRESH = """
from gantrix import Policy, hookimpl


class Fresh(Policy):
    name = "t-fresh"


@hookimpl
def gantrix_register_tricks(register):
    register(Fresh)
"""


@pytest.fixture
def new_builtin(tmp_path, monkeypatch):
    """``new_builtin(module, source)``: a new file in the ``gantrix.plugins`` package (in a
    temporary folder on its path, so the source tree is untouched), appended to the tuple."""
    import gantrix.plugins

    folder = tmp_path / "more-plugins"
    folder.mkdir()
    monkeypatch.setattr(gantrix.plugins, "__path__", [*gantrix.plugins.__path__, str(folder)])
    added = []

    def add(module: str, source: str | None) -> str:
        if source is not None:
            (folder / f"{module}.py").write_text(textwrap.dedent(source))
        added.append(f"gantrix.plugins.{module}")
        monkeypatch.setattr(registry, "BUILTIN_PLUGINS", (*registry.BUILTIN_PLUGINS, added[-1]))
        registry.reset()
        return added[-1]

    yield add
    for module in added:
        sys.modules.pop(module, None)


def test_a_module_added_to_the_tuple_loads_without_reinstalling(new_builtin):
    new_builtin("t_fresh", FRESH)
    fresh = plugin("t-fresh")
    assert (fresh.distribution, fresh.module, fresh.error, fresh.tricks) == (
        "gantrix", "gantrix.plugins.t_fresh", None, ["t-fresh"])
    assert registry.catalogue().tricks["t-fresh"].plugin == "gantrix"


def test_a_broken_builtin_is_reported_by_name_and_the_others_load(new_builtin):
    new_builtin("t_broken", "raise ImportError('needs the frobnicator package')\n")
    new_builtin("t_gone", None)
    broken, gone = plugin("t-broken"), plugin("t-gone")
    assert (broken.distribution, broken.error) == ("gantrix", "ImportError: needs the frobnicator package")
    assert gone.error == "ModuleNotFoundError: No module named 'gantrix.plugins.t_gone'"
    assert "wgan" in registry.catalogue().tricks and plugin("losses").error is None


def test_when_no_builtin_loads_gantrix_says_why(monkeypatch):
    monkeypatch.setattr(registry, "BUILTIN_PLUGINS", ("gantrix.plugins.t_gone",))
    with pytest.raises(GantrixError, match=r"built-in plugins were not found: none of them loaded "
                                           r"\(the first, gantrix.plugins.t_gone: ModuleNotFoundError"):
        registry.catalogue()


def test_an_entry_point_naming_a_builtin_module_does_not_register_it_twice(install):
    install("gx-alias", {}, {"my-losses": "gantrix.plugins.losses"})
    cat = registry.catalogue()
    assert [p.name for p in cat.plugins].count("losses") == 1
    assert "my-losses" not in {p.name for p in cat.plugins} | {s.name for s in cat.skipped}
    assert all(p.error is None for p in cat.plugins) and cat.tricks["wgan"].plugin == "gantrix"


def test_entry_points_left_in_gantrix_s_own_metadata_are_passed_over(install):
    """An install made when the built-ins were entry points leaves them in its metadata
    (even one for a module since removed): the tuple alone decides."""
    install("gantrix", {}, {"losses": "gantrix.plugins.losses", "gone": "gantrix.plugins.gone"},
            version="0.0.1")
    assert {d.name for d in (ep.dist for ep in metadata.entry_points(group="gantrix"))} == {"gantrix"}
    cat = registry.catalogue()
    assert [p.module for p in cat.plugins] == list(registry.BUILTIN_PLUGINS)
    assert all(p.error is None and p.version == gantrix.__version__ for p in cat.plugins)


def test_the_catalogue_loads_once_until_reset():
    first = registry.catalogue()
    assert registry.catalogue() is first
    registry.reset()
    assert registry.catalogue() is not first


def test_import_gantrix_loads_no_plugin():
    assert registry._catalogue is None
    gantrix.Recipe  # noqa: B018 — resolving a lazy name does not load plugins
    assert registry._catalogue is None


def test_a_third_party_plugin_adds_tricks_and_recipes(extra):
    info = plugin("extra")
    assert (info.distribution, info.version, info.module, info.error) == ("gx-extra", "2.5", "gx_extra", None)
    assert info.hooks == ["gantrix_register_recipes", "gantrix_register_tricks"]
    assert gantrix.tricks("loss")["t-extra-loss"].plugin == "gx-extra"
    assert registry.catalogue().recipe("t-extra").plugin == "gx-extra"
    assert gantrix.Recipe(recipe="t-extra").compose().get("t-extra-loss").margin == 2.0


def test_make_configures_a_plugin_trick(extra):
    import torch

    loss = gantrix.make("t-extra-loss", margin=0.5)
    r, f = torch.tensor([0.0, 1.0]), torch.tensor([0.0, -1.0])
    assert loss.d_loss(r, f).item() == pytest.approx((0.5 + 0.0) / 2 + (0.5 + 0.0) / 2)
    with pytest.raises(ParamError, match="'margin' got -1.0"):
        gantrix.make("t-extra-loss", margin=-1.0)


def test_load_plugins_empty_means_builtins_only(extra, monkeypatch):
    monkeypatch.setenv("GANTRIX_LOAD_PLUGINS", "")
    registry.reset()
    cat = registry.catalogue()
    assert {p.distribution for p in cat.plugins} == {"gantrix"}
    assert "t-extra-loss" not in cat.tricks and "wgan" in cat.tricks


@pytest.mark.filterwarnings("ignore:GANTRIX_LOAD_PLUGINS names 'other'")
@pytest.mark.parametrize("value, loaded", [("extra", True), ("gx-extra", True),
                                           ("other,extra", True), ("other", False)])
def test_load_plugins_by_entry_point_or_distribution(extra, monkeypatch, value, loaded):
    monkeypatch.setenv("GANTRIX_LOAD_PLUGINS", value)
    registry.reset()
    assert ("t-extra-loss" in registry.catalogue().tricks) is loaded


@pytest.mark.filterwarnings("ignore:GANTRIX_DISABLE_PLUGINS names 'x'")
@pytest.mark.parametrize("value", ["extra", "gx-extra", " extra , x"])
def test_disable_a_third_party_plugin(extra, monkeypatch, value):
    monkeypatch.setenv("GANTRIX_DISABLE_PLUGINS", value)
    registry.reset()
    assert "t-extra-loss" not in registry.catalogue().tricks
    assert "extra" not in {p.name for p in registry.catalogue().plugins}


@pytest.mark.parametrize("value", ["losses", "gantrix.plugins.losses"])
def test_disable_a_builtin_plugin(monkeypatch, value, recwarn):
    monkeypatch.setenv("GANTRIX_DISABLE_PLUGINS", value)
    registry.reset()
    cat = registry.catalogue()
    assert "wgan" not in cat.tricks and "losses" not in {p.name for p in cat.plugins}
    assert cat.skipped == [registry.Skipped("losses", "gantrix", gantrix.__version__,
                                            "disabled by GANTRIX_DISABLE_PLUGINS")]
    assert "recipes" in {p.name for p in cat.plugins} and cat.warnings == [] and len(recwarn) == 0


def test_without_any_builtin_plugin_gantrix_says_how_to_fix_it(monkeypatch):
    monkeypatch.setenv("GANTRIX_DISABLE_PLUGINS", "gantrix")
    registry.reset()
    with pytest.raises(GantrixError, match="built-in plugins were not found: every one is "
                                           "disabled by GANTRIX_DISABLE_PLUGINS"):
        registry.catalogue()


def test_a_plugin_that_fails_to_import_is_reported_and_the_others_work(extra, install):
    install("gx-broken", {"gx_broken": "raise ImportError('needs the frobnicator package')\n"},
            {"broken": "gx_broken"})
    broken = plugin("broken")
    assert broken.error == "ImportError: needs the frobnicator package"
    assert broken.hooks == [] and broken.distribution == "gx-broken"
    assert "t-extra-loss" in registry.catalogue().tricks and "wgan" in registry.catalogue().tricks


def test_an_entry_point_to_a_missing_module_is_reported(install):
    install("gx-ghost", {}, {"ghost": "gx_no_such_module"})
    assert plugin("ghost").error == "ModuleNotFoundError: No module named 'gx_no_such_module'"


def test_a_misspelt_hook_rejects_the_whole_plugin(extra, install):
    install("gx-typo", {"gx_typo": GOOD.replace("t-extra", "t-typo") + '''

@hookimpl
def gantrix_register_trick(register):
    """misspelt: no such hook"""
'''}, {"typo": "gx_typo"})
    typo = plugin("typo")
    assert typo.error.startswith("hook matches no spec") and "gantrix_register_trick" in typo.error
    cat = registry.catalogue()
    assert "t-typo-loss" not in cat.tricks and cat.pm.get_plugin("typo") is None
    assert "t-extra-loss" in cat.tricks


def test_a_duplicate_trick_name_is_recorded_and_the_first_one_kept(install):
    install("gx-dup", {"gx_dup": '''
from gantrix import Loss, hookimpl


class Clone(Loss):
    name = "wgan"


@hookimpl
def gantrix_register_tricks(register):
    register(Clone)
'''}, {"dup": "gx_dup"})
    assert plugin("dup").error == "ValueError: trick 'wgan' is already registered by gantrix"
    assert registry.catalogue().tricks["wgan"].plugin == "gantrix"
    assert registry.catalogue().tricks["wgan"].__module__ == "gantrix.plugins.losses"


@pytest.mark.parametrize("body, error", [
    ("register(object)", "TypeError: register() takes a Trick subclass"),
    ("register(type('NoName', (Loss,), {}))", "TypeError: NoName needs a name and a kind"),
])
def test_registering_something_that_is_not_a_trick_is_recorded(install, body, error):
    install("gx-odd", {"gx_odd": f'''
from gantrix import Loss, hookimpl


@hookimpl
def gantrix_register_tricks(register):
    {body}
'''}, {"odd": "gx_odd"})
    assert plugin("odd").error.startswith(error)
    assert "wgan" in registry.catalogue().tricks


def test_a_duplicate_recipe_name_is_recorded(install):
    install("gx-rdup", {"gx_rdup": '''
from gantrix import hookimpl


@hookimpl
def gantrix_register_recipes(register):
    register("wgan-gp", {"tricks": ["wgan"]})
'''}, {"rdup": "gx_rdup"})
    assert plugin("rdup").error == "ValueError: recipe 'wgan-gp' is already registered by gantrix"
    assert registry.catalogue().recipes["wgan-gp"].plugin == "gantrix"


def test_a_recipe_file_registered_by_path(install, tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('summary = "from a file"\ntricks = ["hinge"]\n')
    install("gx-file", {"gx_file": f'''
from gantrix import hookimpl


@hookimpl
def gantrix_register_recipes(register):
    register("t-file", {str(path)!r})
'''}, {"file": "gx_file"})
    entry = registry.catalogue().recipe("t-file")
    assert (entry.summary, entry.source, entry.plugin) == ("from a file", str(path), "gx-file")


def test_tricks_by_kind_sorted_and_unknown_kind_suggests():
    losses = gantrix.tricks("loss")
    assert list(losses) == sorted(losses) and all(c.kind == "loss" for c in losses.values())
    with pytest.raises(UnknownNameError, match="unknown kind 'regulariser'; did you mean 'regularizer'"):
        gantrix.tricks("regulariser")


def test_make_unknown_trick_suggests():
    with pytest.raises(UnknownNameError, match="unknown trick 'hnige'; did you mean 'hinge'"):
        gantrix.make("hnige")


def test_every_error_of_a_plugin_is_kept(install, tmp_path):
    install("gx-twice", {"gx_twice": f'''
from gantrix import Loss, hookimpl


class Clone(Loss):
    name = "wgan"


@hookimpl
def gantrix_register_tricks(register):
    register(Clone)


@hookimpl
def gantrix_register_recipes(register):
    register("t-lost", {str(tmp_path / "nowhere.toml")!r})
'''}, {"twice": "gx_twice"})
    assert plugin("twice").errors == [
        "ValueError: trick 'wgan' is already registered by gantrix",
        f"GantrixError: config file not found: {tmp_path / 'nowhere.toml'}"]


PARTIAL = '''
from gantrix import Loss, hookimpl


class Kept(Loss):
    name = "t-partial"


@hookimpl
def gantrix_register_tricks(register):
    register(Kept)
    raise RuntimeError("the second half of my tricks is broken")


@hookimpl
def gantrix_register_recipes(register):
    register("t-partial-recipe", {"tricks": ["t-partial"]})
'''


def test_a_failed_plugin_contributes_nothing(install):
    install("gx-partial", {"gx_partial": PARTIAL}, {"partial": "gx_partial"})
    cat = registry.catalogue()
    assert plugin("partial").errors == ["RuntimeError: the second half of my tricks is broken"]
    assert "t-partial" not in cat.tricks and "t-partial-recipe" not in cat.recipes
    assert plugin("partial").tricks == [] and cat.pm.get_plugin("partial") is None
    with pytest.raises(UnknownNameError, match="'partial' .*which failed to load"):
        gantrix.make("t-partial")


def test_what_a_plugin_contributed_is_recorded_and_can_be_withdrawn(extra):
    cat = registry.catalogue()
    assert (plugin("extra").tricks, plugin("extra").recipes) == (["t-extra-loss"], ["t-extra"])
    cat.withdraw("extra", "found broken later")
    assert plugin("extra").errors == ["found broken later"]
    assert "t-extra-loss" not in cat.tricks and "t-extra" not in cat.recipes
    assert cat.pm.get_plugin("extra") is None


@pytest.mark.parametrize("name, respelt", [("Bad_Name", "bad-name"), ("twoWords", "two-words"),
                                           ("double--hyphen", "double-hyphen"),
                                           ("gp:5", "gp-5"), ("-lead", "lead")])
def test_a_trick_name_must_be_kebab_case(install, name, respelt):
    install("gx-case", {"gx_case": f'''
from gantrix import Loss, hookimpl


class Odd(Loss):
    name = {name!r}


@hookimpl
def gantrix_register_tricks(register):
    register(Odd)
'''}, {"case": "gx_case"})
    assert plugin("case").errors == [
        f"ValueError: trick name {name!r} (Odd) is not kebab-case: lowercase letters and digits, "
        f"words joined by single hyphens, e.g. {respelt!r}"]
    assert name not in registry.catalogue().tricks


@pytest.mark.parametrize("var, value, message", [
    ("GANTRIX_LOAD_PLUGINS", "extar",
     "GANTRIX_LOAD_PLUGINS names 'extar', which is no installed plugin's entry point or "
     "distribution; did you mean 'extra', 'gx-extra'? (gantrix plugins lists them)"),
    ("GANTRIX_DISABLE_PLUGINS", "lossess,extra", "GANTRIX_DISABLE_PLUGINS names 'lossess'"),
])
def test_a_plugin_variable_naming_no_installed_plugin_warns(extra, monkeypatch, var, value, message):
    monkeypatch.setenv(var, value)
    registry.reset()
    with pytest.warns(gantrix.errors.GantrixWarning) as caught:
        cat = registry.catalogue()
    assert [str(w.message) for w in caught] == cat.warnings
    assert len(cat.warnings) == 1 and cat.warnings[0].startswith(message)


def test_valid_plugin_variables_do_not_warn(extra, monkeypatch, recwarn):
    monkeypatch.setenv("GANTRIX_LOAD_PLUGINS", "gx-extra")
    monkeypatch.setenv("GANTRIX_DISABLE_PLUGINS", "penalties,gantrix.plugins.noise")
    registry.reset()
    assert registry.catalogue().warnings == [] and len(recwarn) == 0


@pytest.mark.parametrize("var, value, why", [
    ("GANTRIX_DISABLE_PLUGINS", "extra", "disabled by GANTRIX_DISABLE_PLUGINS"),
    ("GANTRIX_LOAD_PLUGINS", "", "not named in GANTRIX_LOAD_PLUGINS"),
])
def test_a_trick_or_recipe_of_a_plugin_not_loaded_names_the_plugin(extra, monkeypatch, var, value, why):
    monkeypatch.setenv(var, value)
    registry.reset()
    missing = f"no loaded plugin provides it; not loaded: plugin 'extra' (gx-extra 2.5), {why}"
    assert registry.catalogue().skipped == [registry.Skipped("extra", "gx-extra", "2.5", why)]
    with pytest.raises(UnknownNameError) as exc:
        gantrix.Recipe("wgan", "t-extra-loss").compose()
    assert str(exc.value) == f"unknown trick 't-extra-loss': {missing}"
    with pytest.raises(UnknownNameError) as exc:
        gantrix.Recipe(recipe="t-extra")
    assert str(exc.value) == f"unknown recipe 't-extra': {missing}"


def test_a_trick_no_installed_plugin_provides(add_recipe, tmp_path):
    with pytest.raises(UnknownNameError) as exc:
        gantrix.make("zero-gp")
    assert str(exc.value) == ("unknown trick 'zero-gp': no installed plugin provides it (is its "
                              "plugin installed? gantrix list shows what is)")
    add_recipe("t-needs", {"tricks": ["wgan", "zero-gp"]})
    with pytest.raises(UnknownNameError, match=r"^recipe 't-needs': unknown trick 'zero-gp': no "):
        gantrix.Recipe(recipe="t-needs").check()
    config = tmp_path / "run.toml"
    config.write_text('recipe = "zero-gp-paper"\n')
    with pytest.raises(UnknownNameError, match=rf"^{config}: unknown recipe 'zero-gp-paper': no "):
        gantrix.Recipe(config=config)


def test_a_recipe_asked_for_as_a_trick_points_to_the_recipe():
    with pytest.raises(UnknownNameError) as exc:
        gantrix.Recipe("wgan-gp", "ema").check()
    assert str(exc.value) == ("unknown trick 'wgan-gp': 'wgan-gp' is a recipe; start from it with "
                              "--recipe wgan-gp (Recipe(recipe='wgan-gp') in Python)")
