"""Every adversarial loss (classic and relativistic), D and G, value and gradient, against
formulas written here in float64 with BCE taken on sigmoid probabilities."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gantrix


def bce(x, target):
    """Binary cross-entropy of probabilities sigmoid(x) against a constant target."""
    p = torch.sigmoid(x)
    return F.binary_cross_entropy(p, torch.full_like(p, float(target)))


def relu(x):
    return torch.maximum(x, torch.zeros_like(x))


def _ra(r, f):
    """The relativistic-average arguments: r − mean f, f − mean r."""
    return r - f.mean(), f - r.mean()


FORMULAS = {
    "minimax": (lambda r, f: bce(r, 1) + bce(f, 0),
                lambda r, f: torch.log(1 - torch.sigmoid(f)).mean()),
    "nonsaturating": (lambda r, f: bce(r, 1) + bce(f, 0),
                      lambda r, f: bce(f, 1)),
    "wgan": (lambda r, f: f.mean() - r.mean(),
             lambda r, f: -f.mean()),
    "hinge": (lambda r, f: relu(1 - r).mean() + relu(1 + f).mean(),
              lambda r, f: -f.mean()),
    "lsgan": (lambda r, f: 0.5 * ((r - 1) ** 2).mean() + 0.5 * (f ** 2).mean(),
              lambda r, f: 0.5 * ((f - 1) ** 2).mean()),
    "rsgan": (lambda r, f: bce(r - f, 1),
              lambda r, f: bce(f - r, 1)),
    "rasgan": (lambda r, f: 0.5 * (bce(_ra(r, f)[0], 1) + bce(_ra(r, f)[1], 0)),
               lambda r, f: 0.5 * (bce(_ra(r, f)[0], 0) + bce(_ra(r, f)[1], 1))),
    "ralsgan": (lambda r, f: 0.5 * (((_ra(r, f)[0] - 1) ** 2).mean() + ((_ra(r, f)[1] + 1) ** 2).mean()),
                lambda r, f: 0.5 * (((_ra(r, f)[1] - 1) ** 2).mean() + ((_ra(r, f)[0] + 1) ** 2).mean())),
    "rahinge": (lambda r, f: 0.5 * (relu(1 - _ra(r, f)[0]).mean() + relu(1 + _ra(r, f)[1]).mean()),
                lambda r, f: 0.5 * (relu(1 - _ra(r, f)[1]).mean() + relu(1 + _ra(r, f)[0]).mean())),
}
RELATIVISTIC = {"rsgan", "rasgan", "ralsgan", "rahinge"}


def _logits(shape):
    r = (torch.randn(shape, dtype=torch.float64) * 1.5 + 0.3).requires_grad_()
    f = (torch.randn(shape, dtype=torch.float64) * 1.5 - 0.3).requires_grad_()
    return r, f


def _check(value, expected, inputs):
    assert value.dim() == 0
    torch.testing.assert_close(value.double(), expected, rtol=1e-9, atol=1e-12)
    got = torch.autograd.grad(value, inputs, allow_unused=True)
    want = torch.autograd.grad(expected, inputs, allow_unused=True)
    for g, w in zip(got, want):
        if w is None:  # the formula does not read this input: neither may the trick
            assert g is None or torch.count_nonzero(g) == 0
        else:
            torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", sorted(FORMULAS))
@pytest.mark.parametrize("shape", [(16,), (4, 3, 5)], ids=["vector", "patch"])
def test_discriminator_loss(name, shape):
    r, f = _logits(shape)
    _check(gantrix.make(name).d_loss(r, f), FORMULAS[name][0](r, f), (r, f))


@pytest.mark.parametrize("name", sorted(FORMULAS))
@pytest.mark.parametrize("shape", [(16,), (4, 3, 5)], ids=["vector", "patch"])
def test_generator_loss(name, shape):
    trick = gantrix.make(name)
    r, f = _logits(shape)
    real = r if trick.generator_uses_real else None
    _check(trick.g_loss(real, f), FORMULAS[name][1](r, f), (r, f) if real is not None else (f,))


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_only_relativistic_losses_read_real_logits_for_the_generator(name):
    assert gantrix.make(name).generator_uses_real == (name in RELATIVISTIC)


def test_relativistic_losses_are_losses_with_a_paper():
    for name in RELATIVISTIC:
        cls = gantrix.tricks("loss")[name]
        assert "Jolicoeur-Martineau" in cls.paper and cls.summary


@pytest.mark.parametrize("name", ["wgan", "nonsaturating", "rasgan", "rsgan"])
def test_a_sigmoid_critic_is_an_error(name):
    composition = gantrix.Recipe(name).compose()
    critic = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1), nn.Sigmoid())
    with pytest.raises(gantrix.CompositionError, match="Sigmoid"):
        gantrix.build_models(composition, gantrix.ModelSpec(shape=(2,), latent_dim=4),
                             discriminator=critic)
