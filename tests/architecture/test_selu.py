"""selu: SELU everywhere but the output, no normalisation, LeCun-normal init, and the
self-normalising property itself."""
import math

import pytest
import torch
from torch import nn

import gantrix
from gantrix import ModelSpec
from gantrix.models import default_model, mlp

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)
OTHER_ACTS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.PReLU)


def transform(model, role="generator", spec=ModelSpec((2,))):
    return gantrix.make("selu").gantrix_transform_model(model=model, role=role, spec=spec)


def dcgan_pair(spec):
    trick = gantrix.make("dcgan")
    return {role: trick.gantrix_build_model(role=role, spec=spec)
            for role in ("generator", "discriminator")}


def count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


@pytest.mark.parametrize("pair", ["mlp", "dcgan"])
def test_replaces_hidden_activations_and_norms_keeps_the_output(pair):
    spec = ModelSpec((3, 16, 16), width=32, latent_dim=32) if pair == "dcgan" else ModelSpec((2,))
    models = (dcgan_pair(spec) if pair == "dcgan" else
              {r: default_model(r, spec) for r in ("generator", "discriminator")})
    for role, model in models.items():
        hidden = count(model, OTHER_ACTS)
        out = transform(model, role, spec)
        assert out is model
        assert count(model, OTHER_ACTS) == 0 and count(model, NORMS) == 0
        assert count(model, nn.SELU) == hidden
        if role == "generator" and pair == "dcgan":
            assert isinstance(model.net[-1], nn.Tanh)
        for m in model.modules():
            if isinstance(m, nn.Linear) and m.weight.numel() >= 2000:  # N(0, 1/in_features)
                assert m.weight.std().item() == pytest.approx(m.in_features ** -0.5, rel=0.08)
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                assert m.bias is None or m.bias.abs().max() == 0
        x = torch.randn(4, spec.latent_dim) if role == "generator" else torch.randn(4, *spec.shape)
        assert torch.isfinite(model(x)).all()


def seen_inputs(model, x):
    """Each conv layer of ``model`` and the shape of the input it gets on ``x``, in order."""
    seen = []
    hooks = [m.register_forward_pre_hook(lambda m, a: seen.append((m, a[0].shape)))
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("role", ["generator", "discriminator"])
def test_every_conv_pre_activation_has_unit_variance(role):
    """LeCun-normal's aim, measured on real activations: unit-variance inputs give each conv
    layer's pre-activations unit variance (pooled over the map) — for G's 1×1 → 4×4 stride-1
    layer (one tap per output position) and its stride-2 layers on small maps alike, and for
    the critic's strided convs."""
    torch.manual_seed(0)
    spec = ModelSpec((3, 32, 32), width=64, latent_dim=128)
    model = transform(dcgan_pair(spec)[role], role, spec)
    x = torch.randn(2, spec.latent_dim) if role == "generator" else torch.randn(2, *spec.shape)
    layers = seen_inputs(model, x)
    assert len(layers) == 6  # dcgan refines 32×32: a 3×3 layer at each end
    for layer, shape in layers:
        if layer.out_channels < 32:  # the RGB output or the logit: too few units to measure
            continue
        with torch.no_grad():
            pre = layer(torch.randn(256, *shape[1:]))
        assert pre.var().item() == pytest.approx(1.0, abs=0.1), (layer, tuple(shape))


def test_the_generator_first_layer_gives_selu_its_fixed_point_variance():
    """After G's first layer (1×1 → 4×4) and SELU, unit-variance latents stay near unit
    variance (Klambauer et al.'s fixed point), not the 0.15 a 16× too large fan-in gives."""
    torch.manual_seed(0)
    spec = ModelSpec((3, 32, 32), width=64, latent_dim=128)
    generator = transform(dcgan_pair(spec)["generator"], "generator", spec)
    first = generator.net[:3]  # the layer, its BatchNorm (now Identity), SELU
    assert isinstance(first[0], nn.ConvTranspose2d) and isinstance(first[2], nn.SELU)
    with torch.no_grad():
        out = first(torch.randn(512, spec.latent_dim, 1, 1))
    assert 0.8 < out.var().item() < 1.2


def test_a_critic_sigmoid_output_stays():
    critic = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1), nn.Sigmoid())
    transform(critic, "discriminator")
    assert [type(m) for m in critic] == [nn.Linear, nn.SELU, nn.Linear, nn.Sigmoid]


def test_dropout_becomes_alpha_dropout():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 1))
    transform(model)
    assert isinstance(model[2], nn.AlphaDropout) and model[2].p == 0.1


def test_activations_self_normalise_through_a_deep_network():
    """The point of the trick: with SELU and LeCun init, unit-normal inputs keep zero mean
    and unit variance through many layers (Klambauer et al. 2017, Theorem 1)."""
    net = transform(mlp(128, 1, hidden=512, depth=16, act=nn.ReLU))
    x = torch.randn(4096, 128)
    with torch.no_grad():
        for layer in list(net)[:-1]:
            x = layer(x)
    assert abs(x.mean().item()) < 0.1 and abs(x.var().item() - 1) < 0.15


def test_initialises_the_raw_weight_of_a_parametrized_layer():
    layer = torch.nn.utils.parametrizations.spectral_norm(nn.Linear(400, 400))
    transform(nn.Sequential(layer))
    raw = layer.parametrizations.weight.original
    assert raw.std().item() == pytest.approx(400 ** -0.5, rel=0.05)


def test_relations_are_declared():
    notes = gantrix.Recipe("nonsaturating", "dcgan", "selu").check()
    assert any(set(f.tricks) == {"selu", "dcgan"} and f.severity == "note" for f in notes)
    found = gantrix.Recipe("hinge", "selu", "spectral-norm").check()
    assert any(set(f.tricks) == {"selu", "spectral-norm"} and f.severity == "warning"
               for f in found)


def test_transforms_layers_other_tricks_added(run):
    _, models, out = run(("nonsaturating", "selu", "infogan"), ModelSpec((2,), width=8))
    d = models.discriminator
    assert count(d, nn.LeakyReLU) == 0 and count(d.q, nn.SELU) == 1
    assert all(math.isfinite(float(v)) for v in out.values())
