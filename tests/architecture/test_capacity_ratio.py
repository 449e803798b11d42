"""smaller-generator:critic_scale: one parameter sweeps D's width against G's, on the core's
MLPs (2-D points) and on dcgan's and the core's convnets (images)."""
import pytest
import torch
from torch import nn

import gantrix
from gantrix import ModelSpec

POINTS = ModelSpec((2,), latent_dim=2)
DIGITS = ModelSpec((1, 8, 8), latent_dim=8, width=8)
IMG32 = ModelSpec((3, 32, 32), latent_dim=8, width=4)


def build(spec, *tricks):
    composition = gantrix.Recipe("nonsaturating", *tricks).compose()
    return composition, gantrix.build_models(composition, spec)


def widths(model):
    return [(m.in_features, m.out_features) if isinstance(m, nn.Linear)
            else (m.in_channels, m.out_channels)
            for m in model.net if isinstance(m, (nn.Linear, nn.Conv2d))]


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("scale, hidden", [(0.25, 64), (0.5, 128), (2, 512), (4, 1024)])
def test_scales_the_core_s_mlp_critic_and_keeps_the_generator(scale, hidden):
    _, base = build(POINTS)
    torch.manual_seed(0)
    _, scaled = build(POINTS, f"smaller-generator:critic_scale={scale}")
    assert widths(scaled.discriminator) == [(2, hidden), (hidden, hidden), (hidden, hidden),
                                            (hidden, 1)]
    assert same_weights(scaled.generator, base.generator)  # G drawn first, as without it
    assert scaled.discriminator(torch.randn(5, 2)).shape == (5,)


@pytest.mark.parametrize("spec, tricks", [(POINTS, ()), (DIGITS, ("dcgan",)),
                                          (DIGITS, ("dcgan:hidden_fc=true",))])
def test_scale_one_builds_exactly_the_models_without_it(spec, tricks):
    _, base = build(spec, *tricks)
    torch.manual_seed(0)
    _, same = build(spec, *tricks, "smaller-generator:critic_scale=1")
    assert same_weights(same.generator, base.generator)
    assert same_weights(same.discriminator, base.discriminator)


@pytest.mark.parametrize("switch", ["", ":refine=false", ":resample=pool", ":hidden_fc=true",
                                    ":critic_norm=layer", ":kernel=5,smallest=2"])
def test_scales_every_hidden_layer_of_dcgan_s_critic(switch):
    _, base = build(IMG32, f"dcgan{switch}")
    composition, scaled = build(IMG32, f"dcgan{switch}", "smaller-generator:critic_scale=2")
    old, new = widths(base.discriminator), widths(scaled.discriminator)
    assert new[0] == (3, 2 * old[0][1]) and new[-1] == (2 * old[-1][0], 1)
    assert all(n == (2 * i, 2 * o) for (i, o), n in zip(old[1:-1], new[1:-1]))
    norms = [m for m in scaled.discriminator.net if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d,
                                                                   nn.GroupNorm))]
    assert [n.num_features if hasattr(n, "num_features") else n.num_channels for n in norms] == [
        o for _, o in new[1:-1]]
    # dcgan's rules still hold, and its initialisation: the input layer keeps N(0, 0.02)
    if switch not in (":resample=pool", ":hidden_fc=true"):  # rules the variant keeps hold
        assert not [f for f in composition.findings if f.tricks == ("dcgan",)]
    first = scaled.discriminator.net[0].weight
    assert abs(first.std().item() - 0.02) < 0.004 and abs(first.mean().item()) < 0.004
    x = scaled.generator(torch.randn(4, 8))
    assert scaled.discriminator(x).shape == (4,)


def test_scales_the_core_s_conv_critic_too():
    _, base = build(DIGITS)
    _, scaled = build(DIGITS, "smaller-generator:critic_scale=0.5")
    assert widths(base.discriminator) == [(1, 8), (8, 1)]
    assert widths(scaled.discriminator) == [(1, 4), (4, 1)]


def test_rebuilt_layers_keep_the_activations_scale():
    # the core's MLP critic (PyTorch's fan-in initialisation): a 4x wider D starts with
    # pre-activations of the same scale at every hidden layer, not 2x, 4x larger (the one
    # output unit's scale varies too much from draw to draw to compare)
    x = torch.randn(4096, 2)

    def scales(model):
        out, h = [], x
        for m in model.net:
            h = m(h)
            if isinstance(m, nn.Linear):
                out.append(h.std().item())
        return out

    _, base = build(POINTS)
    _, wide = build(POINTS, "smaller-generator:critic_scale=4")
    for b, w in zip(scales(base.discriminator)[:-1], scales(wide.discriminator)[:-1]):
        assert 0.75 < w / b < 1.33


def test_a_narrow_critic_gets_the_tutorial_s_warning_with_both_counts():
    composition, models = build(POINTS, "smaller-generator:critic_scale=0.25")
    d = sum(p.numel() for p in models.discriminator.parameters())
    (finding,) = [f for f in composition.findings if f.tricks == ("smaller-generator",)]
    assert finding.severity == "warning" and f"{d:,}" in finding.message
    composition, _ = build(POINTS, "smaller-generator:critic_scale=4")
    assert not [f for f in composition.findings if f.tricks == ("smaller-generator",)]


def test_a_critic_it_cannot_rescale_is_an_error_finding_that_says_what_to_do():
    with pytest.raises(gantrix.CompositionError) as exc:
        build(DIGITS, "dcgan", "minibatch-stddev", "smaller-generator:critic_scale=2")
    (finding,) = [f for f in exc.value.findings if f.severity == "error"]
    assert finding.tricks == ("smaller-generator",)
    assert "MinibatchStdDev" in finding.message
    assert "list smaller-generator before" in finding.message
    # listed first, it rescales D before the statistic is inserted
    _, models = build(DIGITS, "dcgan", "smaller-generator:critic_scale=2", "minibatch-stddev")
    assert models.discriminator(torch.rand(4, 1, 8, 8)).shape == (4,)


@pytest.mark.parametrize("scale", [0, -1])
def test_critic_scale_must_be_positive(scale):
    with pytest.raises(gantrix.ParamError, match="critic_scale"):
        gantrix.make("smaller-generator", critic_scale=scale)


@pytest.mark.parametrize("spec, tricks", [
    (POINTS, ("wgan", "gradient-penalty", "smaller-generator:critic_scale=0.5")),
    (ModelSpec((1, 8, 8), num_classes=10, latent_dim=8, width=8),
     ("nonsaturating", "dcgan", "smaller-generator:critic_scale=2", "cgan", "spectral-norm")),
])
def test_trains_through_the_core(run, spec, tricks):
    _, models, out = run(tricks, spec, steps=2)
    assert out and all(torch.isfinite(v) for v in out.values())
