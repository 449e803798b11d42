"""Triton kernel for in-place weight clipping: one launch, one compiled kernel, for any list.

The tensors of a group (one device and dtype) are clamped by one launch of one kernel whose
code does not depend on how many tensors there are: the kernel takes the tensor at the lowest
address as its base pointer and a small table of block starts, in elements from that base
(address differences: every tensor of the group lies in the same address space). Full blocks
are read without a mask (16-byte vector loads: the starts are declared multiples of 16 bytes
when every tensor is 16-byte aligned, as PyTorch's allocations are); each tensor's partial last
block is a (start, count) pair read with a mask. The programs take the blocks round robin, so
small and large tensors share the work evenly.

Before, the tensors reached the kernel as a tuple of arguments and the kernel was unrolled once
per tensor: its compile time grew with the tensor count (the 120-tensor version took 54 s) and
every new list compiled again. Now the kernel compiles once (per dtype and alignment), in about
a second, whatever the list.

The table is built on the host and copied to the device once per list of (address, size)
pairs, then cached: a training loop clips the same parameters every step, so from the second
call on nothing is copied (and the call can be captured in a CUDA graph: warm up first).
Triton's interpreter runs the same code on CPU tensors (offsets added to a pointer argument,
no pointer read from memory), so CI tests it.

Tensors whose elements do not fill one dense block (a strided slice) are clamped by PyTorch
where they lie (``clamp_``; rare: parameters are dense).
"""
from __future__ import annotations

from functools import lru_cache

import torch
import triton
import triton.language as tl

from .dispatch import FP_FUSION, device_guard, interpreting
from .layout import is_dense

# Elements per block and the most programs. In Triton's interpreter each program and op costs
# Python time, so there a few programs take many blocks each.
BLOCK, MAX_PROGRAMS = (4096, 3) if interpreting() else (4096, 1024)
#: lists of (address, size) whose tables are kept on their device
CACHED_TABLES = 64


@triton.jit
def _clamped(x, c):
    """x clamped to [−c, c] in float32 (NaN stays NaN), back in x's dtype."""
    return tl.clamp(x.to(tl.float32), -c, c, propagate_nan=tl.PropagateNan.ALL).to(x.dtype)


@triton.jit(do_not_specialize=["n_full", "n_part", "n_programs"])  # one compile for every list
def _clamp(BASE, FULL, n_full, PART, n_part, c, n_programs, BLOCK: tl.constexpr, ALIGN: tl.constexpr):
    pid = tl.program_id(0)
    for j in range(pid, n_full, n_programs):  # full blocks: no mask, so vector loads
        start = tl.multiple_of(tl.load(FULL + j), ALIGN)
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(BASE + offs)
        tl.store(BASE + offs, _clamped(x, c))
    for j in range(pid, n_part, n_programs):  # each tensor's partial last block
        start = tl.load(PART + 2 * j)
        count = tl.load(PART + 2 * j + 1)
        offs = tl.arange(0, BLOCK)
        mask = offs < count
        x = tl.load(BASE + start + offs, mask=mask)
        tl.store(BASE + start + offs, _clamped(x, c), mask=mask)


@lru_cache(maxsize=CACHED_TABLES)
def _table(spans: tuple[tuple[int, int], ...], item: int, device: torch.device):
    """For tensors at these (address, size) spans: the index of the base (lowest address), the
    full blocks' starts and the partial blocks' (start, count) pairs, in elements from the base,
    as int64 tensors on ``device``; and the alignment (in elements) of every start."""
    base_index = min(range(len(spans)), key=lambda i: spans[i][0])
    base = spans[base_index][0]
    full, part = [], []
    aligned = True
    for address, n in spans:
        start = (address - base) // item
        aligned = aligned and address % 16 == 0
        n_full = n // BLOCK
        full.extend(range(start, start + n_full * BLOCK, BLOCK))
        if n % BLOCK:
            part += (start + n_full * BLOCK, n % BLOCK)
    n_full = len(full)
    full += [0] * (n_full % 2)  # the pairs start 16 bytes aligned: one specialisation of PART
    table = torch.tensor(full + part + [0, 0], dtype=torch.int64).to(device)
    full_t, part_t = table[:n_full], table[len(full):]
    return base_index, full_t, n_full, part_t, len(part) // 2, max(16 // item, 1) if aligned else 1


def clip_(tensors: list[torch.Tensor], c: float) -> None:
    """Clamp ``tensors`` (one device and dtype) in place to [−c, c]."""
    work, spans = [], []
    for t in tensors:  # host time per tensor counts here: lists of 100+ tensors are common
        n = t.numel()
        if not n:
            continue
        if not (t.is_contiguous() or is_dense(t.shape, t.stride())):
            t.clamp_(-c, c)  # a strided slice: where it lies
            continue
        work.append(t)
        spans.append((t.data_ptr(), n))
    if work:
        item = work[0].element_size()
        base_index, full, n_full, part, n_part, align = _table(tuple(spans), item, work[0].device)
        n_programs = max(1, min(n_full + n_part, MAX_PROGRAMS))
        with device_guard(work[0]):  # (launches go to the tensors' device, see dispatch)
            _clamp[(n_programs,)](work[base_index], full, n_full, part, n_part, float(c), n_programs,
                                  BLOCK=BLOCK, ALIGN=align, **FP_FUSION)
    torch.autograd.graph.increment_version(tensors)  # the kernel wrote behind autograd's back
