"""gradient_penalty refuses what would give a meaningless penalty, in words a user can act on:
a critic without one output per sample, a critic with no input gradient, negative weights or
centres, interpolation weights outside [0, 1]; and it takes the critic's own inputs whatever
their names. These are argument checks, the same on both backends, so they run on the PyTorch
path (the Triton path shares them; tests/kernels/test_grad_penalty.py covers its numbers)."""
import warnings

import pytest
import torch
from torch import nn

from gantrix.kernels import grad_norm_penalty, gradient_penalty

B = 4


@pytest.fixture(autouse=True)
def _torch_path(monkeypatch):
    monkeypatch.setenv("GANTRIX_KERNELS", "torch")


def samples():
    torch.manual_seed(0)
    return torch.randn(B, 3), torch.randn(B, 3)


@pytest.mark.parametrize("critic,shape", [
    (lambda x: (x ** 2).sum(), "()"),                                     # a scalar
    (lambda x: torch.cat([(x ** 2).sum(1), x[:1, 0]]), f"({B + 1},)"),    # B + 1 outputs
    (lambda x: x * 2.0, f"({B}, 3)"),                                     # several per sample
    (lambda x: (x ** 2).sum(1).view(1, B), f"(1, {B})"),
])
def test_a_critic_without_one_output_per_sample_is_refused(critic, shape):
    with pytest.raises(ValueError, match=rf"one output per sample, shape \({B},\) or \({B}, 1\)"
                                         rf".*got {shape.replace('(', '[(]').replace(')', '[)]')}"):
        gradient_penalty(critic, *samples())


@pytest.mark.parametrize("critic", [lambda x: (x ** 2).sum(1), lambda x: (x ** 2).sum(1, keepdim=True)])
def test_b_or_b_by_1_outputs_are_one_per_sample(critic):
    real, fake = samples()
    eps = torch.full((B,), 0.5)
    # ‖∇ Σ x²‖ = 2‖x̂‖ at x̂ = (real + fake)/2, written here from the definition
    expected = 10.0 * ((2 * ((real + fake) / 2).norm(dim=1) - 1) ** 2).mean()
    torch.testing.assert_close(gradient_penalty(critic, real, fake, eps=eps), expected)


class Ignoring(nn.Module):
    """A critic with weights whose output does not depend on its input."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.bias.expand(x.shape[0])


class NoGrad(nn.Linear):
    """A critic whose forward runs under no_grad."""

    def __init__(self):
        super().__init__(3, 1)

    @torch.no_grad()
    def forward(self, x):
        return super().forward(x)


@pytest.mark.parametrize("critic,match", [
    (Ignoring(), "does not depend on its input"),
    (lambda x: nn.functional.linear(x.detach(), torch.ones(1, 3, requires_grad=True)), "does not depend"),
    (NoGrad(), r"not tracked by autograd.*no_grad"),
    (lambda x: torch.zeros(x.shape[0]), "not tracked by autograd"),
])
def test_a_critic_without_an_input_gradient_is_named_not_allow_unused(critic, match):
    with pytest.raises(ValueError, match=match) as info:
        gradient_penalty(critic, *samples())
    assert "allow_unused" not in str(info.value)


@pytest.mark.parametrize("name,value", [("weight", -1.0), ("center", -0.5), ("weight", float("nan")),
                                        ("center", float("inf"))])
def test_negative_or_non_finite_weight_and_center_are_refused(name, value):
    pattern = rf"{name} must be a finite number >= 0 \(range \[0, inf\)\), got {value}"
    with pytest.raises(ValueError, match=pattern):
        gradient_penalty(nn.Linear(3, 1), *samples(), **{name: value})
    with pytest.raises(ValueError, match=pattern):
        grad_norm_penalty(torch.randn(B, 3), **{name: value})


def test_zero_weight_and_zero_center_are_allowed():
    real, fake = samples()
    assert gradient_penalty(nn.Linear(3, 1), real, fake, weight=0.0).item() == 0.0
    g = torch.randn(B, 3)
    torch.testing.assert_close(grad_norm_penalty(g, center=0.0, weight=1.0), g.pow(2).sum(1).mean())


@pytest.mark.parametrize("bad,index", [(-0.1, 2), (1.5, 2), (float("nan"), 2)])
def test_eps_outside_0_1_is_refused(bad, index):
    eps = torch.full((B,), 0.5)
    eps[index] = bad
    with pytest.raises(ValueError, match=rf"eps must lie in \[0, 1\].*got {bad} at sample {index}"):
        gradient_penalty(nn.Linear(3, 1), *samples(), eps=eps)


def test_eps_at_both_ends_is_allowed():
    real, fake = samples()
    critic = lambda x: (x ** 2).sum(1)  # noqa: E731
    at_real = gradient_penalty(critic, real, fake, eps=torch.ones(B))
    torch.testing.assert_close(at_real, 10.0 * ((2 * real.norm(dim=1) - 1) ** 2).mean())
    at_fake = gradient_penalty(critic, real, fake, eps=torch.zeros(B))
    torch.testing.assert_close(at_fake, 10.0 * ((2 * fake.norm(dim=1) - 1) ** 2).mean())


def scaled_critic(x, weight, center, eps, one_sided):
    """A critic whose own inputs share the names of gradient_penalty's parameters."""
    return weight * (x ** 2).sum(1) + center + eps + one_sided


def test_critic_inputs_with_the_penalty_own_names_go_through_critic_kwargs():
    real, fake = samples()
    mine = {"weight": 3.0, "center": 100.0, "eps": 7.0, "one_sided": 1.0}
    loss = gradient_penalty(scaled_critic, real, fake, eps=torch.full((B,), 0.5), critic_kwargs=mine)
    # ∇ of 3·Σx² is 6·x̂; the penalty keeps its defaults (weight 10, centre 1, two-sided)
    expected = 10.0 * ((6 * ((real + fake) / 2).norm(dim=1) - 1) ** 2).mean()
    torch.testing.assert_close(loss, expected)


def test_the_old_keyword_form_still_works_with_a_deprecation_warning():
    real, fake = samples()
    critic = lambda x, scale: scale * (x ** 2).sum(1)  # noqa: E731
    eps = torch.full((B,), 0.5)
    with pytest.warns(DeprecationWarning, match=r"\(scale\).*critic_kwargs"):
        old = gradient_penalty(critic, real, fake, eps=eps, scale=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = gradient_penalty(critic, real, fake, eps=eps, critic_kwargs={"scale": 2.0})
    torch.testing.assert_close(old, new)


def test_critic_kwargs_must_be_a_mapping_and_not_mixed_with_keywords():
    with pytest.raises(TypeError, match="critic_kwargs must be a dict.*got list"):
        gradient_penalty(nn.Linear(3, 1), *samples(), critic_kwargs=[1])
    with pytest.raises(TypeError, match=r"critic_kwargs and also extra keywords \(labels\)"):
        gradient_penalty(nn.Linear(3, 1), *samples(), critic_kwargs={}, labels=1)
