"""Data-parallel training: N processes (``torchrun``) train one GAN on one global batch.

``--batch-size`` is the global batch. Each process (rank) takes its contiguous slice of it,
and of every per-sample random draw: the latents, the data order, and the tricks' draws
(interpolation weights, noise, augmentations, codes) are drawn for the *global* batch from
random streams that are identical on every rank, and each rank keeps its own rows
(`rand`, `randn`, `randint`, `shard`). So a run on N processes trains the GAN of the run
on 1 process, up to floating-point reassociation.

Gradients: after each complete backward pass, every parameter's gradient is averaged over
the ranks (`average_gradients`: one ``all_reduce`` per bucket of flattened gradients). This
is what DistributedDataParallel's reducer does, done after the backward instead of from
autograd hooks during it, because a GAN step defeats those hooks: the critic runs several
forward passes per backward (real, fake, interpolates), the gradient penalty's
double backward (``autograd.grad(create_graph=True)``) reaches the parameters in a second
pass, the critic is frozen during the generator's update, and an unrolled look-ahead
differentiates through copies of it — the cases of pytorch #47562, #63812 and #63929. After
the backward every contribution is in ``.grad``, so the average is always complete.

Losses that couple the samples of a batch (a relativistic loss's batch means, top-k's
ranking, feature matching's means) see the global batch through `gather_rows`, whose
backward sums the gradients of every rank: computed on the gathered batch, such a loss is
the global loss on every rank, and the averaged gradient is its gradient. A statistic a
trick or a model computes inside the critic's forward pass over the batch (BatchNorm,
minibatch features) is per rank; the checker says so (`findings`).

Evaluation during training is shared too (`gantrix.periodic_eval`): the blocks of its
samples are split over the processes (`share`), each generates its own as the one-process
sampler would (`alone`) with rank 0's generator (`writer_state`), and rank 0 gathers the
features (`gather_to_writer`) and computes the score.

Without a process group (a plain ``gantrix train``) every function here is the identity
of the one-process run: the same numbers, no communication.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import sys
import threading
from typing import Callable, Iterable, Iterator, NoReturn, TypeVar

import torch
from torch import distributed as dist
from torch import nn

from .errors import GantrixError
from .findings import Finding
from .models import ROLES

#: seconds a collective waits for the other ranks before the run stops with an error: the
#: backstop for a process that hangs (one that dies closes its connections, which the
#: others notice at once), long enough for rank 0's checkpoints and sample pictures.
TIMEOUT_S = 600
#: gradients are averaged in buckets of at most this many elements (one all_reduce each).
BUCKET_NUMEL = 1 << 22
#: what a collective raises when another process of the group is gone (gloo: the
#: connection closed or timed out; nccl: a backend error).
PEER_ERRORS = (dist.DistError, RuntimeError) if hasattr(dist, "DistError") else (RuntimeError,)
#: the tag of a trick that computes statistics over each process's batch (inside the
#: critic, or over its scores): with N processes it sees B/N samples, so N processes do
#: not train as one.
PER_RANK_BATCH = "per-rank-batch"

T = TypeVar("T")


#: ``alone``: how many `alone` blocks this thread is inside (a one-process run while > 0)
_thread = threading.local()


def active() -> bool:
    """Whether this process is one of several (a process group of size > 1 exists), and
    this thread is not inside `alone`."""
    return (not getattr(_thread, "alone", 0) and dist.is_available() and dist.is_initialized()
            and dist.get_world_size() > 1)


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Within it, this process acts as the one-process run: `active` is False, `rank` 0,
    so `rand`, `randn` and `randint` draw just the rows asked for and no collective is
    made. For work a process does by itself that must equal the one-process run's: its
    share of an evaluation's samples, where a trick's draws (codes, labels) are those of
    the one-process sampler, not a process's rows of a global batch. This thread only."""
    _thread.alone = getattr(_thread, "alone", 0) + 1
    try:
        yield
    finally:
        _thread.alone -= 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_writer() -> bool:
    """Rank 0 writes the run folder; the others only train."""
    return rank() == 0


