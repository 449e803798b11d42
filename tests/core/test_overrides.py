"""A later spec of a trick overriding an earlier one's parameter (`gantrix.compose.merge_specs`)
is said in a note, and the reprs show what holds: a `Recipe` its tricks once each with the
values that win, a `Composition` its composed tricks (never ``<... object at 0x...>``)."""
from __future__ import annotations

from gantrix import Recipe

ADAM = "adam:lr=0.0001,beta1=0.0,beta2=0.9"


def notes(recipe):
    return [str(f) for f in recipe.check() if f.severity == "note"]


def test_an_extension_replacing_the_recipe_s_value_is_noted_and_shown_once():
    recipe = Recipe(recipe="wgan-gp").extend(["gradient-penalty:weight=5"])
    assert notes(recipe) == [
        "note: [gradient-penalty] your weight=5.0 replaces the recipe's weight=10.0"]
    assert repr(recipe) == (f"Recipe('wgan', 'gradient-penalty:weight=5.0', 'n-critic:n=5', "
                            f"'{ADAM}')")
    composition = recipe.compose()
    assert composition.get("gradient-penalty").weight == 5.0
    assert repr(composition) == (f"Composition('wgan', 'gradient-penalty:weight=5.0', "
                                 f"'n-critic', '{ADAM}'; 1 note)")


def test_the_same_value_again_is_no_override():
    assert notes(Recipe(recipe="wgan-gp").extend(["gradient-penalty:weight=10"])) == []


def test_a_default_left_by_the_first_spec_and_the_user_s_own_earlier_value():
    recipe = Recipe("wgan", "gradient-penalty", "gradient-penalty:weight=2",
                    "gradient-penalty:weight=1", "adam")
    assert notes(recipe) == [
        "note: [gradient-penalty] your weight=2.0 replaces the default weight=10.0",
        "note: [gradient-penalty] your weight=1.0 replaces your weight=2.0"]
    assert repr(recipe) == "Recipe('wgan', 'gradient-penalty:weight=1.0', 'adam')"


def test_a_config_file_over_its_recipe(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('recipe = "wgan-gp"\ntricks = ["n-critic:2"]\n')
    assert notes(Recipe(config=path)) == ["note: [n-critic] the config file's n=2 replaces "
                                          "the recipe's n=5"]


def test_a_recipe_s_own_table_for_the_data_is_its_design_not_an_override():
    points = Recipe(recipe="wgan-gp").for_data("points")
    assert points.compose().get("gradient-penalty").weight != 10.0  # the table changes it
    assert notes(points) == []


def test_an_unknown_name_is_shown_as_given():
    assert repr(Recipe("wgan", "no-such-trick:3")) == "Recipe('wgan', 'no-such-trick:3')"


def test_a_composition_with_warnings_says_how_many():
    composition = Recipe("wgan", "n-critic:5", "adam:beta1=0").compose()
    assert repr(composition) == "Composition('wgan', 'n-critic', 'adam:beta1=0.0'; 1 warning)"
