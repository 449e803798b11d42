"""resnet: the WGAN-GP / SNGAN CIFAR ResNets, checked against the authors' code (parameter
counts, block order), composed with spectral norm, the gradient penalty's BatchNorm rule,
the class-conditional critics, and trained from the CLI on the 8×8 digits."""
import math
import re

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import gantrix
from gantrix import GantrixError, ModelSpec
from gantrix.cli.app import create_app
from gantrix.plugin import find_layers
from gantrix.plugins.resnet import CriticBlock, GeneratorBlock, GlobalPool, OptimizedBlock
from gantrix.plugins.spectral_norm import is_spectral_normed

ROLES = ("generator", "discriminator")
CIFAR = ModelSpec((3, 32, 32), latent_dim=128)


def build(spec, **params):
    trick = gantrix.make("resnet", **params)
    return trick, {role: trick.gantrix_build_model(role=role, spec=spec) for role in ROLES}


def count(model):
    return sum(p.numel() for p in model.parameters())


def kinds(model, cls):
    return [m for m in model.modules() if isinstance(m, cls)]


# The authors' counts (weights and biases; BatchNorm's gain and bias, not its running
# statistics), counted from their model definitions in /work/helpers/resnet_spec.md §0:
# gan_cifar_resnet.py (igul222/improved_wgan_training fa66c574, CONDITIONAL = False),
# DIM_G = DIM_D = 128: G 1,204,483, D 1,053,825; sngan_projection e84b1a5f,
# resnet_32.py ch=256: G 4,276,739, snresnet_32.py ch=128: D 1,053,824 (its score has no
# bias); both with z of 128 dimensions.
@pytest.mark.parametrize("layout, generator, critic", [
    ("wgan-gp", 1_204_483, 1_053_825),
    ("sngan", 4_276_739, 1_053_824),
])
def test_parameter_counts_are_the_authors(layout, generator, critic):
    _, m = build(CIFAR, layout=layout)
    assert (count(m["generator"]), count(m["discriminator"])) == (generator, critic)
    # the per-block counts of the spec's breakdown (wgan-gp: §1.4; sngan: §2.5)
    g_block, = {count(b) for b in kinds(m["generator"], GeneratorBlock)}
    assert g_block == {"wgan-gp": 312_192, "sngan": 1_246_976}[layout]
    d_blocks = [count(b) for b in m["discriminator"].net[:4]]
    assert d_blocks == [151_680, 311_680, 295_168, 295_168]


