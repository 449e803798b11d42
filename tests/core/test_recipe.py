"""`gantrix.Recipe`: trick strings, named recipes, TOML files, and their errors."""
import pytest

from gantrix import GantrixError, Loss, Param, ParamError, Policy, Recipe, UnknownNameError
from gantrix.recipe import TrickSpec


class Margin(Loss):
    name = "t-margin"
    params = (Param("margin", float, 1.0, low=0), Param("one_sided", bool, False))


class Clip(Policy):
    name = "t-clip"
    params = (Param("c", float, 0.01, low=0, low_open=True),)


@pytest.fixture(autouse=True)
def tricks(add_tricks, add_recipe):
    add_tricks(Margin, Clip)
    add_recipe("t-base", {"summary": "base", "tricks": ["t-margin", {"name": "t-clip", "c": 0.1}],
                          "train": {"steps": 100, "batch_size": 32}})
    add_recipe("t-child", {"recipe": "t-base", "tricks": ["t-clip:c=0.2"], "train": {"steps": 5}})


def names(recipe):
    return [(s.name, s.origin) for s in recipe.specs]


def test_trick_spec_parse_keeps_text_until_the_class_is_known():
    spec = TrickSpec.parse(" t-margin:margin=2,one-sided=yes ")
    assert (spec.name, spec.params, spec.origin) == ("t-margin", {"__text__": "margin=2,one-sided=yes"}, "user")
    assert spec.resolve(Margin) == {"margin": 2.0, "one_sided": True}
    assert str(spec) == "t-margin:margin=2,one-sided=yes"
    assert str(TrickSpec.parse("t-margin")) == "t-margin"


def test_trick_spec_from_a_table_takes_kebab_keys():
    spec = TrickSpec("t-margin", {"one-sided": True, "margin": 3})
    assert spec.resolve(Margin) == {"one_sided": True, "margin": 3}
    assert str(spec) == "t-margin:one-sided=True,margin=3"


def test_trick_spec_needs_a_name():
    with pytest.raises(GantrixError, match="empty trick name in ':margin=1'"):
        TrickSpec.parse(":margin=1")


def test_recipe_from_strings():
    recipe = Recipe("t-margin:2", "t-clip")
    assert names(recipe) == [("t-margin", "user"), ("t-clip", "user")]
    assert recipe.train == {} and recipe.names == []
    assert repr(recipe) == "Recipe('t-margin:margin=2.0', 't-clip')"


def test_named_recipe_marks_its_specs_and_train_settings():
    recipe = Recipe(recipe="t-base")
    assert names(recipe) == [("t-margin", "recipe:t-base"), ("t-clip", "recipe:t-base")]
    assert recipe.train == {"steps": 100, "batch_size": 32}
    assert recipe.names == ["t-base"]
    assert names(Recipe.named("t-base")) == names(recipe)


def test_recipe_building_on_a_recipe():
    recipe = Recipe(recipe="t-child")
    assert recipe.names == ["t-base", "t-child"]
    assert names(recipe)[-1] == ("t-clip", "recipe:t-child")
    assert recipe.train == {"steps": 5, "batch_size": 32}  # the child's settings win


def test_recipe_cycle_is_an_error(add_recipe):
    add_recipe("t-a", {"recipe": "t-b"})
    add_recipe("t-b", {"recipe": "t-a"})
    with pytest.raises(GantrixError, match="recipe 't-a' includes itself: t-a -> t-b -> t-a"):
        Recipe(recipe="t-a")


def test_unknown_recipe_suggests():
    with pytest.raises(UnknownNameError, match="unknown recipe 't-bsae'; did you mean 't-base'"):
        Recipe(recipe="t-bsae")


def test_a_lone_string_may_name_a_recipe_or_a_file(tmp_path):
    assert Recipe("t-base").names == ["t-base"]
    assert names(Recipe("t-margin")) == [("t-margin", "user")]  # no such recipe: the trick
    path = tmp_path / "mine.toml"
    path.write_text('tricks = ["t-clip"]\n')
    assert names(Recipe(str(path))) == [("t-clip", f"config:{path}")]