def launched() -> bool:
    """Whether torchrun (or another launcher of torch.distributed) started this process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_environment(device: str | None = None) -> None:
    """Join the process group torchrun describes in the environment (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``...): nccl when CUDA is there (and ``device`` is not
    ``cpu``), each process on ``cuda:LOCAL_RANK``; gloo on the CPU otherwise. Nothing when
    not launched by torchrun or already joined."""
    if not launched() or (dist.is_available() and dist.is_initialized()):
        return
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if device == "cuda" and not use_cuda:
        raise GantrixError("device 'cuda' asked for, but torch sees no CUDA device; "
                           "use --device cpu (or auto)")
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        dist.init_process_group("nccl" if use_cuda else "gloo",
                                timeout=datetime.timedelta(seconds=TIMEOUT_S))
    except (RuntimeError, ValueError) as exc:
        raise GantrixError(f"cannot join the process group torchrun describes "
                           f"(RANK={os.environ.get('RANK')}, WORLD_SIZE="
                           f"{os.environ.get('WORLD_SIZE')}, MASTER_ADDR="
                           f"{os.environ.get('MASTER_ADDR')}): {exc}") from None


def device() -> torch.device:
    """The device of this process: its GPU under nccl, the CPU under gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def close() -> None:
    """Leave the process group (at the end of a run: rank 0 may still be evaluating, which
    the others need not wait for)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_now(code: int) -> NoReturn:
    """End this process of a distributed run with ``code``: leave the process group, flush
    the output, and skip the interpreter's teardown (where gloo's threads can abort it)."""
    try:
        close()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


# --------------------------------------------------------------------------- slices


def local_size(global_size: int) -> int:
    """This rank's share of a global batch (the checker makes it divide exactly)."""
    world = world_size()
    if global_size % world:
        raise GantrixError(f"a batch of {global_size} cannot be split evenly over {world} "
                           f"processes; use a multiple of {world}")
    return global_size // world


