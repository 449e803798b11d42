"""Triton kernels for the gradient-norm penalty: one or two launches forward, one backward.

Forward: ``_row_sumsq`` splits every sample of the (B, D) gradient into CHUNK-sized pieces
and writes one partial sum of squares per piece (no atomics, so no zero-fill launch and a
deterministic result); ``_penalty`` (one program) adds the partials of each sample, takes the
norm n_b, and writes the loss together with the backward coefficient
coef_b = 2·weight·(n_b − c)/(n_b·B) (0 where n_b = 0). Small samples skip ``_row_sumsq``:
``_penalty`` squares and adds their elements itself (see DIRECT_TILES). Backward:
``_scale_rows`` writes dg_b = grad_out · coef_b · g_b. Everything stays on the device
(grad_out is read through a pointer), so the op can be captured in a CUDA graph.

Each sample only has to fill one dense block of memory (channels-last or a batch slice is
read in place, see ``layout``); the norm does not depend on the order of the elements.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .dispatch import FP_FUSION, device_guard, interpreting
from .layout import dense_rows, empty_packed_rows, n_blocks, next_power_of_2

# Elements per program (CHUNK) and per load (BLOCK). In Triton's interpreter every program
# and every op costs Python time, so there fewer, wider blocks are used.
CHUNK, BLOCK = (8192, 4096) if interpreting() else (4096, 1024)
# ``_penalty`` walks a (B, width) matrix in BLOCK_B × BLOCK_P tiles. Samples of at most
# BLOCK_P elements (2-D points, 8×8 digits, tabular data) are read by it directly when the
# whole batch takes at most DIRECT_TILES tiles (of at most DIRECT_ROWS rows): the forward is
# then one launch.
BLOCK_B, BLOCK_P = 64, 64
DIRECT_ROWS, DIRECT_TILES = 1024, 8
# The lone ``_penalty`` program holds a 4096-element tile: with 8 warps that is 16 elements a
# thread (about 130 registers on sm_90, against 230–255 with Triton's default 4) and twice the
# loads in flight.
PENALTY_WARPS = 8


@triton.jit
def _row_sumsq(G, PART, D, stride_b, n_parts, CHUNK: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    part = tl.program_id(1)
    base = G + row.to(tl.int64) * stride_b
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for off in tl.static_range(0, CHUNK, BLOCK):
        cols = part * CHUNK + off + tl.arange(0, BLOCK)
        x = tl.load(base + cols, mask=cols < D, other=0.0).to(tl.float32)
        acc += x * x
    tl.store(PART + row * n_parts + part, tl.sum(acc, axis=0))


@triton.jit
def _penalty(SRC, COEF, LOSS, B, width, stride_src, center, weight, SQUARE: tl.constexpr,
             ONE_SIDED: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_P: tl.constexpr):
    total = tl.zeros([BLOCK_B], dtype=tl.float32)
    for b0 in range(0, B, BLOCK_B):
        rows = b0 + tl.arange(0, BLOCK_B)
        in_batch = rows < B
        sq = tl.zeros([BLOCK_B], dtype=tl.float32)
        for p0 in range(0, width, BLOCK_P):
            cols = p0 + tl.arange(0, BLOCK_P)
            mask = in_batch[:, None] & (cols < width)[None, :]
            x = tl.load(SRC + rows[:, None].to(tl.int64) * stride_src + cols[None, :], mask=mask, other=0.0)
            x = x.to(tl.float32)
            if SQUARE:  # SRC is the gradient itself, not the partial sums of squares
                x = x * x
            sq += tl.sum(x, axis=1)
        norm = tl.sqrt_rn(sq)
        dist = norm - center
        if ONE_SIDED:
            dist = tl.maximum(dist, 0.0)
        total += tl.where(in_batch, dist * dist, 0.0)
        nonzero = norm > 0.0
        coef = tl.where(nonzero, dist / tl.where(nonzero, norm, 1.0), 0.0) * (2.0 * weight / B)
        tl.store(COEF + rows, coef, mask=in_batch)
    tl.store(LOSS, tl.sum(total, axis=0) * (weight / B))


@triton.jit
def _scale_rows(G, COEF, GRAD_OUT, DG, D, stride_b, CHUNK: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    part = tl.program_id(1)
    scale = tl.load(COEF + row) * tl.load(GRAD_OUT).to(tl.float32)
    src = G + row.to(tl.int64) * stride_b
    dst = DG + row.to(tl.int64) * D
    for off in tl.static_range(0, CHUNK, BLOCK):
        cols = part * CHUNK + off + tl.arange(0, BLOCK)
        mask = cols < D
        x = tl.load(src + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(dst + cols, (x * scale).to(DG.dtype.element_ty), mask=mask)


class GradNormPenalty(torch.autograd.Function):
    """The Triton twin of ``reference.GradNormPenalty`` (same contract, float32 loss)."""

    @staticmethod
    def forward(ctx, grad, center: float, weight: float, one_sided: bool):
        rows = dense_rows(grad if grad.dim() > 1 else grad.unsqueeze(1))
        batch = rows.shape[0]
        per_row = rows.numel() // batch
        coef = torch.empty(batch, device=grad.device, dtype=torch.float32)
        loss = torch.empty((), device=grad.device, dtype=torch.float32)
        padded = next_power_of_2(per_row)
        tile_rows = min(BLOCK_B * BLOCK_P // padded, DIRECT_ROWS)
        with device_guard(grad):  # (launches go to the tensors' device, see dispatch)
            if padded <= BLOCK_P and batch <= DIRECT_TILES * tile_rows:  # small samples: one launch
                src, width, stride = rows, per_row, rows.stride(0)
                tile = dict(SQUARE=True, BLOCK_B=tile_rows, BLOCK_P=padded)
            else:  # partial sums of squares first, then the penalty over them
                n_parts = n_blocks(per_row, CHUNK)
                part = torch.empty((batch, n_parts), device=grad.device, dtype=torch.float32)
                _row_sumsq[(batch, n_parts)](rows, part, per_row, rows.stride(0), n_parts, CHUNK=CHUNK, BLOCK=BLOCK,
                                             **FP_FUSION)
                src, width, stride = part, n_parts, n_parts
                tile = dict(SQUARE=False, BLOCK_B=BLOCK_B, BLOCK_P=BLOCK_P)
            _penalty[(1,)](src, coef, loss, batch, width, stride, float(center), float(weight),
                           ONE_SIDED=bool(one_sided), num_warps=PENALTY_WARPS, **tile, **FP_FUSION)
        ctx.save_for_backward(rows, coef)
        ctx.squeeze = grad.dim() == 1
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        rows, coef = ctx.saved_tensors
        batch = rows.shape[0]
        per_row = rows.numel() // batch
        dgrad = empty_packed_rows(rows)
        with device_guard(rows):
            _scale_rows[(batch, n_blocks(per_row, CHUNK))](
                rows, coef, grad_out, dgrad, per_row, rows.stride(0), CHUNK=CHUNK, BLOCK=BLOCK, **FP_FUSION)
        return (dgrad.squeeze(1) if ctx.squeeze else dgrad), None, None, None