def test_a_lone_name_of_both_a_trick_and_a_recipe_is_the_recipe_with_a_note(add_recipe):
    add_recipe("t-margin", {"tricks": ["t-margin:margin=3", "t-clip"]})
    recipe = Recipe("t-margin")
    assert recipe.names == ["t-margin"]
    assert names(recipe) == [("t-margin", "recipe:t-margin"), ("t-clip", "recipe:t-margin")]
    note = "'t-margin' names both a recipe and a trick; alone, it is read as the recipe"
    assert [f.severity for f in recipe.check() if note in f.message] == ["note"]
    assert "Recipe().extend(['t-margin'])" in recipe.notes[0]
    assert names(Recipe().extend(["t-margin"])) == [("t-margin", "user")]  # the bare trick
    assert Recipe(recipe="t-margin").notes == []
    assert Recipe("t-margin:margin=2").notes == []  # parameters make it a trick: nothing to guess
    assert names(Recipe("t-margin:margin=2")) == [("t-margin", "user")]
    assert Recipe("t-base").notes == [] and Recipe("t-clip").notes == []


def test_the_trainer_reads_a_lone_name_by_the_same_rule(add_recipe):
    from gantrix.plan import as_recipe

    add_recipe("t-margin", {"tricks": ["t-margin:margin=3", "t-clip"]})
    assert as_recipe("t-margin").names == Recipe("t-margin").names == ["t-margin"]
    assert names(as_recipe("t-clip")) == names(Recipe("t-clip"))


def test_user_tricks_come_after_the_recipe_and_extend_adds_more():
    recipe = Recipe("t-clip:c=0.5", recipe="t-base")
    assert names(recipe)[-1] == ("t-clip", "user")
    assert recipe.extend(["t-margin:0"]) is recipe
    assert names(recipe)[-1] == ("t-margin", "user")


