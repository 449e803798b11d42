"""``gantrix list``, ``info``, ``recipes``, ``plugins`` through CliRunner on `create_app()`."""
import pytest

from gantrix import Clash, Loss, Param, Replaces, Requires
from gantrix.registry import tricks

LOSSES = ["hinge", "lsgan", "minimax", "nonsaturating", "wgan"]


def rows(output):
    """The table's data rows as lists of cells (cells are separated by 2+ spaces)."""
    import re

    return [re.split(r"\s{2,}", line.strip()) for line in output.splitlines()[1:] if line.strip()]


class Showcase(Loss):
    """Showcase loss.

    D = mean(f) - mean(r), written out so `info` has a long description.
    """

    name = "t-showcase"
    summary = "a loss with every kind of metadata"
    paper = "Doe & Roe 2020, Showcases"
    params = (
        Param("margin", float, 1.0, "the margin", low=0),
        Param("mode", str, "soft", "how", choices=("soft", "hard")),
        Param("scale", float, None, "optional scale", low=0, low_open=True, optional=True),
        Param("tight", bool, False, "be tight"),
    )
    requires = (Requires("t-needed", "it needs it", "Paper N"), "t-bare-tag")
    conflicts = (Clash("t-bad", "they fight", "Paper C"),
                 Clash("t-meh", "not ideal", severity="warning"))
    replaces = (Replaces("t-old", "newer", "Paper O"),)
    provides = ("t-provided", "t-other")


def test_version(gantrix):
    result = gantrix("--version")
    assert result.exit_code == 0 and result.stdout == "gantrix 0.1.0\n"


def test_no_arguments_shows_help(gantrix):
    result = gantrix()
    for command in ("list", "info", "recipes", "plugins", "check"):
        assert command in result.output


def test_list_shows_every_trick_with_kind_plugin_and_summary(gantrix):
    result = gantrix("list")
    assert result.exit_code == 0
    header = result.stdout.splitlines()[0]
    assert header.split() == ["NAME", "KIND", "PLUGIN", "SUMMARY"]
    table = {r[0]: r for r in rows(result.stdout)}
    assert set(table) == set(tricks())
    for name, cls in tricks().items():
        assert table[name] == [name, cls.kind, cls.plugin, cls.summary]


def test_list_is_aligned_and_grouped_by_kind(gantrix):
    lines = gantrix("list").stdout.splitlines()
    kind_column = lines[0].index("KIND")
    plugin_column = lines[0].index("PLUGIN")
    for line in lines[1:]:
        assert line[kind_column - 2:kind_column] == "  " and line[kind_column] != " "
        assert line[plugin_column] != " " and line[plugin_column - 1] == " "
    kinds = [r[1] for r in rows("\n".join(lines))]
    order = ["loss", "regularizer", "policy", "architecture"]
    assert kinds == sorted(kinds, key=order.index)


def test_list_one_kind(gantrix):
    result = gantrix("list", "--kind", "loss")
    assert result.exit_code == 0
    names = [r[0] for r in rows(result.stdout)]
    assert set(LOSSES) <= set(names) and all(r[1] == "loss" for r in rows(result.stdout))
    assert [r[0] for r in rows(gantrix("list", "-k", "regularizer").stdout)] == sorted(tricks("regularizer"))


def test_list_unknown_kind_suggests(gantrix, user_error):
    user_error(gantrix("list", "--kind", "los"), "unknown kind 'los'", "did you mean 'loss'?")


def test_info_shows_docstring_params_paper_and_relations(gantrix, add_tricks):
    add_tricks(Showcase)
    result = gantrix("info", "t-showcase")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("t-showcase  (loss, from tests)\na loss with every kind of metadata\n")
    assert "D = mean(f) - mean(r), written out" in out
    params = {r[0]: r for r in rows(out.split("parameters:\n")[1].split("\n\n")[0])}
    assert params["margin"] == ["margin", "float", "1.0", "finite float in [0, inf)", "the margin"]
    assert params["mode"] == ["mode", "str", "soft", "one of 'soft', 'hard'", "how"]
    assert params["scale"] == ["scale", "float", "none", "finite float in (0, inf) or none", "optional scale"]
    assert params["tight"] == ["tight", "bool", "false", "true or false", "be tight"]
    assert "paper: Doe & Roe 2020, Showcases" in out
    assert "requires:\n  t-needed: it needs it (Paper N)\n  t-bare-tag\n" in out
    assert "conflicts:\n  t-bad [error]: they fight (Paper C)\n  t-meh [warning]: not ideal\n" in out
    assert "replaces:\n  t-old: newer (Paper O)\n" in out
    assert "provides: t-provided, t-other" in out


