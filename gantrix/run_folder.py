"""The run folder: what a training run writes, and how it is read back.

    config.toml      the resolved run (``gantrix train --config`` re-runs it)
    checkpoint.pt    everything a resumed run needs, written atomically
    metrics.jsonl    one line per log interval
    samples/         a sample picture per ``sample_every`` steps
    losses.png       the loss curves so far
    eval.json        the last `Trainer.evaluate`
    data.pt          the samples of a run trained on an in-memory tensor (config: "tensor")
    .lock            held by the process training in the folder; names its pid

Every file but metrics.jsonl is replaced atomically; a line of it cut short by a kill, or
written after the checkpoint a run resumes from, is dropped when the run is prepared
again. So a reader (`gantrix sample`, `gantrix eval`) always finds whole files, also while
a run trains. A run folder has one writer: the process training in it holds its lock
(`writing`; in a distributed run rank 0, which alone writes), and a second one is refused
before it touches anything.
"""
from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from .atomic import atomic_file
from .checkpoint import load_checkpoint, write_atomic
from .errors import GantrixError

CONFIG = "config.toml"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
LOSSES = "losses.png"
EVAL = "eval.json"
SAMPLES = "samples"
DATA = "data.pt"
LOCK = ".lock"
#: how config.toml records a run's data when it was an in-memory tensor (saved as DATA)
TENSOR = "tensor"


def check_new(out: Path) -> None:
    """``out`` can hold a new run: it does not exist, or it is an empty folder."""
    if out.exists() and not out.is_dir():
        raise GantrixError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(p.name != LOCK for p in out.iterdir()):
        raise GantrixError(f"--out {out} is not empty; choose a new folder, or continue "
                           f"the run in it with --resume {out}")


def existing(run_dir: str | Path) -> Path:
    """``run_dir`` as a path, checked to be a run folder (it has a config.toml)."""
    run = Path(run_dir).expanduser()
    if not (run / CONFIG).is_file():
        raise GantrixError(f"{run} is not a gantrix run folder (it has no {CONFIG})")
    return run