def test_toml_file_with_base_tricks_tables_and_train(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(
        'recipe = "t-base"\n'
        'summary = "mine"\n'
        'tricks = ["t-margin:margin=0.5", { name = "t-clip", c = 0.05 }]\n'
        "[train]\n"
        "steps = 7\n"
        'data = "ring8"\n'
    )
    recipe = Recipe.from_toml(path)
    assert names(recipe) == [("t-margin", "recipe:t-base"), ("t-clip", "recipe:t-base"),
                             ("t-margin", f"config:{path}"), ("t-clip", f"config:{path}")]
    assert recipe.specs[-1].params == {"c": 0.05}
    assert recipe.train == {"steps": 7, "batch_size": 32, "data": "ring8"}
    assert recipe.names == ["t-base"]


def test_config_then_recipe_then_tricks(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('tricks = ["t-clip"]\n')
    recipe = Recipe("t-margin", recipe="t-base", config=path)
    assert [s.origin for s in recipe.specs] == [f"config:{path}", "recipe:t-base", "recipe:t-base", "user"]


def test_bad_toml_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('tricks = ["t-clip"\n')
    with pytest.raises(GantrixError, match=f"{path} is not valid TOML"):
        Recipe(config=path)


def test_missing_file():
    with pytest.raises(GantrixError, match="config file not found: /no/such/file.toml"):
        Recipe(config="/no/such/file.toml")


def test_unknown_keys_are_named_with_the_allowed_ones(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text('trick = ["t-clip"]\nsteps = 3\n')
    with pytest.raises(GantrixError) as exc:
        Recipe(config=path)
    assert str(exc.value) == (f"{path}: unknown key(s) steps, trick; "
                              "allowed: recipe, summary, paper, tricks, train, points, images")


@pytest.mark.parametrize("body, message", [
    ('tricks = "t-clip"\n', "'tricks' must be a list of strings or tables"),
    ("tricks = [3]\n", "cannot read trick entry 3"),
    ("tricks = [{ c = 0.1 }]\n", "cannot read trick entry {'c': 0.1}"),
])
def test_bad_trick_entries_name_the_file(tmp_path, body, message):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(GantrixError, match=f"{path}: {message}".replace("[", r"\[").replace("{", r"\{")):
        Recipe(config=path)


def test_check_raises_at_once_on_unknown_names_and_bad_values(tmp_path):
    with pytest.raises(UnknownNameError, match="did you mean 't-clip'"):
        Recipe("t-margin", "t-clp").check()
    path = tmp_path / "neg.toml"
    path.write_text('tricks = ["t-margin", { name = "t-clip", c = -1.0 }]\n')
    with pytest.raises(ParamError, match="t-clip: parameter 'c' got -1.0; allowed: finite float in \\(0, inf\\)"):
        Recipe(config=path).check()


@pytest.fixture
def by_kind(add_recipe):
    add_recipe("t-kinds", {"tricks": ["t-margin", "t-clip:c=0.1"],
                           "train": {"steps": 100, "batch_size": 32},
                           "points": {"tricks": ["t-clip:c=0.3"], "train": {"batch_size": 8}},
                           "images": {"train": {"steps": 7}}})


def test_for_data_adds_the_kinds_tricks_after_the_recipes_and_before_the_users(by_kind):
    recipe = Recipe(recipe="t-kinds").extend(["t-margin:margin=2"])
    points = recipe.for_data("points")
    assert names(points) == [("t-margin", "recipe:t-kinds"), ("t-clip", "recipe:t-kinds"),
                             ("t-clip", "recipe:t-kinds"), ("t-margin", "user")]
    assert points.specs[2].params == {"__text__": "c=0.3"}
    assert points.train == {"steps": 100, "batch_size": 8}
    assert [t.spec() for t in points.compose().tricks] == ["t-margin:margin=2.0", "t-clip:c=0.3"]
    images = recipe.for_data("images")
    assert names(images) == names(recipe) and images.train == {"steps": 7, "batch_size": 32}
    assert len(recipe.specs) == 3 and recipe.train == {"steps": 100, "batch_size": 32}


def test_a_config_files_train_table_beats_the_named_recipes_kind_table(by_kind, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('recipe = "t-kinds"\ntricks = ["t-clip:c=0.5"]\n[train]\nbatch_size = 4\n'
                    '[points]\ntrain = { steps = 3 }\n')
    points = Recipe(config=path).for_data("points")
    assert points.train == {"steps": 3, "batch_size": 4}
    assert [s.params.get("__text__") for s in points.specs if s.name == "t-clip"] == \
        ["c=0.1", "c=0.3", "c=0.5"]


def test_a_kind_table_with_an_unknown_key_is_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('tricks = ["t-margin"]\n[points]\ntrick = ["t-clip"]\n')
    with pytest.raises(GantrixError, match=r"unknown key\(s\) in \[points\]: trick; allowed: tricks, train"):
        Recipe(config=path)
    path.write_text('tricks = ["t-margin"]\npoints = 3\n')
    with pytest.raises(GantrixError, match=r"\[points\] must be a table"):
        Recipe(config=path)


def test_a_data_sets_table_applies_to_that_set_only(add_recipe):
    add_recipe("t-sets", {"tricks": ["t-margin"], "train": {"steps": 100, "batch_size": 32},
                          "points": {"train": {"batch_size": 8},
                                     "grid25": {"tricks": ["t-clip:c=0.2"], "train": {"steps": 9}}}})
    recipe = Recipe(recipe="t-sets").extend(["t-margin:margin=2"])
    grid = recipe.for_data("points", "grid25")
    assert names(grid) == [("t-margin", "recipe:t-sets"), ("t-clip", "recipe:t-sets"),
                           ("t-margin", "user")]
    assert grid.train == {"steps": 9, "batch_size": 8}
    for other in (recipe.for_data("points", "ring8"), recipe.for_data("points")):
        assert [s.name for s in other.specs] == ["t-margin", "t-margin"]
        assert other.train == {"steps": 100, "batch_size": 8}
    assert recipe.for_data("images", "grid25").train == {"steps": 100, "batch_size": 32}


def test_a_table_for_an_unknown_data_set_is_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('tricks = ["t-margin"]\n[points.mnist]\ntrain = { steps = 3 }\n')
    with pytest.raises(GantrixError, match=r"unknown key\(s\) in \[points\]: mnist; allowed: tricks, "
                                           r"train, or a table for a built-in data set \(ring8, grid25, spiral\)"):
        Recipe(config=path)
    path.write_text('tricks = ["t-margin"]\n[images.mnist]\nstep = 3\n')
    with pytest.raises(GantrixError, match=r"unknown key\(s\) in \[images.mnist\]: step; "
                                           r"allowed: tricks, train$"):
        Recipe(config=path)


def test_for_data_rejects_an_unknown_kind(by_kind):
    with pytest.raises(GantrixError, match="unknown kind of data 'audio'; allowed: points, images"):
        Recipe(recipe="t-kinds").for_data("audio")