def test_info_on_a_builtin_trick(gantrix):
    out = gantrix("info", "wgan").stdout
    assert "wgan  (loss, from gantrix)" in out
    assert "D = mean(f) − mean(r);  G = −mean(f)." in out
    assert "parameters: none" in out
    assert "paper: Arjovsky, Chintala & Bottou 2017, Wasserstein GAN" in out
    assert "sigmoid-output [error]" in out and "provides: wasserstein-loss" in out
    assert "in recipes: wgan, wgan-gp" in out
    assert "wgan is also a recipe: gantrix info --recipe wgan" in out


def test_info_parameter_ranges_of_a_builtin(gantrix):
    out = gantrix("info", "gradient-penalty").stdout
    assert "weight" in out and "finite float in [0, 10000]" in out
    assert "replaces:\n  weight-clip" in out


def test_info_unknown_name_suggests(gantrix, user_error):
    user_error(gantrix("info", "gradient-penalti"), "'gradient-penalti'",
                      "did you mean 'gradient-penalty'?")
    user_error(gantrix("info", "--recipe", "wgan-pg"), "unknown recipe 'wgan-pg'",
                      "did you mean 'wgan-gp'")


def test_info_recipe_shows_summary_paper_tricks_train_and_composition(gantrix):
    result = gantrix("info", "--recipe", "wgan-gp")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("wgan-gp  (recipe, from gantrix)\nWGAN-GP:")
    assert "paper: Gulrajani et al. 2017" in out
    tricks_block = out.split("tricks:\n")[1].split("\n\n")[0].split()
    assert tricks_block[:3] == ["wgan", "gradient-penalty:weight=10.0", "n-critic:n=5"]
    assert "train:\n  batch_size = 64" in out
    points = out.split("on points data ([points] of recipe 'wgan-gp'):\n")[1].split("\n\n")[0]
    assert points.splitlines() == ["  + gradient-penalty:weight=0.1",
                                   "  + adam:lr=0.001,beta1=0.5,beta2=0.9", "  + lr-decay",
                                   "  steps = 4000"]
    composed = out.split("composed:\n")[1]
    assert "  tricks: wgan gradient-penalty n-critic adam:" in composed
    assert "  ok: 0 errors" in composed


def test_info_on_a_recipe_name_without_the_flag(gantrix):
    assert gantrix("info", "wgan-gp").stdout.startswith("wgan-gp  (recipe, from gantrix)")


@pytest.mark.parametrize("name", ["wgan", "wgan-gp", "dcgan", "rsgan", "rasgan", "ralsgan",
                                  "rahinge", "cgan", "infogan", "selu-gan", "wgan-gp-resnet"])
def test_every_builtin_recipe_composes(gantrix, name):
    result = gantrix("info", "--recipe", name)
    assert result.exit_code == 0, result.output
    assert "  ok: 0 errors" in result.stdout


def test_recipes_lists_name_plugin_and_summary(gantrix):
    from gantrix.registry import catalogue

    result = gantrix("recipes")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].split() == ["NAME", "PLUGIN", "SUMMARY"]
    table = {r[0]: r for r in rows(result.stdout)}
    assert set(table) == set(catalogue().recipes)
    assert table["wgan-gp"] == ["wgan-gp", "gantrix", catalogue().recipes["wgan-gp"].summary]


def test_plugins_lists_loaded_ones_with_hooks(gantrix):
    result = gantrix("plugins")
    assert result.exit_code == 0
    table = {r[0]: r for r in rows(result.stdout.split("\n\n")[0])}
    assert table["losses"] == ["losses", "gantrix", "0.1.0", "register_tricks"]
    assert table["recipes"][3] == "register_recipes"


