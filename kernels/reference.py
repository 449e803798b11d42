"""The PyTorch implementations: what runs on CPU and wherever Triton cannot, and the sibling of
the Triton kernels (the tests check both against float64 formulas of their own).

Each differentiable op is a custom ``autograd.Function`` whose forward also computes the
closed-form input gradient (a few cheap ops on data the forward already touches) and whose
backward is a single multiply by the incoming gradient: fewer ops and autograd nodes than the
eager formula, which is what sets the wall time of these small ops. Small relativistic losses
are the exception: there a few plain ops, differentiated by autograd in C++, cost less host
time than a Python Function (see ``relativistic_loss``). Reductions run in float32
(float64 for float64 inputs); no op reads a value back to the host.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The accumulation (and loss) dtype: float32, or float64 for float64 inputs."""
    return torch.promote_types(dtype, torch.float32)


class GradNormPenalty(torch.autograd.Function):
    """weight · mean_b (‖g_b‖ − center)², the norm over all non-batch dims of g."""

    @staticmethod
    def forward(ctx, grad, center: float, weight: float, one_sided: bool):
        rows = grad if grad.dim() > 1 else grad.unsqueeze(1)
        batch = rows.shape[0]
        norm = torch.linalg.vector_norm(rows, dim=tuple(range(1, rows.dim())), dtype=acc_dtype(grad.dtype))
        dist = norm - center
        if one_sided:
            dist = dist.clamp_min(0.0)
        loss = torch.dot(dist, dist) * (weight / batch)
        # dP/dg_b = coef_b · g_b, coef_b = 2·weight·(n_b − c)/(n_b·B); 0 where n_b = 0 (no NaN).
        coef = torch.where(norm > 0, dist / norm, 0.0).mul_(2.0 * weight / batch)
        ctx.save_for_backward(rows, coef)
        ctx.squeeze = grad.dim() == 1
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        rows, coef = ctx.saved_tensors
        scale = (coef * grad_out).to(rows.dtype).view((-1,) + (1,) * (rows.dim() - 1))
        dgrad = rows * scale
        return (dgrad.squeeze(1) if ctx.squeeze else dgrad), None, None, None


# Elements per input up to which the relativistic loss is written with plain autograd ops: there
# the op is host-bound, and autograd's C++ backward beats a Python Function's two frames; above
# it the closed-form Function wins, with fewer passes over memory (crossover measured between
# 4,096 and 8,192 on a 2-core x86 CPU, see bench/RESULTS.md).
SMALL_RELATIVISTIC = 4096


def relativistic_loss(real, fake, kind: str, average: bool, for_generator: bool) -> torch.Tensor:
    """The relativistic losses (contract in ``functional.relativistic_loss``) on the PyTorch path."""
    if real.numel() > SMALL_RELATIVISTIC:
        return RelativisticLoss.apply(real, fake, kind, average, for_generator)
    rho = _rho(kind, for_generator)
    return _loss_and_slope(kind, _argument(real, fake, rho, average, acc_dtype(real.dtype)))[0].mean()


def _rho(kind: str, for_generator: bool) -> float:
    """ρ₀ = κs (see ``RelativisticLoss``): κ = −1 for sgan, s = −1 for the generator."""
    return (-1.0 if kind == "sgan" else 1.0) * (-1.0 if for_generator else 1.0)


def _argument(real, fake, rho: float, average: bool, dtype: torch.dtype) -> torch.Tensor:
    """y of ``RelativisticLoss``: rows ρ₀(r − m_f) and −ρ₀(f − m_r), or ρ₀(r − f), in ``dtype``."""
    if not average:
        return (real - fake if rho > 0 else fake - real).to(dtype)
    # rows ρ₀r and −ρ₀f: adding the other row's mean gives y in one op, in place (x is ours,
    # and neither stack nor mean keeps x for its backward)
    x = torch.stack((real.reshape(-1), fake.reshape(-1).neg()) if rho > 0
                    else (real.reshape(-1).neg(), fake.reshape(-1)))
    if x.dtype != dtype:
        x = x.to(dtype)
    return x.add_(x.mean(1, keepdim=True).flip(0))


def _loss_and_slope(kind: str, y: torch.Tensor):
    """g(y), g'(y)/c and c for the elementwise loss g of each kind, in its natural argument y:
    sgan softplus(y) (BCE, written on y = −a for the argument a of BCE(a, 1)), lsgan (y − 1)²,
    hinge relu(1 − y) (slope 0 at the kink, as autograd's relu has it). The slope is computed
    only when something will use it (it costs a pass), and may overwrite y (the sgan slope
    does), so only ``RelativisticLoss.forward``, which owns y, asks for it."""
    if kind == "sgan":
        return F.softplus(y), y.sigmoid_, 1.0
    if kind == "lsgan":
        t = y - 1.0
        return t.square(), (lambda: t), 2.0
    t = 1.0 - y
    return t.relu(), (lambda: (t > 0).to(y.dtype)), -1.0


class RelativisticLoss(torch.autograd.Function):
    """The relativistic losses, each written as a mean of one elementwise loss g.

    With s = +1 for the discriminator and −1 for the generator, and κ = −1 for sgan (whose g
    takes the negated argument), +1 otherwise, y has rows ρ·(x − mean of the other input):
    average:     y = [ρ₀(r − m_f), −ρ₀(f − m_r)] with ρ₀ = κs, L = mean over both rows of g(y)
                 (both rows have N elements, so that is the ½-sum of the two means);
    not average: y = ρ₀(r − f), L = mean g(y).
    The forward also computes the gradient up to the incoming scalar (the mean terms couple every
    element: ∂L/∂r_i = cρ₀/(2N)·(g'(y₀ᵢ) + mean g'(y₁)), and alike for f), so the backward is
    one multiply.
    """

    @staticmethod
    def forward(ctx, real, fake, kind: str, average: bool, for_generator: bool):
        rho = _rho(kind, for_generator)
        n = real.numel()
        loss_el, slope_of, c = _loss_and_slope(kind, _argument(real, fake, rho, average, acc_dtype(real.dtype)))
        loss = loss_el.mean()
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            slope = slope_of()
            if average:  # row 0: ∂L/∂r, row 1: −∂L/∂f, both up to the factor below
                slope = slope.add_(slope.mean(1, keepdim=True).flip(0))
                ctx.scale = c * rho / (2 * n)
            else:
                ctx.scale = c * rho / n
            ctx.save_for_backward(slope)
        ctx.inputs = (real.shape, real.dtype, fake.dtype)
        ctx.paired = not average
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        (slope,) = ctx.saved_tensors
        shape, real_dtype, fake_dtype = ctx.inputs
        grads = slope * (grad_out * ctx.scale)  # slope stays as saved: backward may run again
        if ctx.paired:
            dreal, dfake = grads, grads.neg()
        else:  # the rows of our own grads: negate the second in place
            dreal, dfake = grads[0].view(shape), grads[1].neg_().view(shape)
        return dreal.to(real_dtype), dfake.to(fake_dtype), None, None, None


def clip_(tensors, c: float) -> None:
    """Clamp tensors of one device in place to [−c, c] with the multi-tensor ``_foreach`` pair:
    two launches on CUDA, or on CPU two passes with far less per-tensor overhead than a
    ``clamp_`` call each (the public ``clip_`` sends only small CPU tensors here)."""
    torch._foreach_clamp_min_(tensors, -c)
    torch._foreach_clamp_max_(tensors, c)