def prepare(out: Path, config_toml: str, steps: int, step: int,
            data: torch.Tensor | None = None) -> list[dict]:
    """Make ``out`` ready to train from ``step``: the folders, the config (written when new,
    after the in-memory ``data`` it records as "tensor", saved as DATA; when resumed, only
    its total of ``steps`` updated), no half-written file left, and the metrics lines up to
    ``step``, which it returns. Called by the folder's one writer (`writing`)."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / SAMPLES).exists() and not (out / SAMPLES).is_dir():
        raise GantrixError(f"{out / SAMPLES} is not a folder: the run keeps its sample "
                           f"pictures in a folder of that name; move the file away, then resume")
    (out / SAMPLES).mkdir(exist_ok=True)
    for stale in out.glob(".*.tmp"):  # a write cut short by a kill
        stale.unlink()
    if not (out / CONFIG).exists():
        if data is not None:
            with atomic_file(out / DATA) as f:
                torch.save(data.detach().cpu(), f)
        write_atomic(out / CONFIG, config_toml.encode())
    else:  # resumed: record a new total of steps, keep the rest as it was
        _update_steps(out / CONFIG, steps)
    path = out / METRICS
    if not path.exists():
        return []
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if row.get("step", math.inf) <= step:
            kept.append(row)
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in kept).encode())
    return kept


def _update_steps(path: Path, steps: int) -> None:
    import tomllib

    import tomli_w

    text = path.read_text()
    config = tomllib.loads(text)
    if config.get("train", {}).get("steps") == steps:
        return
    config.setdefault("train", {})["steps"] = steps
    head = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    write_atomic(path, (head + tomli_w.dumps(config)).encode())


def kept(out: Path | None, step: int | None) -> str:
    """Where the last good checkpoint (of ``step``) is, for a message about a stopped run."""
    if out is None or step is None:
        return "nothing was saved"
    return (f"the last checkpoint (step {step}) is kept in {out}; "
            f"continue with gantrix train --resume {out}")


def append_metrics(out: Path, row: dict) -> None:
    """Add one line to metrics.jsonl."""
    try:
        with open(out / METRICS, "a") as f:
            f.write(json.dumps(row) + "\n")
    except OSError as exc:  # a full disk's error names no file
        exc.filename = exc.filename or str(out / METRICS)
        raise


def config_toml(tricks: list[str], recipes: list[str], train: dict,
                custom_models: dict[str, str]) -> str:
    """A run's config.toml: its composed ``tricks`` (re-runnable trick strings), the named
    ``recipes`` it was built from, its ``[train]`` settings, and a note of the user's own
    modules it used (which it cannot record): ``gantrix train --config`` re-runs it."""
    import tomli_w

    head = ("# gantrix run configuration; re-run it with\n"
            "#   gantrix train --config config.toml --out NEW_FOLDER\n")
    if custom_models:
        head += ("# this run used your own modules (" + ", ".join(
            f"{role}: {name}" for role, name in custom_models.items()) + "), which are "
            "not recorded here;\n# load it with Trainer.load(run, generator=..., "
            "discriminator=...)\n")
    body: dict = {"tricks": tricks}
    if recipes:
        body["summary"] = f"built from recipe {' + '.join(recipes)}"
    body["train"] = train
    return head + tomli_w.dumps(body)


def saved_data(run: Path, source: Any) -> torch.Tensor | None:
    """The in-memory tensor a run trained on (its config's data ``source`` is TENSOR), read
    back from DATA in its folder (``weights_only``: no code runs); None for other data."""
    if source != TENSOR:
        return None
    if not (run / DATA).is_file():
        raise GantrixError(f"{run} was trained on an in-memory tensor that is not saved in "
                           f"it ({run / DATA} is missing); save that tensor there "
                           f"(torch.save(x, path)) to reopen the run")
    try:
        data = torch.load(run / DATA, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise GantrixError(f"{run / DATA} cannot be loaded safely: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not isinstance(data, torch.Tensor):
        raise GantrixError(f"{run / DATA} holds a {type(data).__name__}, not a tensor of samples")
    return data


# --------------------------------------------------------------------------- one writer

#: how long a run waits for a lock held for an instant (`check_free`) before it is refused
LOCK_PATIENCE = 1.0


def _holder(lock: Path) -> str:
    try:
        return f"process {int(lock.read_text().split()[0])}"
    except (OSError, ValueError, IndexError):  # gone, or not written yet
        return "another process"


def _lock(fd: int, out: Path, patience: float = 0.0) -> None:
    """Take the lock on ``fd`` (exclusive, not waiting longer than ``patience``), or raise
    the `GantrixError` that names the process holding it."""
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
    who = _holder(out / LOCK)
    pid = who.split()[-1] if who.startswith("process") else "PID"
    raise GantrixError(f"{out} is in use: {who} is training in it, and a run folder has "
                       f"one writer; wait for that run to end, or stop it (kill {pid}: it "
                       f"saves a checkpoint) and continue it with gantrix train --resume {out}")


def check_usable(out: Path, *, new: bool) -> None:
    """Refuse ``out`` for a run, touching nothing: when another process trains in it
    (`check_free`), when it cannot hold a ``new`` one (`check_new`), or when it (for a new
    run, the folder it is made in) cannot be written. (`writing` catches what a process that
    ignores permissions, root, or a full disk meets later.)"""
    check_free(out)
    if new:
        check_new(out)
        parent = _existing(out)
        if not os.access(parent, os.W_OK | os.X_OK):
            raise GantrixError(f"cannot write --out {out}: {parent} is not writable; "
                               f"choose another --out")
    elif not os.access(out, os.W_OK | os.X_OK):
        raise GantrixError(f"cannot write {out}: it is not writable (a resumed run writes "
                           f"its checkpoint there; make it writable); "
                           f"{kept(out, _checkpoint_step(out))}")


def _existing(path: Path) -> Path:
    """``path``, or the nearest folder above it that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _checkpoint_step(run: Path) -> int | None:
    try:
        return int(load_checkpoint(run / CHECKPOINT)["step"])
    except (GantrixError, KeyError, TypeError, ValueError):
        return None


def check_free(out: Path) -> None:
    """Refuse ``out`` when another process holds its lock, touching nothing (an early check,
    before a run is planned; `writing` holds the lock)."""
    try:
        fd = os.open(out / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # no lock file (a new folder): nobody trains in it; else `writing` says
        return
    try:
        _lock(fd, out)
    finally:
        os.close(fd)  # and with it the lock taken for the check


@contextmanager
def _one_writer(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock (LOCK, created with the folder when new; its holder's pid written
    in it) while the block runs. It is the OS's lock (flock): it ends with the process, a
    kill -9 included, so a stale lock file never blocks a run."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "a special file")
    except OSError as exc:
        if exc.errno in DISK_FULL + NOT_WRITABLE:
            raise  # said by `writing`
        raise GantrixError(f"cannot use {out / LOCK}, the run folder's lock "
                           f"({exc.strerror}); it must be a plain file: remove it") from None
    try:
        _lock(fd, out, LOCK_PATIENCE)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


#: what a full disk (EFBIG: a file-size limit) or a folder that cannot be written raise
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def _in(path: Any, out: Path) -> bool:
    """Whether ``path`` is in ``out``, or a folder made to hold it."""
    try:
        path, out = Path(path).resolve(), out.resolve()
    except (OSError, TypeError, ValueError):
        return False
    return path.is_relative_to(out) or out.is_relative_to(path)


@contextmanager
def writing(out: Path | None, kept: Callable[[], str], *, new: bool,
            prepare: Callable[[], None]) -> Iterator[None]:
    """While a run trains into ``out`` (None: it writes nothing): the lock held, a ``new``
    run's folder checked again once locked (another run may have filled it since it was
    planned), then ``prepare()`` (`prepare`); and a full disk or a folder that cannot be
    written a `GantrixError` saying what failed and ``kept()``: which checkpoint is intact,
    and how to continue."""
    if out is None:
        yield
        return
    try:
        with _one_writer(out):
            if new:
                check_new(out)
            prepare()
            yield
    except OSError as exc:
        full = exc.errno in DISK_FULL
        if not (full and exc.filename is None or
                (full or exc.errno in NOT_WRITABLE) and _in(exc.filename, out)):
            raise
        what = exc.filename or f"a file in {out}"
        folder = Path(what).parent if Path(what).exists() else _existing(Path(what))
        hint = "free some space" if full else f"make {folder} writable"
        raise GantrixError(f"could not write {what} ({exc.strerror}; {hint}); "
                           f"{kept()}") from None
