"""spectral-norm: every weight layer of the chosen model(s) ends up with spectral norm 1."""
import pytest
import torch
from torch import nn

import gantrix
from gantrix import ModelSpec
from gantrix.models import ConvCritic, ConvGenerator, VectorCritic

LAYERS = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


def sigma(m):
    """Largest singular value of the effective weight, output units first (independent of
    torch's parametrization: SVD of the matrix the layer applies per position)."""
    w = m.weight.detach()
    if isinstance(m, nn.ConvTranspose2d):  # (in, out, kh, kw): out first
        w = w.transpose(0, 1)
    return torch.linalg.matrix_norm(w.reshape(w.shape[0], -1).double(), ord=2).item()


def layers(model):
    return [m for m in model.modules() if isinstance(m, LAYERS)]


def power_iterate(model, x, steps=30):
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(x)


@pytest.mark.parametrize("make, shape", [
    (lambda: VectorCritic(ModelSpec((2,)), hidden=64), (8, 2)),
    (lambda: ConvCritic(ModelSpec((3, 16, 16), width=16)), (8, 3, 16, 16)),
    (lambda: ConvCritic(ModelSpec((3, 32, 32), width=8)), (8, 3, 32, 32)),
], ids=["vector", "conv-16", "conv-32"])
def test_critic_layers_get_unit_spectral_norm(make, shape):
    torch.manual_seed(0)  # built here, seeded: the same weights on every run
    critic, x = make(), torch.randn(shape)
    before = [sigma(m) for m in layers(critic)]
    trick = gantrix.make("spectral-norm")
    assert trick.gantrix_transform_model(model=critic, role="discriminator", spec=None) is critic
    power_iterate(critic, x)
    after = [sigma(m) for m in layers(critic)]
    assert all(abs(s - 1) > 0.05 for s in before)
    assert after == pytest.approx([1.0] * len(after), abs=0.02)
    assert trick.gantrix_check_model(model=critic, role="discriminator") is None


def test_generator_role_and_transposed_convolutions():
    g = ConvGenerator(ModelSpec((1, 16, 16), latent_dim=8, width=8))
    trick = gantrix.make("spectral-norm", role="discriminator")
    assert trick.gantrix_transform_model(model=g, role="generator", spec=None) is None
    assert trick.gantrix_check_model(model=g, role="generator") is None
    trick = gantrix.make("spectral-norm", role="both", n_power_iterations=3)
    trick.gantrix_transform_model(model=g, role="generator", spec=None)
    assert all(m.parametrizations.weight[0].n_power_iterations == 3 for m in layers(g))
    power_iterate(g, torch.randn(8, 8))
    assert [sigma(m) for m in layers(g)] == pytest.approx([1.0] * len(layers(g)), abs=0.02)


def test_check_warns_about_a_layer_left_out():
    critic = VectorCritic(ModelSpec((2,)), hidden=8)
    trick = gantrix.make("spectral-norm")
    trick.gantrix_transform_model(model=critic, role="discriminator", spec=None)
    critic.net.append(nn.Linear(1, 1))
    (finding,) = trick.gantrix_check_model(model=critic, role="discriminator")
    assert finding.severity == "warning" and "'net.7'" in finding.message


def test_runs_after_the_tricks_that_add_layers(run):
    # listed before cgan and minibatch-stddev, it still normalises the layers they widen
    spec = ModelSpec((1, 8, 8), num_classes=10, width=8, latent_dim=8)
    comp, models, _ = run(("hinge", "spectral-norm", "cgan", "minibatch-stddev"), spec)
    net = models.discriminator.wrapped.net
    assert net[0].in_channels == 11 and net[-1].in_channels == spec.width + 1
    assert all(torch.nn.utils.parametrize.is_parametrized(m) for m in layers(models.discriminator))
    assert not [f for f in comp.findings if f.severity != "note"]


def test_declares_a_lipschitz_constraint_and_warns_with_weight_clipping():
    assert "lipschitz-constraint" in gantrix.make("spectral-norm").features()
    if "weight-clip" not in gantrix.tricks():
        pytest.skip("weight-clip is not registered")
    found = gantrix.Recipe("wgan", "weight-clip", "spectral-norm").check()
    assert any(set(f.tricks) == {"spectral-norm", "weight-clip"} and f.severity == "warning"
               for f in found)
