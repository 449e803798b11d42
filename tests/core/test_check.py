"""`gantrix.check.check`: a composition checked by its metadata, and with data, on the models
it would train (built and checked, never trained)."""
from pathlib import Path

import torch

from gantrix import Recipe
from gantrix.check import check


def test_without_data_only_the_metadata_is_checked():
    report = check(Recipe("cgan", "hinge"))
    assert report.ok and report.models is None
    assert [t.name for t in report.tricks] == ["cgan", "hinge"]


def test_with_data_the_models_are_built_and_checked_without_touching_the_global_rng():
    state = torch.get_rng_state()
    report = check(Recipe("cgan", "hinge"), "ring8")
    assert torch.equal(torch.get_rng_state(), state)
    assert not report.ok
    assert [f.severity for f in report.findings] == ["error", "note"]
    assert report.findings[0].tricks == ("cgan",)
    assert report.models == "built for ring8 (2,) and checked: errors found (above)"


def test_with_data_the_recipe_applies_to_its_kind_of_data():
    points = check(Recipe(recipe="wgan-gp"), "ring8")
    assert points.ok and "lr-decay" in [t.name for t in points.tricks]
    assert points.models.endswith("generator VectorGenerator, critic VectorCritic")


def test_a_config_that_names_its_data_is_checked_on_it(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('tricks = ["dcgan", "nonsaturating", {name = "pac", m = 2}]\n'
                      '[train]\ndata = "stacked-mnist"\n')
    report = check(Recipe(config=config))
    assert report.ok and report.models.startswith("built for stacked-mnist (3, 32, 32)")


def test_every_stacked_mnist_benchmark_config_checks_clean():
    """The PacGAN settings in bench/stacked-mnist/ build their models and break no rule, so
    a user who runs bench/stacked_mnist.py never meets an error an hour in."""
    configs = sorted((Path(__file__).parents[2] / "bench" / "stacked-mnist").glob("*.toml"))
    assert len(configs) >= 10
    for config in configs:
        report = check(Recipe(config=config))
        assert report.ok and not report.findings, (config.name, report.findings)
        assert report.models.startswith("built for stacked-mnist (3, 32, 32)"), config.name

