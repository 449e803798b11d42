"""The standalone kernel API refuses bad arguments by name and value before any work:
loss scales that are zero, negative, NaN or infinite; switches given as strings; clip
bounds that are not finite. (Argument checks run before dispatch: the PyTorch backend is
enough to test them.)"""
import math

import pytest
import torch

from gantrix.kernels import clip_, gradient_penalty, grad_norm_penalty, relativistic_loss


def critic(x):
    return (x * x).sum(dim=1)


def pair(n=4):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g)


@pytest.mark.parametrize("scale", [0, 0.0, -2.0, math.nan, math.inf, -math.inf])
def test_gradient_penalty_refuses_a_loss_scale_that_is_not_finite_and_positive(scale):
    real, fake = pair()
    with pytest.raises(ValueError, match=r"grad_scale must be a finite number > 0.*got"):
        gradient_penalty(critic, real, fake, grad_scale=scale)


def test_gradient_penalty_refuses_a_loss_scale_of_the_wrong_kind():
    real, fake = pair()
    with pytest.raises(TypeError, match="grad_scale must be a real number, got str"):
        gradient_penalty(critic, real, fake, grad_scale="1024")
    with pytest.raises(TypeError, match=r"0-d floating-point tensor.*shape \(2,\)"):
        gradient_penalty(critic, real, fake, grad_scale=torch.ones(2))


def test_a_valid_loss_scale_gives_the_unscaled_penalty():
    real, fake = pair()
    eps = torch.full((4,), 0.25)
    plain = gradient_penalty(critic, real, fake, eps=eps)
    for scale in (1024.0, torch.tensor(1024.0)):
        assert torch.allclose(gradient_penalty(critic, real, fake, eps=eps, grad_scale=scale),
                              plain)


@pytest.mark.parametrize("value", ["no", "false", "", None, 2, 0.5, [True]])
def test_switches_must_be_booleans(value):
    real, fake = pair()
    grad = torch.randn(4, 3)
    logits = torch.randn(4), torch.randn(4)
    with pytest.raises(TypeError, match=r"one_sided must be True or False, got"):
        grad_norm_penalty(grad, one_sided=value)
    with pytest.raises(TypeError, match=r"one_sided must be True or False, got"):
        gradient_penalty(critic, real, fake, one_sided=value)
    with pytest.raises(TypeError, match=r"average must be True or False, got"):
        relativistic_loss(*logits, average=value)
    with pytest.raises(TypeError, match=r"for_generator must be True or False, got"):
        relativistic_loss(*logits, for_generator=value)


def test_switches_given_as_zero_and_one_mean_false_and_true():
    grad = torch.randn(4, 3) * 0.1  # norms below 1: only the two-sided penalty is non-zero
    assert grad_norm_penalty(grad, one_sided=1) == grad_norm_penalty(grad, one_sided=True) == 0
    assert grad_norm_penalty(grad, one_sided=0) == grad_norm_penalty(grad, one_sided=False) > 0
    r, f = torch.randn(4), torch.randn(4)
    assert relativistic_loss(r, f, average=0) == relativistic_loss(r, f, average=False)


@pytest.mark.parametrize("c", [math.inf, math.nan, 0.0, -1.0])
def test_clip_refuses_a_bound_that_is_not_finite_and_positive(c):
    p = torch.randn(5)
    before = p.clone()
    with pytest.raises(ValueError, match=r"c must be a finite number > 0"):
        clip_([p], c)
    assert torch.equal(p, before)
