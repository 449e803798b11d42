"""Memory layouts the Triton kernels can walk as flat runs of elements.

Every kernel here either reduces over a set of elements (a sum does not care about their
order) or works element by element, so any layout that covers one dense block of memory —
contiguous, channels-last, a transposed matrix — can be read in memory order without a copy.
Only layouts with gaps or overlaps (a strided slice, an expanded tensor) are copied first.
"""
from __future__ import annotations

import torch


def is_dense(sizes, strides) -> bool:
    """True when the dims, in some order, tile one block of memory with no gap or overlap."""
    expected = 1
    for size, stride in sorted(((n, s) for n, s in zip(sizes, strides) if n != 1), key=lambda p: p[1]):
        if stride != expected:
            return False
        expected *= size
    return True


def dense(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when its elements fill one dense block, else a contiguous copy."""
    return t if is_dense(t.shape, t.stride()) else t.contiguous()


def dense_rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when each sample (index of dim 0) fills one dense block, else a copy.

    The rows may then sit at any distance ``t.stride(0)`` from each other (a batch slice).
    """
    return t if is_dense(t.shape[1:], t.stride()[1:]) else t.contiguous()


def empty_packed_rows(t: torch.Tensor) -> torch.Tensor:
    """An uninitialised tensor shaped like ``t`` (rows dense, see ``dense_rows``) whose rows
    keep ``t``'s element order but are packed back to back: element ``j`` of row ``b`` in
    memory order sits at ``b * D + j`` in both."""
    per_row = t[0].numel() if t.shape[0] else 0
    return torch.empty_strided(t.shape, (per_row,) + t.stride()[1:], dtype=t.dtype, device=t.device)


def n_blocks(n: int, block: int) -> int:
    """How many blocks of ``block`` elements cover ``n``: ceil(n / block) in plain integers.

    (``triton.cdiv`` and ``triton.next_power_of_2`` go through Triton's constexpr machinery, at
    about 2 µs a call: too slow for host code that runs on every launch, once per tensor for
    ``clip_``.)
    """
    return -(-n // block)


def next_power_of_2(n: int) -> int:
    """The smallest power of two ≥ ``n`` (n ≥ 1), in plain integers (see ``n_blocks``)."""
    return 1 << (n - 1).bit_length()
