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


def fan_in(m):
    """Independent of the plugin: inputs summed into one output unit."""
    if isinstance(m, nn.Linear):
        return m.weight.shape[1]
    if isinstance(m, nn.ConvTranspose2d):  # weight (in, out, kh, kw); one output sees in·(k/s)²
        n_in, _, kh, kw = m.weight.shape
        return n_in * kh * kw / (m.stride[0] * m.stride[1])
    return m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]


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
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                if m.weight.numel() >= 2000:
                    assert m.weight.std().item() == pytest.approx(fan_in(m) ** -0.5, rel=0.08)
                assert m.bias is None or m.bias.abs().max() == 0
        x = torch.randn(4, spec.latent_dim) if role == "generator" else torch.randn(4, *spec.shape)
        assert torch.isfinite(model(x)).all()


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