def shard(x: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous rows of ``x``, a tensor of the global batch."""
    n = local_size(x.shape[0])
    r = rank()
    return x[r * n:(r + 1) * n]


def rand(n: int, *shape: int, **kwargs) -> torch.Tensor:
    """``torch.rand(n, *shape)`` for this rank's ``n`` rows of the global batch: drawn for
    all ranks' rows from the (identical) stream, this rank's kept. Keyword arguments as
    torch.rand's (``device``, ``dtype``, ``generator``)."""
    return shard(torch.rand(n * world_size(), *shape, **kwargs))


def randn(n: int, *shape: int, **kwargs) -> torch.Tensor:
    """``torch.randn(n, *shape)`` for this rank's rows (see `rand`)."""
    return shard(torch.randn(n * world_size(), *shape, **kwargs))


def randint(low: int, high: int, n: int, *shape: int, **kwargs) -> torch.Tensor:
    """``torch.randint(low, high, (n, *shape))`` for this rank's rows (see `rand`)."""
    return shard(torch.randint(low, high, (n * world_size(), *shape), **kwargs))


# --------------------------------------------------------------------------- collectives


class _GatherRows(torch.autograd.Function):
    """All ranks' rows, concatenated in rank order; the backward sums every rank's
    gradient for this rank's rows (an all_reduce, then this rank's slice)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        ctx.rows = x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        r = dist.get_rank()
        return grad[r * ctx.rows:(r + 1) * ctx.rows]


class _MeanAcrossRanks(torch.autograd.Function):
    """The mean of a tensor over the ranks; the backward is the mean of the ranks' gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x / dist.get_world_size()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad / dist.get_world_size()


def mean_across_ranks(x: torch.Tensor) -> torch.Tensor:
    """The mean of ``x`` (a gradient, say) over the ranks, differentiable (a second-order
    look-ahead steps with the averaged gradient, as one process would). The identity in
    one process."""
    return _MeanAcrossRanks.apply(x) if active() else x


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """The global batch of a per-sample tensor (logits, features), differentiable: a loss
    computed on it is the global loss on every rank, and its averaged gradient is the
    global gradient. The identity in one process."""
    return _GatherRows.apply(x) if active() else x


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Average the ``.grad`` of ``params`` over the ranks, in place. Parameters without a
    gradient are left out (as one process's optimizer leaves them alone); every rank runs
    the same step, so every rank leaves out the same ones."""
    if not active():
        return
    params = [p for p in params if p.grad is not None]
    world = dist.get_world_size()
    for bucket in _buckets(params):
        flat = torch.cat([p.grad.reshape(-1).float() for p in bucket])
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for p in bucket:
            p.grad.copy_(flat[offset:offset + p.numel()].view_as(p.grad))
            offset += p.numel()


def _buckets(params: list[nn.Parameter]) -> list[list[nn.Parameter]]:
    """Consecutive parameters of one device, at most `BUCKET_NUMEL` elements a bucket."""
    buckets: list[list[nn.Parameter]] = []
    size = 0
    for p in params:
        if not buckets or size + p.numel() > BUCKET_NUMEL or buckets[-1][0].device != p.device:
            buckets.append([])
            size = 0
        buckets[-1].append(p)
        size += p.numel()
    return buckets


def _summed(values: list[float]) -> list[float]:
    """Each of ``values`` summed over the ranks (on the GPU under nccl, which takes no
    host tensors)."""
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.tolist()


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """The mean of each value over the ranks (every rank passes the same names)."""
    if not active() or not values:
        return values
    names = list(values)  # every process makes them in the same order
    sums = _summed([float(values[k]) for k in names])
    return {k: v / dist.get_world_size() for k, v in zip(names, sums)}


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true in any process (every process must ask together)."""
    if not active():
        return flag
    return _summed([1.0 if flag else 0.0])[0] > 0


def agreed(flag: bool, check_now: bool) -> bool:
    """A decision every process takes at the same step (to stop after it, say): ``flag``
    in one process; in several, whether any process's ``flag`` is set, asked only where
    ``check_now`` (at log lines: one small collective, not one per step), else False."""
    if not active():
        return flag
    return any_rank(flag) if check_now else False


@contextlib.contextmanager
def peers_watched(kept: Callable[[], str]) -> Iterator[None]:
    """In a distributed run, a collective that fails because another process died
    becomes a `GantrixError` that says so and ends with ``kept()`` (where the last
    checkpoint is), instead of a traceback."""
    try:
        yield
    except PEER_ERRORS as exc:
        if not active() or not _lost_peer(exc):
            raise
        raise GantrixError(f"another process of this distributed run stopped "
                           f"({str(exc).strip().splitlines()[0]}); {kept()}") from None


def _lost_peer(exc: BaseException) -> bool:
    if hasattr(dist, "DistError") and isinstance(exc, dist.DistError):
        return True
    text = str(exc).lower()
    return any(word in text for word in ("gloo", "nccl", "connection", "peer", "timed out"))


def share(count: int) -> range:
    """This process's part of ``count`` items (blocks of an evaluation's samples) split
    over the processes in contiguous, nearly equal parts in rank order: rank r of N takes
    ``[count·r // N, count·(r+1) // N)``; all of them in one process."""
    world, r = world_size(), rank()
    return range(count * r // world, count * (r + 1) // world)


def gather_to_writer(x: torch.Tensor) -> torch.Tensor | None:
    """Every process's rows of ``x`` concatenated in rank order, on rank 0 (None on the
    others); ``x`` itself in one process. The processes may hold different numbers of
    rows, none included (the other dimensions and the dtype are taken from one that holds
    some). Under nccl the rows travel on this process's GPU and arrive on the CPU."""
    if not active():
        return x
    world = dist.get_world_size()
    shapes: list = [None] * world
    dist.all_gather_object(shapes, (x.shape[0], tuple(x.shape[1:]), x.dtype))
    held = [s for s in shapes if s[0] > 0]
    if not held:
        return x if is_writer() else None
    most, rest, dtype = max(s[0] for s in held), held[0][1], held[0][2]
    where = device()
    padded = torch.zeros(most, *rest, dtype=dtype, device=where)
    if x.shape[0]:
        padded[:x.shape[0]] = x.to(where)
    parts = [torch.empty_like(padded) for _ in range(world)] if is_writer() else None
    dist.gather(padded, parts, dst=0)
    if parts is None:
        return None
    return torch.cat([part[:rows].cpu() for part, (rows, _, _) in zip(parts, shapes)])


@contextlib.contextmanager
def writer_state(module: nn.Module) -> Iterator[None]:
    """Within it, ``module``'s parameters and buffers are rank 0's in every process; each
    process's own again after. The processes' copies of a model differ where each keeps
    statistics of its own rows of the batch (BatchNorm's running means, which a generator
    uses in eval mode): what they compute together with it, each its share of an
    evaluation, is then what the model rank 0 saves computes. The identity in one process."""
    if not active():
        yield
        return
    tensors = [t for t in (*module.parameters(), *module.buffers())
               if t.is_floating_point() or t.dtype in (torch.int64, torch.int32)]
    own = None if is_writer() else [t.detach().clone() for t in tensors]
    for t in tensors:
        dist.broadcast(t.data, src=0)
    try:
        yield
    finally:
        if own is not None:
            with torch.no_grad():
                for t, kept in zip(tensors, own):
                    t.data.copy_(kept)


def writer_first(make: Callable[[], T]) -> T:
    """``make()`` in every process, rank 0's before the others' (so that what rank 0
    builds and caches, a classifier trained once, the others load). When rank 0's raises,
    every process raises: rank 0 its error, the others a `GantrixError` with its message,
    instead of waiting for a rank 0 that will not come."""
    if not active():
        return make()
    failed = None
    if is_writer():
        try:
            made = make()
        except Exception as exc:
            failed = str(exc) or type(exc).__name__
            broadcast(failed)
            raise
    failed = broadcast(failed)
    if failed is not None:
        raise GantrixError(failed)
    return made if is_writer() else make()


def broadcast(obj):
    """Rank 0's ``obj`` on every rank (any picklable object)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def same_on_every_rank(modules: Iterable[nn.Module]) -> None:
    """Copy rank 0's parameters and buffers to every rank (they are built from one seed,
    so this only guards against a model whose construction is not deterministic)."""
    if not active():
        return
    for module in modules:
        for t in list(module.parameters()) + list(module.buffers()):
            if t.is_floating_point() or t.dtype in (torch.int64, torch.int32):
                dist.broadcast(t.data, src=0)


# --------------------------------------------------------------------------- checks


def findings(tricks, models, processes: int) -> list[Finding]:
    """What does not match the one-process run when ``processes`` > 1: tricks tagged
    `PER_RANK_BATCH`, and BatchNorm layers (their statistics are over each rank's B/N
    samples; on CUDA, `torch.nn.SyncBatchNorm.convert_sync_batchnorm` on your own modules
    makes them global)."""
    if processes <= 1:
        return []
    found = []
    for trick in tricks:
        if PER_RANK_BATCH in trick.features():
            found.append(Finding(
                "warning", f"{trick.name} computes statistics over the batch, and each of "
                f"the {processes} processes sees its own 1/{processes} of the batch: this "
                f"run is not the one-process run", (trick.name,),
                trick.paper))
    for role in ROLES:
        model = models.by_role(role)
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) and
               not isinstance(m, nn.SyncBatchNorm) for m in model.modules()):
            found.append(Finding(
                "warning", f"the {role} has BatchNorm layers: their batch statistics are over "
                f"each process's 1/{processes} of the batch, so this run is not the "
                f"one-process run (on CUDA, nn.SyncBatchNorm makes them global)", ()))
    return found


def resolve_device(name: str) -> torch.device:
    """The device a run asks for (``auto``, ``cpu``, ``cuda``): in a distributed run, this
    process's own (``cuda:LOCAL_RANK`` or the CPU); ``auto`` is CUDA where torch sees it."""
    if active():
        return device()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise GantrixError("device 'cuda' asked for, but torch sees no CUDA device; "
                           "use --device cpu (or auto)")
    return torch.device(name)
