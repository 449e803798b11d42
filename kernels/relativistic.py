"""Triton kernels for the relativistic losses: one or two launches forward, one backward.

The losses (see ``reference.RelativisticLoss``), with ℓ the positive-side loss of the kind and
s = +1 for the discriminator, −1 for the generator:

    average:     L = ½[mean_i ℓ(s·(r_i − m_f)) + mean_j ℓ(−s·(f_j − m_r))]
    not average: L = mean_i ℓ(s·(r_i − f_i))

Forward: ``_sums`` writes per-program partial sums of r and f (average only) and zeroes the
accumulators; ``_loss`` has every program add the partials in the same order (identical means
everywhere), then accumulate over its share of the elements the loss and the sums
Sa = Σ_i ∂φ/∂r_i and Sb = Σ_j ∂ψ/∂f_j that couple every gradient through the means; programs
combine these with float32 atomics (so with more than one program the last bits may vary from
run to run). When the logits fit one block (the common case: one logit per sample), a lone
``_loss`` program does it all, means included, in one launch: small losses are host-bound, and
a launch is the largest host cost. Backward: ``_grads`` recomputes ℓ' from r, f and the saved
means and writes

    ∂L/∂r_i = g·(a_i − Sb/N)/(2N),  ∂L/∂f_j = g·(b_j − Sa/N)/(2N)   (average)
    ∂L/∂r_i = g·s·ℓ'(s·(r_i − f_i))/N = −∂L/∂f_i                    (not average)

in one launch, reading g (the incoming gradient) through a pointer: no host synchronisation.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .dispatch import FP_FUSION, device_guard, interpreting
from .layout import dense, is_dense, n_blocks, next_power_of_2

KINDS = {"sgan": 0, "lsgan": 1, "hinge": 2}
# Elements per load, and the most programs (each walks the elements with a grid stride). In
# Triton's interpreter every program and op costs Python time: fewer, wider blocks there.
BLOCK, MAX_PROGRAMS = (4096, 4) if interpreting() else (1024, 1024)


@triton.jit
def _ell(z, KIND: tl.constexpr):
    """ℓ(z) and ℓ'(z): softplus(−z) (sgan), (z − 1)² (lsgan), relu(1 − z) (hinge)."""
    if KIND == 0:
        e = tl.exp(-tl.abs(z))  # one exp, never overflowing, for both
        loss = tl.maximum(-z, 0.0) + tl.log(1.0 + e)
        dloss = -tl.where(z > 0.0, e, 1.0) / (1.0 + e)  # −sigmoid(−z)
    elif KIND == 1:
        loss = (z - 1.0) * (z - 1.0)
        dloss = 2.0 * (z - 1.0)
    else:
        loss = tl.maximum(1.0 - z, 0.0)
        dloss = tl.where(z < 1.0, -1.0, 0.0)
    return loss, dloss


@triton.jit
def _strided_sums(R, F, start, N, step, BLOCK: tl.constexpr):
    """Σ r and Σ f over the blocks start, start + step, … below N, in float32."""
    sr = tl.zeros([BLOCK], dtype=tl.float32)
    sf = tl.zeros([BLOCK], dtype=tl.float32)
    for first in range(start, N, step):
        offs = first + tl.arange(0, BLOCK)
        mask = offs < N
        sr += tl.load(R + offs, mask=mask, other=0.0).to(tl.float32)
        sf += tl.load(F + offs, mask=mask, other=0.0).to(tl.float32)
    return tl.sum(sr, axis=0), tl.sum(sf, axis=0)


@triton.jit
def _add_to(PTR, value, ONE_PROGRAM: tl.constexpr):
    """*PTR += value from every program (float32 atomics), or *PTR = value from the only one."""
    if ONE_PROGRAM:
        tl.store(PTR, value)
    else:
        tl.atomic_add(PTR, value)


