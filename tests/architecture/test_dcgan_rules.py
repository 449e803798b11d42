"""dcgan's rule switches: each builds the model that breaks one rule of the paper's §3, and
dcgan's check then warns about that rule and no other."""
import pytest
import torch
from torch import nn

import gantrix
from gantrix import ModelSpec

ROLES = ("generator", "discriminator")

#: what each rule's warning says (plugins/dcgan.py's check), per role
RULES = {
    "strided": {"generator": "fixed upsampling layer", "discriminator": "pooling layer"},
    "batchnorm": {"generator": "has no BatchNorm", "discriminator": "has no normalisation"},
    "no-fc": {"generator": "hidden fully-connected layer",
              "discriminator": "hidden fully-connected layer"},
    "relu-tanh": {"generator": "ReLU", "discriminator": None},
    "tanh": {"generator": "ends in Tanh", "discriminator": None},
    "leaky": {"generator": None, "discriminator": "activation is not LeakyReLU"},
}

#: switch, value, the rule it breaks, the roles it changes
SWITCHES = [
    ("resample", "pool", "strided", ROLES),
    ("generator_norm", "none", "batchnorm", ("generator",)),
    ("critic_norm", "none", "batchnorm", ("discriminator",)),
    ("hidden_fc", True, "no-fc", ROLES),
    ("generator_act", "leaky", "relu-tanh", ("generator",)),
    ("generator_output", "none", "tanh", ("generator",)),
    ("critic_act", "relu", "leaky", ("discriminator",)),
]

IMG8 = ModelSpec((1, 8, 8), latent_dim=8, width=8)      # the digits' size
IMG32 = ModelSpec((3, 32, 32), latent_dim=16, width=4)  # MNIST's size
IMG64 = ModelSpec((3, 64, 64), latent_dim=16, width=4)  # the paper's
PAPER, TENSORFLOW = {"refine": False}, {"kernel": 5, "smallest": 2}
#: (data, layout): the refined default up to 32×32, the paper's, DCGAN-tensorflow's
LAYOUTS = [(IMG8, {}), (IMG8, PAPER), (IMG32, {}), (IMG32, PAPER), (IMG32, TENSORFLOW),
           (IMG64, {}), (IMG64, TENSORFLOW)]


def build(spec, **params):
    trick = gantrix.make("dcgan", **params)
    return trick, {role: trick.gantrix_build_model(role=role, spec=spec) for role in ROLES}


def warnings(trick, models):
    found = {}
    for role in ROLES:
        findings = trick.gantrix_check_model(model=models[role], role=role)
        assert all(f.severity == "warning" and f.tricks == ("dcgan",) for f in findings)
        found[role] = [f.message for f in findings]
    return found


def kinds(model, cls):
    return [m for m in model.modules() if isinstance(m, cls)]


@pytest.mark.parametrize("spec, layout", LAYOUTS,
                         ids=[f"{s.shape[1]}px-{l or 'default'}" for s, l in LAYOUTS])
@pytest.mark.parametrize("switch, value, rule, roles", SWITCHES, ids=[s[0] for s in SWITCHES])
def test_each_switch_breaks_its_rule_and_the_check_says_exactly_that(switch, value, rule, roles,
                                                                    spec, layout):
    if switch == "critic_norm" and spec is IMG8 and layout is PAPER:
        roles = ()  # the paper's D for 8×8 images has no hidden layer to normalise
    trick, models = build(spec, **layout, **{switch: value})
    found = warnings(trick, models)
    for role in ROLES:
        if role in roles:
            assert found[role], f"{role}: no warning for {switch}={value}"
            assert all(RULES[rule][role] in message for message in found[role]), found[role]
        else:
            assert found[role] == []
    # the variant still builds working models of the data's shape
    z = torch.randn(4, spec.latent_dim)
    x = models["generator"](z)
    assert x.shape == (4, *spec.shape)
    assert models["discriminator"](x).shape == (4,)
    default_trick, default = build(spec, **layout)
    assert warnings(default_trick, default) == {"generator": [], "discriminator": []}
    for role in set(ROLES) - set(roles):  # the other model is built exactly as by default
        assert repr(models[role]) == repr(default[role])


