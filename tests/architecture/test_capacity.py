"""smaller-generator: a warning with both counts when G outgrows ratio x D."""
import pytest
from torch import nn

import gantrix
from gantrix import ModelSpec


def check(trick, g, d):
    assert trick.gantrix_check_model(model=g, role="generator") is None
    return trick.gantrix_check_model(model=d, role="discriminator")


def test_warns_when_the_generator_is_bigger():
    g, d = nn.Linear(100, 100), nn.Linear(10, 10)          # 10,100 vs 110 parameters
    (finding,) = check(gantrix.make("smaller-generator"), g, d)
    assert finding.severity == "warning" and finding.tricks == ("smaller-generator",)
    assert "10,100" in finding.message and "110" in finding.message and "91.82x" in finding.message
    assert check(gantrix.make("smaller-generator"), d, g) is None
    assert check(gantrix.make("smaller-generator", ratio=100), g, d) is None


def test_counts_only_trainable_parameters():
    g, d = nn.Linear(10, 10), nn.Linear(5, 5)
    g.weight.requires_grad_(False)                          # 10 trainable vs 30
    assert check(gantrix.make("smaller-generator"), g, d) is None


@pytest.mark.parametrize("ratio", [0, -1])
def test_ratio_must_be_positive(ratio):
    with pytest.raises(gantrix.ParamError, match="ratio"):
        gantrix.make("smaller-generator", ratio=ratio)


def test_through_the_core_on_the_default_models():
    # the core's default MLP generator (64 -> 256 x3 -> 2) outweighs its critic (2 -> 256 x3 -> 1)
    comp = gantrix.Recipe("nonsaturating", "smaller-generator").compose()
    models = gantrix.build_models(comp, ModelSpec((2,)))
    g = sum(p.numel() for p in models.generator.parameters())
    d = sum(p.numel() for p in models.discriminator.parameters())
    assert g > d
    (finding,) = [f for f in comp.findings if f.tricks == ("smaller-generator",)]
    assert f"{g:,}" in finding.message and f"{d:,}" in finding.message