@triton.jit
def _sums(R, F, PART, LOSS, STATS, N, n_programs, AVERAGE: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    if pid == 0:
        tl.store(LOSS, 0.0)
        tl.store(STATS + tl.arange(0, 4), tl.zeros([4], dtype=tl.float32))
    if AVERAGE:
        sum_r, sum_f = _strided_sums(R, F, pid * BLOCK, N, n_programs * BLOCK, BLOCK)
        tl.store(PART + pid, sum_r)
        tl.store(PART + n_programs + pid, sum_f)


@triton.jit
def _loss(R, F, PART, LOSS, STATS, N, n_programs, KIND: tl.constexpr, AVERAGE: tl.constexpr,
          SIGN: tl.constexpr, ONE_PROGRAM: tl.constexpr, BLOCK: tl.constexpr, BLOCK_P: tl.constexpr):
    pid = tl.program_id(0)
    total = tl.zeros([BLOCK], dtype=tl.float32)
    if AVERAGE:
        if ONE_PROGRAM:  # no ``_sums`` launch: this program reads the logits twice
            sum_r, sum_f = _strided_sums(R, F, 0, N, BLOCK, BLOCK)
        else:
            progs = tl.arange(0, BLOCK_P)
            sum_r = tl.sum(tl.load(PART + progs, mask=progs < n_programs, other=0.0), axis=0)
            sum_f = tl.sum(tl.load(PART + n_programs + progs, mask=progs < n_programs, other=0.0), axis=0)
        mean_r = sum_r / N
        mean_f = sum_f / N
        sum_a = tl.zeros([BLOCK], dtype=tl.float32)
        sum_b = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(pid * BLOCK, N, n_programs * BLOCK):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < N
            r = tl.load(R + offs, mask=mask, other=0.0).to(tl.float32)
            f = tl.load(F + offs, mask=mask, other=0.0).to(tl.float32)
            loss_r, dloss_r = _ell(SIGN * (r - mean_f), KIND)
            loss_f, dloss_f = _ell(-SIGN * (f - mean_r), KIND)
            total += tl.where(mask, loss_r + loss_f, 0.0)
            sum_a += tl.where(mask, SIGN * dloss_r, 0.0)
            sum_b += tl.where(mask, -SIGN * dloss_f, 0.0)
        _add_to(LOSS, tl.sum(total, axis=0) * (0.5 / N), ONE_PROGRAM)
        _add_to(STATS + 2, tl.sum(sum_a, axis=0), ONE_PROGRAM)
        _add_to(STATS + 3, tl.sum(sum_b, axis=0), ONE_PROGRAM)
        if pid == 0:
            tl.store(STATS, mean_r)
            tl.store(STATS + 1, mean_f)
    else:
        for start in range(pid * BLOCK, N, n_programs * BLOCK):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < N
            r = tl.load(R + offs, mask=mask, other=0.0).to(tl.float32)
            f = tl.load(F + offs, mask=mask, other=0.0).to(tl.float32)
            loss, _ = _ell(SIGN * (r - f), KIND)
            total += tl.where(mask, loss, 0.0)
        _add_to(LOSS, tl.sum(total, axis=0) / N, ONE_PROGRAM)


@triton.jit
def _grads(R, F, STATS, GRAD_OUT, DR, DF, N, n_programs, KIND: tl.constexpr, AVERAGE: tl.constexpr,
           SIGN: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    g = tl.load(GRAD_OUT).to(tl.float32)
    if AVERAGE:
        mean_r = tl.load(STATS)
        mean_f = tl.load(STATS + 1)
        scale = g * 0.5 / N
        shift_r = tl.load(STATS + 3) / N
        shift_f = tl.load(STATS + 2) / N
    else:
        scale = g * SIGN / N
    for start in range(pid * BLOCK, N, n_programs * BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < N
        r = tl.load(R + offs, mask=mask, other=0.0).to(tl.float32)
        f = tl.load(F + offs, mask=mask, other=0.0).to(tl.float32)
        if AVERAGE:
            _, dloss_r = _ell(SIGN * (r - mean_f), KIND)
            _, dloss_f = _ell(-SIGN * (f - mean_r), KIND)
            dr = scale * (SIGN * dloss_r - shift_r)
            df = scale * (-SIGN * dloss_f - shift_f)
        else:
            _, dloss = _ell(SIGN * (r - f), KIND)
            dr = scale * dloss
            df = -dr
        tl.store(DR + offs, dr.to(DR.dtype.element_ty), mask=mask)
        tl.store(DF + offs, df.to(DF.dtype.element_ty), mask=mask)


class RelativisticLoss(torch.autograd.Function):
    """The Triton twin of ``reference.RelativisticLoss`` (same contract, float32 loss)."""

    @staticmethod
    def forward(ctx, real, fake, kind: str, average: bool, for_generator: bool):
        if average or is_dense(real.shape, real.stride()) and real.stride() == fake.stride():
            real, fake = dense(real), dense(fake)  # each read in its own memory order
        else:  # paired elements must sit at the same offsets in both
            real, fake = real.contiguous(), fake.contiguous()
        n = real.numel()
        n_programs = min(n_blocks(n, BLOCK), MAX_PROGRAMS)
        one_program = n_programs == 1
        device = real.device
        part = torch.empty(2 * n_programs if average and not one_program else 1, device=device,
                           dtype=torch.float32)
        loss = torch.empty((), device=device, dtype=torch.float32)
        stats = torch.empty(4, device=device, dtype=torch.float32)  # mean r, mean f, Sa, Sb
        with device_guard(real):  # (launches go to the tensors' device, see dispatch)
            if not one_program:
                _sums[(n_programs if average else 1,)](real, fake, part, loss, stats, n, n_programs,
                                                        AVERAGE=average, BLOCK=BLOCK, **FP_FUSION)
            consts = dict(KIND=KINDS[kind], AVERAGE=average, SIGN=-1.0 if for_generator else 1.0, BLOCK=BLOCK)
            _loss[(n_programs,)](real, fake, part, loss, stats, n, n_programs, ONE_PROGRAM=one_program,
                                 BLOCK_P=next_power_of_2(n_programs), **consts, **FP_FUSION)
        ctx.save_for_backward(real, fake, stats)
        ctx.consts = consts
        ctx.n_programs = n_programs
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        real, fake, stats = ctx.saved_tensors
        dreal, dfake = torch.empty_like(real), torch.empty_like(fake)
        with device_guard(real):
            _grads[(ctx.n_programs,)](real, fake, stats, grad_out, dreal, dfake, real.numel(), ctx.n_programs,
                                      **ctx.consts, **FP_FUSION)
        return dreal, dfake, None, None, None
