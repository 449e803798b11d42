"""Triton kernel for in-place weight clipping: one launch for up to MAX_TENSORS tensors of a dtype.

The tensors reach the kernel as a tuple of arguments (Triton specialises the kernel on the
tuple's length), not as a table of pointers in device memory: a table would have to be
copied to the device on every call (or cached and kept valid), and Triton's interpreter cannot
load through pointers read from memory, so CI could not run it. The kernel loops over the
tuple at compile time; the blocks of all tensors, in order, are dealt round robin to a fixed
number of programs, so small and large tensors share the work evenly. Full blocks are read
without a mask, so the compiler can use 16-byte vector loads and stores (tensors start
16-byte aligned); only each tensor's partial last block is masked. Kernel arguments are
limited in size (4 KiB on older CUDA), hence at most MAX_TENSORS per launch.

Tensors whose elements do not fill one dense block (a strided slice) are clamped through a
contiguous copy that is written back; the others are clamped where they lie, in memory order.
"""
from __future__ import annotations

import contextlib
from functools import lru_cache

import torch
import triton
import triton.language as tl

from .dispatch import FP_FUSION, device_guard, interpreting
from .layout import is_dense, n_blocks

MAX_TENSORS = 128
# Elements per block and the most programs. In Triton's interpreter each program and op costs
# Python time, so there a few programs take many blocks each.
BLOCK, MAX_PROGRAMS = (4096, 3) if interpreting() else (4096, 1024)


@triton.jit
def _clamped(x, c):
    """x clamped to [−c, c] in float32 (NaN stays NaN), back in x's dtype."""
    return tl.clamp(x.to(tl.float32), -c, c, propagate_nan=tl.PropagateNan.ALL).to(x.dtype)


@triton.jit
def _clamp(ptrs, sizes, firsts, c, n_programs, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    for i in tl.static_range(len(ptrs)):
        # block k of tensor i is block first_i + k of the concatenation, which program
        # (first_i + k) mod n_programs owns; firsts[i] = first_i mod n_programs
        k0 = (pid - firsts[i] + n_programs) % n_programs
        n_full = sizes[i] // BLOCK
        for k in range(k0, n_full, n_programs):  # full blocks: no mask, so vector loads
            offs = k * BLOCK + tl.arange(0, BLOCK)
            x = tl.load(ptrs[i] + offs)
            tl.store(ptrs[i] + offs, _clamped(x, c))
        if (firsts[i] + n_full) % n_programs == pid:  # the partial last block, if any
            offs = n_full * BLOCK + tl.arange(0, BLOCK)
            mask = offs < sizes[i]
            x = tl.load(ptrs[i] + offs, mask=mask)
            tl.store(ptrs[i] + offs, _clamped(x, c), mask=mask)


@lru_cache(maxsize=256)
def _plan(sizes: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """The grid and each tensor's first program for tensors of these sizes (see ``_clamp``).

    Cached: a training loop clips the same parameter list every step, and for a hundred
    tensors this plan costs about as much host time as the launch itself.
    """
    blocks = [n_blocks(n, BLOCK) for n in sizes]
    n_programs = min(sum(blocks), MAX_PROGRAMS)
    firsts, first = [], 0
    for count in blocks:
        firsts.append(first % n_programs)
        first += count
    return n_programs, tuple(firsts)


def clip_(tensors: list[torch.Tensor], c: float) -> None:
    """Clamp ``tensors`` (one device and dtype) in place to [−c, c]."""
    work, sizes, copies = [], [], []
    for t in tensors:  # host time per tensor counts here: lists of 100+ tensors are common
        n = t.numel()
        if not n:
            continue
        if not (t.is_contiguous() or is_dense(t.shape, t.stride())):
            copies.append((t, t.contiguous()))
            t = copies[-1][1]
        work.append(t)
        sizes.append(n)
    with device_guard(work[0]) if work else contextlib.nullcontext():
        for lo in range(0, len(work), MAX_TENSORS):
            batch_sizes = tuple(sizes[lo:lo + MAX_TENSORS])
            n_programs, firsts = _plan(batch_sizes)
            _clamp[(n_programs,)](tuple(work[lo:lo + MAX_TENSORS]), batch_sizes, firsts, float(c), n_programs,
                                  BLOCK=BLOCK, **FP_FUSION)
    for original, copy in copies:
        original.copy_(copy)
    torch.autograd.graph.increment_version(tensors)  # the kernel wrote behind autograd's back