def test_pool_replaces_each_strided_layer_by_a_stride_1_conv_and_a_fixed_resampling():
    spec = ModelSpec((1, 32, 32), latent_dim=8, width=4)
    _, strided = build(spec, refine=False)
    _, pooled = build(spec, refine=False, resample="pool")
    g, d = pooled["generator"], pooled["discriminator"]
    # G: the projection of z stays, each of the 3 doublings is Upsample(2) then a 4×4 conv
    ups = kinds(strided["generator"], nn.ConvTranspose2d)[1:]
    assert len(kinds(g, nn.Upsample)) == len(ups) == 3
    assert [type(m) for m in kinds(g, (nn.ConvTranspose2d, nn.Conv2d))] == [
        nn.ConvTranspose2d, nn.Conv2d, nn.Conv2d, nn.Conv2d]
    # D: each of the 3 halvings is a 4×4 stride-1 conv then 2×2 average pooling
    assert len(kinds(d, nn.AvgPool2d)) == 3
    convs = kinds(d, nn.Conv2d)
    assert [c.stride for c in convs] == [(1, 1)] * 4
    assert [c.kernel_size for c in convs] == [c.kernel_size for c in kinds(strided["discriminator"],
                                                                           nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (c.in_channels, c.out_channels) for c in kinds(strided["discriminator"], nn.Conv2d)]


def test_hidden_fc_adds_one_hidden_fully_connected_layer_to_each_model():
    spec = ModelSpec((1, 8, 8), latent_dim=8, width=4)
    _, m = build(spec, hidden_fc=True)
    _, default = build(spec)
    g, d = m["generator"].net, m["discriminator"].net
    # G: z (8) -> 8 units -> 8 maps of 4×4 (the default's projection: 8 channels at 4×4),
    # then the refined convs as by default
    assert [(l.in_features, l.out_features) for l in kinds(g, nn.Linear)] == [(8, 8), (8, 128)]
    assert isinstance(g[0], nn.Linear) and isinstance(g[1], nn.BatchNorm1d)
    # the transposed convolution of z (1×1 -> 4×4) is what the two Linears replace
    transposed = len(kinds(default["generator"], nn.ConvTranspose2d))
    assert len(kinds(g, nn.ConvTranspose2d)) == transposed - 1
    # D: the 4×4 map of 8 channels (2 at 8×8, 4 at 4×4, 8 after the 3×3 layer) -> 8 units
    assert [(l.in_features, l.out_features) for l in kinds(d, nn.Linear)] == [(128, 8), (8, 1)]
    assert isinstance(d[-1], nn.Linear)


def test_generator_output_none_is_a_linear_output():
    spec = ModelSpec((1, 8, 8), latent_dim=8, width=4)
    _, m = build(spec, generator_output="none")
    assert isinstance(m["generator"].net[-1], nn.Conv2d) and not kinds(m["generator"], nn.Tanh)
    with torch.no_grad():
        m["generator"].net[-1].bias.fill_(3.0)  # unbounded: nothing squashes it into [-1, 1]
        assert m["generator"](torch.randn(2, 8)).min() > 1


def test_the_activation_switches_use_dcgan_s_leaky_slope():
    spec = ModelSpec((1, 8, 8), latent_dim=8, width=4)
    _, m = build(spec, generator_act="leaky", critic_act="relu")
    assert not kinds(m["generator"], nn.ReLU) and not kinds(m["discriminator"], nn.LeakyReLU)
    assert {a.negative_slope for a in kinds(m["generator"], nn.LeakyReLU)} == {0.2}


def test_the_critic_s_normalisation_warning_counts_layer_norm_and_spectral_norm():
    spec = ModelSpec((1, 8, 8), latent_dim=8, width=4)
    trick, m = build(spec, critic_norm="layer")
    assert trick.gantrix_check_model(model=m["discriminator"], role="discriminator") == []
    trick, m = build(spec, critic_norm="none")
    d = m["discriminator"]
    assert trick.gantrix_check_model(model=d, role="discriminator")
    nn.utils.parametrizations.spectral_norm(d.net[0])
    assert trick.gantrix_check_model(model=d, role="discriminator") == []


@pytest.mark.parametrize("switch, value", [("resample", "max"), ("generator_norm", "layer"),
                                           ("critic_act", "elu"), ("generator_output", "sigmoid")])
def test_unknown_switch_values_are_a_clear_error(switch, value):
    with pytest.raises(gantrix.ParamError, match=switch):
        gantrix.make("dcgan", **{switch: value})


@pytest.mark.parametrize("switch, value, rule, roles", SWITCHES, ids=[s[0] for s in SWITCHES])
def test_each_variant_composes_and_trains_through_the_core(run, switch, value, rule, roles):
    spec = ModelSpec((1, 8, 8), num_classes=10, latent_dim=8, width=4)
    trick = f"dcgan:{switch}={str(value).lower()}"
    composition, models, out = run(("nonsaturating", trick, "cgan"), spec, steps=2)
    assert out and all(torch.isfinite(v) for v in out.values())
    found = [f for f in composition.findings if f.tricks == ("dcgan",)]
    assert found and all(any(RULES[rule][r] in f.message for r in roles if RULES[rule][r])
                         for f in found)
    with torch.no_grad():
        x = models.generator(torch.randn(3, 8), labels=torch.arange(3))
    assert x.shape == (3, 1, 8, 8)
