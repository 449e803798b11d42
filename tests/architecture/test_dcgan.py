"""dcgan: the built models follow the paper's rules; the check flags models that do not."""
import math

import pytest
import torch
from torch import nn

import gantrix
from gantrix import GantrixError, ModelSpec

ROLES = ("generator", "discriminator")


def build(spec, **params):
    trick = gantrix.make("dcgan", **params)
    return trick, {role: trick.gantrix_build_model(role=role, spec=spec) for role in ROLES}


def kinds(model, cls):
    return [m for m in model.modules() if isinstance(m, cls)]


@pytest.mark.parametrize("size", [8, 16, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_builds_any_power_of_two_size_and_channel_count(size, channels):
    spec = ModelSpec((channels, size, size), latent_dim=16, width=8)
    _, m = build(spec)
    x = m["generator"](torch.randn(4, 16))
    assert x.shape == (4, channels, size, size)
    assert x.abs().max() <= 1
    assert m["discriminator"](x).shape == (4,)


@pytest.mark.parametrize("size", [8, 16, 32, 64])
def test_layout_follows_the_rules(size):
    trick, m = build(ModelSpec((3, size, size), latent_dim=16, width=8))
    g, d = m["generator"].net, m["discriminator"].net
    for model in (g, d):
        assert not kinds(model, nn.Linear)
        assert not kinds(model, (nn.MaxPool2d, nn.AvgPool2d))
    small = size <= 32
    # G: [ConvT or 3×3 Conv, BN, ReLU]..., ConvT (3×3 Conv for small images), Tanh
    assert isinstance(g[-1], nn.Tanh)
    assert type(g[-2]) is (nn.Conv2d if small else nn.ConvTranspose2d)
    weights = kinds(g, (nn.ConvTranspose2d, nn.Conv2d))
    assert len(kinds(g, nn.BatchNorm2d)) == len(weights) - 1 == len(kinds(g, nn.ReLU))
    ups = [c for c in kinds(g, nn.ConvTranspose2d) if c.stride == (2, 2)]
    assert 4 * 2 ** len(ups) == size
    assert len(weights) == (int(math.log2(size)) + 1 if small else int(math.log2(size)) - 1)
    # D: Conv, LeakyReLU (no BN at the input), [Conv, BN, LeakyReLU]..., Conv
    assert isinstance(d[0], nn.Conv2d) and isinstance(d[1], nn.LeakyReLU)
    assert isinstance(d[-1], nn.Conv2d) and d[-1].kernel_size == (4, 4)
    assert len(kinds(d, nn.BatchNorm2d)) == len(kinds(d, nn.Conv2d)) - 2
    assert all(a.negative_slope == 0.2 for a in kinds(d, nn.LeakyReLU))
    strides = [c.stride for c in kinds(d, nn.Conv2d)[:-1]]
    assert strides.count((2, 2)) == int(math.log2(size)) - 2
    assert strides.count((1, 1)) == (2 if small else 0)
    assert trick.gantrix_check_model(model=m["generator"], role="generator") == []
    assert trick.gantrix_check_model(model=m["discriminator"], role="discriminator") == []


def test_initialisation_is_normal_0_002_and_bn_scales_normal_1_002():
    _, m = build(ModelSpec((3, 64, 64), latent_dim=100, width=64))
    for model in m.values():
        w = torch.cat([c.weight.flatten() for c in kinds(model, (nn.Conv2d, nn.ConvTranspose2d))])
        assert abs(w.std().item() - 0.02) < 0.0005 and abs(w.mean().item()) < 0.0005
        bn = kinds(model, nn.BatchNorm2d)
        scale = torch.cat([b.weight.flatten() for b in bn])
        assert abs(scale.mean().item() - 1) < 0.005 and abs(scale.std().item() - 0.02) < 0.005
        assert all(b.bias.abs().max() == 0 for b in bn)
        assert all(c.bias is None or c.bias.abs().max() == 0 for c in kinds(model, nn.Conv2d))


def test_vector_data_builds_nothing():
    _, m = build(ModelSpec((2,)))
    assert m == {"generator": None, "discriminator": None}


@pytest.mark.parametrize("shape", [(1, 12, 12), (1, 8, 16), (1, 4, 4), (3, 512, 512)])
def test_unsupported_image_sizes_are_a_clear_error(shape):
    with pytest.raises(GantrixError, match="power of two from 8 to 256"):
        build(ModelSpec(shape))


def test_params_change_norm_output_width_and_tags():
    spec = ModelSpec((1, 16, 16), latent_dim=8, width=4)
    trick, m = build(spec)
    assert {"critic-batchnorm"} <= trick.features() and "sigmoid-output" not in trick.features()
    trick, m = build(spec, critic_norm="layer", output="sigmoid", width=6)
    assert "critic-batchnorm" not in trick.features() and "sigmoid-output" in trick.features()
    d = m["discriminator"]
    assert not kinds(d, nn.BatchNorm2d) and kinds(d, nn.GroupNorm)
    assert isinstance(d.net[-1], nn.Sigmoid)
    assert d.net[0].out_channels == 3  # the small-image layout reads the image at width / 2
    y = d(torch.randn(3, 1, 16, 16))
    assert ((y > 0) & (y < 1)).all()
    _, m = build(spec, critic_norm="none")
    assert not kinds(m["discriminator"], (nn.BatchNorm2d, nn.GroupNorm))
    assert trick.gantrix_check_model(model=d, role="discriminator") == []


class BadGenerator(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 32 * 4 * 4)
        self.net = nn.Sequential(
            nn.Linear(32 * 16, 32 * 16), nn.LeakyReLU(0.2),  # hidden FC, not ReLU
            nn.ConvTranspose2d(32, 1, 4, 2, 1), nn.BatchNorm2d(1), nn.Sigmoid())


class BadCritic(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, 1, 1), nn.LeakyReLU(0.2), nn.AvgPool2d(2),
            nn.Flatten(), nn.Linear(8 * 4, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))


def messages(role, model):
    findings = gantrix.make("dcgan").gantrix_check_model(model=model, role=role)
    assert all(f.severity == "warning" and "§3" in f.paper and f.tricks == ("dcgan",)
               for f in findings)
    return [f.message for f in findings]


def assert_each_found_once(found, expected):
    """Every expected text is in exactly one message, and there is no other message."""
    for text in expected:
        assert sum(text in m for m in found) == 1, (text, found)
    assert len(found) == len(expected)


def test_check_flags_every_broken_rule_of_a_users_generator():
    found = messages("generator", BadGenerator())
    expected = [
        "'net.0' (Linear): hidden fully-connected layer",
        "ends in 'net.4' (Sigmoid)",
        "'net.1' (LeakyReLU): hidden activation is not ReLU",
        "'net.3' (BatchNorm2d): BatchNorm on the output layer",
    ]
    assert_each_found_once(found, expected)
    assert all(m.startswith("generator ") for m in found)
    assert not any("'fc'" in m for m in found)  # G's first layer may project z


def test_check_flags_every_broken_rule_of_a_users_critic():
    found = messages("discriminator", BadCritic())
    expected = [
        "'net.3' (MaxPool2d): pooling layer",
        "'net.6' (AvgPool2d): pooling layer",
        "'net.8' (Linear): hidden fully-connected layer",
        "'net.2' (ReLU): activation is not LeakyReLU",
        "'net.1' (BatchNorm2d): BatchNorm on the input layer",
    ]
    assert_each_found_once(found, expected)
    assert not any("'net.10'" in m for m in found)  # D's last layer may be linear


def test_check_wants_batchnorm_in_the_generator():
    from gantrix.models import ConvGenerator

    (msg,) = messages("generator", ConvGenerator(ModelSpec((1, 16, 16), width=4)))
    assert msg.startswith("generator has no BatchNorm")


def test_check_notes_a_model_without_convolutions():
    (finding,) = gantrix.make("dcgan").gantrix_check_model(model=nn.Sequential(nn.Linear(2, 2)),
                                                           role="generator")
    assert finding.severity == "note" and "no convolutions" in finding.message


def test_the_critic_batchnorm_tag_meets_the_gradient_penalty_rule():
    errors = [f for f in gantrix.Recipe("wgan", "gradient-penalty", "dcgan").check()
              if f.severity == "error"]
    assert any({"dcgan", "gradient-penalty"} == set(f.tricks) for f in errors)
    layer_norm = gantrix.Recipe("wgan", "gradient-penalty", "dcgan:critic_norm=layer")
    assert not [f for f in layer_norm.check() if f.severity == "error"]


def test_critic_width_sizes_the_critic_alone():
    """PacGAN's "D = ¼ the size of G" widths: G 64/32/16 channels, D 2/4/8."""
    spec = ModelSpec((3, 32, 32), latent_dim=8, width=64)
    _, m = build(spec, width=16, critic_width=2, refine=False)
    g_convs = [l.out_channels for l in kinds(m["generator"], nn.ConvTranspose2d)]
    d_convs = [l.out_channels for l in kinds(m["discriminator"], nn.Conv2d)]
    assert g_convs == [64, 32, 16, 3] and d_convs == [2, 4, 8, 1]
    _, m = build(spec, width=16, refine=False)
    assert [l.out_channels for l in kinds(m["discriminator"], nn.Conv2d)] == [16, 32, 64, 1]
    # refined (the default): D reads at width / 2 and adds a 3×3 layer at 4×4
    _, m = build(spec, width=16, critic_width=2)
    assert [l.out_channels for l in kinds(m["discriminator"], nn.Conv2d)] == [1, 2, 4, 8, 16, 1]
    g = [l.out_channels for l in kinds(m["generator"], (nn.ConvTranspose2d, nn.Conv2d))]
    assert g == [128, 64, 32, 16, 8, 3]


def test_dcgan_tensorflow_layout_has_5x5_kernels_and_a_fourth_scale_at_2x2():
    """``kernel=5,smallest=2`` on 32×32: DCGAN-tensorflow's models (PacGAN's VEEGAN setting),
    G 512/256/128/64 channels at 2/4/8/16 px and D 64/128/256/512 at 16/8/4/2 px."""
    spec = ModelSpec((3, 32, 32), latent_dim=100, width=64)
    trick, m = build(spec, refine=False, kernel=5, smallest=2)
    g, d = m["generator"], m["discriminator"]
    sides, x = [], torch.rand(2, 100) * 2 - 1
    for layer in g.net:
        x = layer(x[:, :, None, None] if x.dim() == 2 else x)
        if isinstance(layer, nn.ConvTranspose2d):
            sides.append((layer.out_channels, x.shape[-1]))
    assert sides == [(512, 2), (256, 4), (128, 8), (64, 16), (3, 32)]
    assert [c.kernel_size for c in kinds(g, nn.ConvTranspose2d)] == [(2, 2)] + [(5, 5)] * 4
    sides = []
    for layer in d.net:
        x = layer(x)
        if isinstance(layer, nn.Conv2d):
            sides.append((layer.out_channels, x.shape[-1]))
    assert sides == [(64, 16), (128, 8), (256, 4), (512, 2), (1, 1)]
    assert [c.kernel_size for c in kinds(d, nn.Conv2d)] == [(5, 5)] * 4 + [(2, 2)]
    assert trick.gantrix_check_model(model=g, role="generator") == []
    assert trick.gantrix_check_model(model=d, role="discriminator") == []


@pytest.mark.parametrize("size", [8, 16, 64])
@pytest.mark.parametrize("kernel", [4, 5])
@pytest.mark.parametrize("smallest", [2, 4])
@pytest.mark.parametrize("refine", [False, True])
def test_kernel_and_smallest_build_every_size(size, kernel, smallest, refine):
    spec = ModelSpec((1, size, size), latent_dim=8, width=4)
    _, m = build(spec, kernel=kernel, smallest=smallest, refine=refine)
    x = m["generator"](torch.randn(3, 8))
    assert x.shape == (3, 1, size, size)
    assert m["discriminator"](x).shape == (3,)
    ups = [c for c in kinds(m["generator"], nn.ConvTranspose2d) if c.stride == (2, 2)]
    assert smallest * 2 ** len(ups) == size and all(c.kernel_size == (kernel,) * 2 for c in ups)


@pytest.mark.parametrize("param, value, allowed", [("kernel", 3, "one of 4, 5"),
                                                   ("smallest", 8, "one of 2, 4")])
def test_unsupported_kernel_or_smallest_side_is_a_clear_error(param, value, allowed):
    with pytest.raises(GantrixError, match=f"{param}.*{value}.*{allowed}"):
        gantrix.make("dcgan", **{param: value})