@pytest.mark.parametrize("size", [8, 16, 32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_at_every_size(size, channels):
    spec = ModelSpec((channels, size, size), latent_dim=8)
    _, m = build(spec, width=4, critic_width=4)
    g, d = m["generator"], m["discriminator"]
    x = g(torch.randn(2, 8))
    assert x.shape == (2, channels, size, size) and x.abs().max() <= 1
    pooled = []
    pool, = kinds(d, GlobalPool)
    pool.register_forward_hook(lambda mod, args, out: pooled.append(args[0].shape))
    assert d(x).shape == (2,)
    # G: one up block per doubling from 4×4; D: the optimized block halves, the down blocks
    # halve to 8×8 (4×4 for 8-px images), two blocks keep the side
    assert len(kinds(g, GeneratorBlock)) == int(math.log2(size // 4))
    smallest = 4 if size == 8 else 8
    assert pooled == [(2, 4, smallest, smallest)]
    downs = [b for b in kinds(d, CriticBlock) if isinstance(b.shortcut, nn.Sequential)]
    assert len(downs) == int(math.log2(size // 2 // smallest))
    assert len(kinds(d, CriticBlock)) == len(downs) + 2


def test_the_layer_stacks():
    _, m = build(ModelSpec((3, 16, 16), latent_dim=8), width=4, critic_width=6)
    g, d = m["generator"].net, m["discriminator"].net
    assert isinstance(g[0], nn.Linear) and (g[0].in_features, g[0].out_features) == (8, 4 * 4 * 4)
    assert isinstance(g[1], nn.Unflatten)
    assert [type(x) for x in g[-4:]] == [nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.Tanh]
    assert isinstance(d[0], OptimizedBlock)
    assert [type(x) for x in d[-3:]] == [nn.ReLU, GlobalPool, nn.Linear]
    assert (d[-1].in_features, d[-1].out_features) == (6, 1)


@pytest.mark.parametrize("shape", [(3, 24, 24), (3, 32, 16), (3, 4, 4), (3, 256, 256), (1, 12, 12)])
def test_refuses_other_image_shapes(shape):
    trick = gantrix.make("resnet")
    for role in ROLES:
        with pytest.raises(GantrixError, match=r"square images whose side is 4 · 2\^k from 8 to "
                                               r"128 px .*" + re.escape(str(shape))):
            trick.gantrix_build_model(role=role, spec=ModelSpec(shape))


def test_builds_nothing_for_vectors():
    trick = gantrix.make("resnet")
    assert all(trick.gantrix_build_model(role=r, spec=ModelSpec((2,))) is None for r in ROLES)


def _input_sides(block, x):
    """{module: side of its input} for every module of ``block`` run on ``x``."""
    sides = {}

    def keep(module, args, out):
        sides[module] = args[0].shape[-1]

    hooks = [m.register_forward_hook(keep) for m in block.modules() if m is not block]
    block(x)
    for h in hooks:
        h.remove()
    return sides


def test_generator_block_upsamples_before_its_first_conv_and_shortcut_conv():
    block = GeneratorBlock(4, 4, eps=1e-5)
    sides = _input_sides(block, torch.randn(2, 4, 8, 8))
    conv_a, conv_b = [m for m in block.residual if isinstance(m, nn.Conv2d)]
    shortcut, = [m for m in block.shortcut if isinstance(m, nn.Conv2d)]
    bn_a, bn_b = [m for m in block.residual if isinstance(m, nn.BatchNorm2d)]
    assert (sides[bn_a], sides[conv_a], sides[bn_b], sides[conv_b]) == (8, 16, 16, 16)
    assert sides[shortcut] == 16 and shortcut.kernel_size == (1, 1)
    assert [type(m) for m in block.residual] == [nn.BatchNorm2d, nn.ReLU, nn.Upsample, nn.Conv2d,
                                                 nn.BatchNorm2d, nn.ReLU, nn.Conv2d]


def test_nearest_upsampling_repeats_each_pixel():
    """tflib's concat ×4 + depth_to_space and Chainer's unpooling_2d are nearest ×2."""
    block = GeneratorBlock(1, 1, eps=1e-5)
    up = block.shortcut[0]
    x = torch.arange(4.0).reshape(1, 1, 2, 2)
    assert torch.equal(up(x)[0, 0], torch.tensor([[0., 0, 1, 1], [0, 0, 1, 1],
                                                  [2, 2, 3, 3], [2, 2, 3, 3]]))


def test_down_block_pools_after_its_second_conv_and_after_the_shortcut_conv():
    block = CriticBlock(4, 4, down=True)
    x = torch.randn(2, 4, 8, 8)
    sides = _input_sides(block, x)
    conv_a, conv_b = [m for m in block.residual if isinstance(m, nn.Conv2d)]
    shortcut, pool = block.shortcut
    assert (sides[conv_a], sides[conv_b], sides[shortcut], sides[pool]) == (8, 8, 8, 8)
    assert isinstance(pool, nn.AvgPool2d) and isinstance(block.residual[-1], nn.AvgPool2d)
    assert block(x).shape == (2, 4, 4, 4)
    # pre-activation: ReLU before each conv, nothing after the pooling
    assert [type(m) for m in block.residual] == [nn.ReLU, nn.Conv2d, nn.ReLU, nn.Conv2d,
                                                 nn.AvgPool2d]
    keep = CriticBlock(4, 4, down=False)
    assert isinstance(keep.shortcut, nn.Identity) and keep(x).shape == x.shape
    assert isinstance(CriticBlock(4, 6, down=False).shortcut, nn.Sequential)  # channels change


def test_optimized_block_pools_first_in_its_shortcut():
    block = OptimizedBlock(3, 4)
    sides = _input_sides(block, torch.randn(2, 3, 8, 8))
    conv_a, conv_b = [m for m in block.residual if isinstance(m, nn.Conv2d)]
    pool, shortcut = block.shortcut
    assert isinstance(pool, nn.AvgPool2d) and shortcut.kernel_size == (1, 1)
    assert (sides[conv_a], sides[conv_b], sides[pool], sides[shortcut]) == (8, 8, 8, 4)
    # no activation before its first conv: it reads the image
    assert [type(m) for m in block.residual] == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.AvgPool2d]


def _xavier_bound(layer, gain):
    fan_in = layer.weight[0].numel()
    fan_out = layer.weight.shape[0] * layer.weight[0, 0].numel()
    return gain * math.sqrt(6 / (fan_in + fan_out))


def test_initialisation_is_the_authors():
    _, m = build(CIFAR)
    g, d = m["generator"], m["discriminator"]
    blocks = kinds(g, GeneratorBlock) + kinds(d, OptimizedBlock) + kinds(d, CriticBlock)
    residual = [c for b in blocks for c in b.residual if isinstance(c, nn.Conv2d)]
    plain = ([c for b in blocks for c in kinds(b.shortcut, nn.Conv2d)]
             + [g.net[0], g.net[-2], d.net[-1]])
    assert len(residual) == 3 * 2 + 4 * 2 and len(plain) == 3 + 2 + 3
    for layers, gain in ((residual, math.sqrt(2)), (plain, 1.0)):
        for layer in layers:
            bound = _xavier_bound(layer, gain)
            assert 0.95 * bound < layer.weight.abs().max() <= bound
            assert layer.bias is None or not layer.bias.any()
    for bn in kinds(g, nn.BatchNorm2d):
        assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and not bn.bias.any()


def test_layouts_and_overrides():
    _, wgan = build(CIFAR)
    _, sngan = build(CIFAR, layout="sngan")
    for m, pool, bias in ((wgan, "mean", True), (sngan, "sum", False)):
        d = m["discriminator"]
        assert kinds(d, GlobalPool)[0].mode == pool
        assert (d.net[-1].bias is not None) == bias
    assert {bn.eps for bn in kinds(wgan["generator"], nn.BatchNorm2d)} == {1e-5}
    assert {bn.eps for bn in kinds(sngan["generator"], nn.BatchNorm2d)} == {2e-5}
    assert sngan["generator"].net[0].out_features == 4 * 4 * 256
    _, m = build(CIFAR, layout="sngan", width=16, critic_width=8, pool="mean")
    assert m["generator"].net[0].out_features == 4 * 4 * 16
    assert m["discriminator"].net[-1].in_features == 8
    assert kinds(m["discriminator"], GlobalPool)[0].mode == "mean"
    x = torch.ones(1, 8, 8, 8)
    assert torch.equal(GlobalPool("sum")(x), 64 * GlobalPool("mean")(x))


@pytest.mark.parametrize("norm, cls", [("none", None), ("layer", nn.GroupNorm),
                                       ("batch", nn.BatchNorm2d)])
def test_critic_norm(norm, cls):
    trick, m = build(ModelSpec((3, 32, 32), latent_dim=8), width=4, critic_width=4,
                     critic_norm=norm)
    d = m["discriminator"]
    norms = kinds(d, (nn.GroupNorm, nn.BatchNorm2d, nn.LayerNorm))
    assert not kinds(d.net[0], (nn.GroupNorm, nn.BatchNorm2d))  # never on the image
    if cls is None:
        assert not norms
    else:
        assert len(norms) == 2 * len(kinds(d, CriticBlock)) == 6
        assert all(type(n) is cls for n in norms)
        if cls is nn.GroupNorm:  # per sample over (C, H, W), a gain and bias per channel
            assert all(n.num_groups == 1 and n.weight.shape == (4,) for n in norms)
    assert ("critic-batchnorm" in trick.features()) == (norm == "batch")


def test_spectral_norm_wraps_every_critic_layer_shortcuts_included():
    spec = ModelSpec((1, 32, 32), latent_dim=8)
    composition = gantrix.Recipe("hinge", "resnet:layout=sngan,width=4,critic_width=4",
                                 "spectral-norm:role=discriminator").compose()
    models = gantrix.build_models(composition, spec)
    layers = kinds(models.discriminator, (nn.Conv2d, nn.Linear))
    # optimized block 3, down block 3, two blocks of 2 with identity shortcuts, the score
    assert len(layers) == 3 + 3 + 2 + 2 + 1
    assert all(is_spectral_normed(layer) for layer in layers)
    assert not any(is_spectral_normed(layer)
                   for layer in kinds(models.generator, (nn.Conv2d, nn.Linear)))
    assert not [f for f in composition.findings if f.severity in ("error", "warning")]


def _check(*args):
    return CliRunner().invoke(create_app(), ["check", *args])


def test_a_batchnorm_critic_under_a_gradient_penalty_is_refused():
    result = _check("--recipe", "wgan-gp-resnet", "resnet:critic_norm=batch")
    assert result.exit_code == 1, result.output
    assert "error: [gradient-penalty + resnet] BatchNorm in the critic" in result.output
    assert "Traceback" not in result.output
    assert _check("--recipe", "wgan-gp-resnet", "resnet:critic_norm=layer").exit_code == 0
    assert _check("--recipe", "wgan-gp-resnet").exit_code == 0


def test_dcgan_and_resnet_build_the_models_one_at_a_time():
    result = _check("resnet", "dcgan", "nonsaturating")
    assert result.exit_code == 1
    assert "resnet and dcgan both build the models" in result.output
    assert "Traceback" not in result.output
    findings = gantrix.Recipe("resnet", recipe="dcgan").check()
    assert [f.severity for f in findings] == ["note"]  # resnet replaces the recipe's dcgan
    composed = gantrix.Recipe("resnet", recipe="dcgan").compose()
    assert "dcgan" not in {t.name for t in composed.tricks}
    # and the other way: the lighter dcgan pair on a recipe that builds the residual models
    composed = gantrix.Recipe("dcgan:critic_norm=none", recipe="sngan").compose()
    assert {"dcgan", "spectral-norm", "hinge"} <= {t.name for t in composed.tricks}
    assert "resnet" not in {t.name for t in composed.tricks}


LABELLED = ModelSpec((1, 8, 8), num_classes=10, latent_dim=8)


@pytest.mark.parametrize("conditional", ["projection", "acgan"])
def test_class_conditional_critics_read_the_pooled_features(run, conditional):
    composition, models, out = run(["hinge", "resnet:width=8,critic_width=6", conditional],
                                   LABELLED, steps=2)
    assert not [f for f in composition.findings if f.severity == "error"]
    assert out and all(torch.isfinite(v) for v in out.values())
    critic = models.discriminator
    assert critic.wrapped.net[-1].in_features == 6
    features = critic.critic(torch.randn(4, 1, 8, 8), {})[1]
    assert features.shape == (4, 6)  # the Linear's input: the pooled features
    # G takes the class as a one-hot beside z: its first Linear is widened
    first = find_layers(models.generator)[0]
    assert isinstance(first, nn.Linear) and first.in_features == 8 + 10


def test_cgan_widens_the_generator_and_cannot_condition_the_critic():
    composition = gantrix.Recipe("nonsaturating", "resnet:width=8,critic_width=6", "cgan").compose()
    with pytest.raises(gantrix.CompositionError):
        gantrix.build_models(composition, LABELLED)
    errors = [f for f in composition.findings if f.severity == "error"]
    assert len(errors) == 1 and "cgan" in errors[0].tricks
    assert "cannot condition the discriminator" in errors[0].message


@pytest.mark.parametrize("recipe", ["wgan-gp-resnet", "sngan"])
def test_the_recipes_train_and_sample_on_digits(tmp_path, recipe):
    cli = CliRunner()
    out = tmp_path / "run"
    result = cli.invoke(create_app(), [
        "train", "--recipe", recipe, "--trick", "resnet:width=8,critic_width=8", "--data",
        "digits", "--steps", "2", "--batch-size", "8", "--seed", "1", "--threads", "1",
        "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    result = cli.invoke(create_app(), ["sample", str(out), "--n", "5",
                                       "--out", str(tmp_path / "s.npy")])
    assert result.exit_code == 0, result.output
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (5, 1, 8, 8) and np.isfinite(samples).all()
    assert np.abs(samples).max() <= 1


def test_the_recipes_hold_the_papers_settings():
    configs = {t.name: t.config for t in gantrix.Recipe(recipe="wgan-gp-resnet").compose().tricks}
    assert set(configs) == {"resnet", "wgan", "gradient-penalty", "n-critic", "adam", "lr-decay"}
    assert configs["resnet"]["layout"] == "wgan-gp"
    assert configs["gradient-penalty"]["weight"] == 10.0 and configs["n-critic"]["n"] == 5
    adam = configs["adam"]
    assert (adam["lr"], adam["beta1"], adam["beta2"]) == (2e-4, 0.0, 0.9)
    assert configs["lr-decay"]["to"] == 0.0
    for name in ("wgan-gp-resnet", "sngan"):
        recipe = gantrix.Recipe(recipe=name)
        assert recipe.for_data("images", "mnist").train.get("latent_dim") == 128
        assert recipe.for_data("images", "mnist").train.get("batch_size", 64) == 64
    sngan = {t.name: t.config for t in gantrix.Recipe(recipe="sngan").compose().tricks}
    assert sngan["resnet"]["layout"] == "sngan"
