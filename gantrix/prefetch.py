"""The trainer's batches (`Batches`), and for data that stays on the host while training runs
on a GPU, a reader one batch ahead into pinned memory (`Prefetcher`).

Why. On CUDA, memory-sized data is moved to the device once and its batches are indexed
there (`gantrix.data.Data.place`). What stays on the host is data too large for that (an
image folder's memory-mapped cache, a large ``.npy``) and data drawn afresh for every batch
(the 2-D toys, stacked MNIST): each of its batches crosses to the device. A copy from
ordinary (pageable) host memory synchronises: CUDA first waits for the work already queued
on the stream, then stages the bytes through a pinned buffer, and ``non_blocking=True``
changes nothing. The training thread would then wait each step for the device to finish
the last one, and for the read and the copy, while the device idles. Here a background
thread reads the next batch (the data's own ``next_shard``, so with ``--nproc`` each
process reads its slice of the global batch as before) and copies it into page-locked
(pinned) memory while the current step runs; the training thread copies it to the device
with ``non_blocking=True``, which from pinned memory is an asynchronous transfer queued on
the current stream: the host goes on launching the step's kernels without waiting. One batch
ahead bounds the memory: at most two batches are held (the one handed out, the one being
read), whatever the data's size, and one is enough when a read takes less than a step.

The batches are the plain path's, in the same order (one reader, reading in turn). The
data's stream is a batch ahead of training while a read is pending, so `state_dict` gives
the data's state taken just before that read (the batches handed out: what the trainer's
checkpoint saves) and `close` waits for the pending read and loads that state back: after
it the data is where the plain path leaves it, and a resumed run, or a later ``fit``, sees
the batches an uninterrupted one would. An error in the reader (a bad file, a failed
decode) is raised in the training thread, where the plain path would raise it: the same
exception, when that batch is asked for.

Used on CUDA only (`reads_ahead`): pinning needs CUDA, and on the CPU there is no copy to
hide; the plain path is unchanged there (the golden weights are its). A read runs beside
the step, so it must draw from the data's own generator, never torch's global one (every
gantrix source does), and the data's ``state_dict`` must return a copy: it is taken before
every read, off the training thread (for a finite data set that copies its order, 8 bytes
a sample). Not done: more than one batch ahead (for reads slower than a step; a batch more
of memory for each), worker processes (the one thread shares the
GIL with training; a prepared folder's read is indexing and a conversion, mostly outside
it), and a separate copy stream (the transfer is queued between the steps' kernels rather
than beside them: it no longer stops the host, which is what costs a small step).
"""
from __future__ import annotations

import queue
import threading
from typing import Any

import torch

Batch = tuple[torch.Tensor, torch.Tensor | None]
_STOP = object()


def reads_ahead(data: Any, device: torch.device) -> bool:
    """Whether ``data``'s batches are read ahead on their way to ``device``: on CUDA, once
    memory-sized data has been moved there (`Data.place`), for data that stayed on the host."""
    return device.type == "cuda" and not data.place(device)


class Prefetcher:
    """Batches of ``n`` from ``data.next_shard``, read by one daemon thread a batch ahead;
    ``pin`` copies each into pinned memory (CUDA only). See the module for why and what holds.
    Start reading at once; `close` stops the thread."""

    def __init__(self, data: Any, n: int, *, pin: bool = False):
        self.data, self.n, self.pin = data, n, pin
        self._asks: queue.SimpleQueue = queue.SimpleQueue()
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._pending = False  # a read was asked for and not yet handed out
        self._result: tuple | None = None  # the pending read's (state before it, batch, error)
        # pinned memory is allocated for the current device: the reader uses the caller's
        device = torch.cuda.current_device() if pin else None
        self._thread = threading.Thread(target=self._read, args=(device,), daemon=True,
                                        name="gantrix-prefetch")
        self._thread.start()
        self._ask()

    def _read(self, device: int | None) -> None:
        while self._asks.get() is not _STOP:
            state = None
            try:
                if device is not None:
                    torch.cuda.set_device(device)
                state = self.data.state_dict()
                x, y = self.data.next_shard(self.n)
                if self.pin:
                    x, y = x.pin_memory(), None if y is None else y.pin_memory()
                self._done.put((state, (x, y), None))
            except BaseException as exc:  # raised in the training thread, by `next`
                self._done.put((state, None, exc))

    def _ask(self) -> None:
        self._asks.put(True)
        self._pending = True

    def _wait(self) -> tuple:
        if self._result is None:
            self._result = self._done.get()
        return self._result

    def next(self) -> Batch:
        """The next batch (on the host; pinned with ``pin``), and the read of the one after
        it started; the reader's exception, when reading this batch failed."""
        _, batch, error = self._wait()
        self._result, self._pending = None, False
        if error is not None:  # nothing read ahead of a failure, as the plain path
            raise error
        self._ask()
        return batch

    def state_dict(self) -> dict[str, Any]:
        """The data's state as of the batches handed out (before the pending read)."""
        state = self._wait()[0] if self._pending else None
        return self.data.state_dict() if state is None else state

    def close(self) -> None:
        """Wait for the pending read, put the data's stream back to the batches handed out,
        and stop the thread."""
        if self._pending:
            state = self._wait()[0]
            self._result, self._pending = None, False
            if state is not None:
                self.data.load_state_dict(state)
        if self._thread.is_alive():
            self._asks.put(_STOP)
            self._thread.join()


class Batches:
    """The trainer's source of batches of ``n`` on ``device``: `next` (read ahead by a
    `Prefetcher` where `reads_ahead`, else drawn when asked for), `state_dict` (the data's
    state as of the batches handed out: the checkpoint's), `close` (when training stops;
    the next batch starts a new reader)."""

    def __init__(self, data: Any, device: torch.device, n: int):
        self.data, self.device, self.n = data, device, n
        self._ahead: bool | None = None  # decided at the first batch (it may place the data)
        self._reader: Prefetcher | None = None

    def next(self) -> Batch:
        if self._ahead is None:
            self._ahead = reads_ahead(self.data, self.device)
        if not self._ahead:
            x, y = self.data.next_shard(self.n)
        else:
            if self._reader is None:
                self._reader = Prefetcher(self.data, self.n, pin=self.device.type == "cuda")
            x, y = self._reader.next()
        return (x.to(self.device, non_blocking=True),
                None if y is None else y.to(self.device, non_blocking=True))

    def state_dict(self) -> dict[str, Any]:
        return self.data.state_dict() if self._reader is None else self._reader.state_dict()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