def test_plugins_reports_failures_while_the_rest_work(gantrix, install):
    install("gx-broken", {"gx_broken_cli": "raise RuntimeError('boom at import')\n"},
            {"broken": "gx_broken_cli"})
    install("gx-typo", {"gx_typo_cli": '''
        from gantrix import hookimpl

        @hookimpl
        def gantrix_register_trick(register):
            """misspelt"""
    '''}, {"typo": "gx_typo_cli"})
    result = gantrix("plugins")
    assert result.exit_code == 0
    assert "failed to load and contribute nothing (the others work):" in result.stdout
    assert "  broken (gx-broken 1.0, gx_broken_cli): RuntimeError: boom at import" in result.stdout
    assert "  typo (gx-typo 1.0, gx_typo_cli): hook matches no spec" in result.stdout
    assert gantrix("list", "--kind", "loss").exit_code == 0


def test_plugins_shows_every_error_of_a_plugin(gantrix, install, tmp_path):
    install("gx-twice", {"gx_twice_cli": f'''
        from gantrix import Loss, hookimpl

        class Clone(Loss):
            name = "wgan"

        @hookimpl
        def gantrix_register_tricks(register):
            register(Clone)

        @hookimpl
        def gantrix_register_recipes(register):
            register("t-lost", {str(tmp_path / "nowhere.toml")!r})
    '''}, {"twice": "gx_twice_cli"})
    out = gantrix("plugins").stdout
    prefix = "  twice (gx-twice 1.0, gx_twice_cli): "
    assert f"{prefix}ValueError: trick 'wgan' is already registered by gantrix\n" in out
    assert f"{prefix}GantrixError: config file not found: {tmp_path / 'nowhere.toml'}\n" in out


def test_plugins_shows_those_the_environment_kept_out(gantrix, monkeypatch):
    monkeypatch.setenv("GANTRIX_DISABLE_PLUGINS", "penalties")
    result = gantrix("plugins")
    assert result.stdout.endswith("\n1 plugin(s) not loaded:\n"
                                  "  penalties (gantrix 0.1.0): disabled by GANTRIX_DISABLE_PLUGINS\n")


def test_a_failed_plugin_shows_nothing_in_list_or_recipes(gantrix, install):
    install("gx-half", {"gx_half_cli": '''
        from gantrix import Loss, hookimpl

        class Half(Loss):
            name = "t-half"

        @hookimpl
        def gantrix_register_tricks(register):
            register(Half)
            raise RuntimeError("then it broke")

        @hookimpl
        def gantrix_register_recipes(register):
            register("t-half-recipe", {"tricks": ["t-half"]})
    '''}, {"half": "gx_half_cli"})
    assert "t-half" not in gantrix("list").stdout
    assert "t-half-recipe" not in gantrix("recipes").stdout
    assert "half (gx-half 1.0, gx_half_cli): RuntimeError: then it broke" in gantrix("plugins").stdout


def test_a_trick_name_not_in_kebab_case_is_a_load_error_not_a_listed_trick(gantrix, install):
    install("gx-snake", {"gx_snake_cli": '''
        from gantrix import Loss, hookimpl

        class Snake(Loss):
            name = "Bad_Name"

        @hookimpl
        def gantrix_register_tricks(register):
            register(Snake)
    '''}, {"snake": "gx_snake_cli"})
    assert "Bad_Name" not in gantrix("list").stdout
    assert ("snake (gx-snake 1.0, gx_snake_cli): ValueError: trick name 'Bad_Name' (Snake) is "
            "not kebab-case") in gantrix("plugins").stdout


def test_info_recipe_shows_a_data_sets_table(gantrix):
    out = gantrix("info", "--recipe", "dcgan").stdout
    mnist = out.split("on mnist ([images.mnist] of recipe 'dcgan'):\n")[1].split("\n\n")[0]
    assert mnist.splitlines() == ["  batch_size = 64", "  steps = 8000"]
    assert "on images data" not in out  # dcgan's [images] holds only the data set's table
