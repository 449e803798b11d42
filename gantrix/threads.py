"""How many CPU threads a run uses, and how several runs share the cores.

torch starts, in every process, an intra-op thread pool as large as the machine (its
physical cores, or ``OMP_NUM_THREADS``), whatever else runs there. Two trainings side by
side then run two pools on the same cores, whose OpenMP threads spin at each barrier
waiting for a thread the other process holds: measured on a 2-core machine, 4-20x slower
per step instead of the 2x of a fair share (bench/threads.py, bench/RESULTS.md). So gantrix
chooses the count instead of inheriting it:

1. ``--threads N`` (the ``threads`` setting: a Trainer keyword, ``[train] threads`` of a
   config), for this run;
2. else ``OMP_NUM_THREADS`` (what torchrun, a job scheduler or the user set);
3. else the usable cores (`usable_cores`: the CPU affinity, ``os.sched_getaffinity``, and
   the cgroup CPU quota, not ``os.cpu_count()``) divided by the runs gantrix starts side
   by side, never below 1 (`split`). A run alone keeps every usable core: today's speed.

Without ``--threads``, a smaller count that this process set itself before the run
(``torch.set_num_threads``: the golden-weights test, a notebook, a launcher's in-Python
workers) is kept: gantrix lowers a count above the rule's, never raises one set by you.

Whatever starts several trainings (``gantrix bench quality --jobs``, ``gantrix train
--nproc`` on the CPU, bench/stacked_mnist.py, ``gantrix ablate --jobs``) calls `split` to
give each its share and print what it chose, and starts its workers with
`child_environment` (``OMP_NUM_THREADS`` set, before they import torch).

Two trainings started by hand learn of each other through a folder of the cache
(`RUNNING`: one file per training process, named by its process id, removed at the end,
and ignored once its process is gone, so kill -9 leaves nothing stale): a run whose count
comes from the cores (no ``--threads``, no ``OMP_NUM_THREADS``) looks every `RECOUNT_S`
seconds at how many trainings are live and takes its share, usable cores // trainings
(`Sharing`). On 2 cores two default ring8 runs side by side then take 1.78x the time of
one alone instead of 7.9x (bench/RESULTS.md). When the load average at start is above the
usable cores, gantrix also says so once, with the ``--threads`` hint (`say_busy`).
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .cache import cache_dir

#: the cgroup v2 CPU limit (``"max 100000"`` or ``"QUOTA PERIOD"`` in microseconds) and the
#: cgroup v1 pair; module attributes, so tests can point them at files of their own.
CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1 = (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
             Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))
#: set (to 1) in the environment of the workers of a launcher that already said what it
#: chose: they say nothing more about threads or load.
QUIET_ENV = "GANTRIX_THREADS_QUIET"
_ours: int | None = None  # the count gantrix itself set last in this process
_said_busy = False


def cgroup_cpus() -> float | None:
    """The cgroup's CPU quota in cores (2.5 for ``250000 100000``), or None without one."""
    try:
        quota, period = CGROUP_V2.read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota, period = (p.read_text().strip() for p in CGROUP_V1)
        except (OSError, ValueError):
            return None
    if quota in ("max", "-1"):
        return None
    try:
        cpus = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None
    return cpus if cpus > 0 else None


def affinity_cpus() -> int:
    """The CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where the
    platform has no affinity)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by the cgroup quota
    (rounded down: a thread beyond the quota is throttled, and a throttled OpenMP thread
    holds every other at the next barrier); at least 1."""
    cores = affinity_cpus()
    quota = cgroup_cpus()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


def omp_num_threads() -> int | None:
    """``OMP_NUM_THREADS`` as a count (its first level, ``"4,2"`` -> 4), or None when it
    is unset or not a positive number."""
    raw = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 1 else None


@dataclass(frozen=True)
class Choice:
    """CPU threads for each of ``jobs`` runs, and why."""

    threads: int
    #: where the count came from: "--threads", "OMP_NUM_THREADS", "cores" or "this process"
    source: str
    cores: int
    jobs: int = 1

    def reason(self) -> str:
        """Why, in words: ``2 usable cores // 2 jobs``, ``--threads 3``, ..."""
        if self.source == "--threads":
            return f"--threads {self.threads}"
        if self.source == "OMP_NUM_THREADS":
            return f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '').strip()}"
        if self.source == "this process":
            return "set by this process (torch.set_num_threads)"
        shared = f" // {self.jobs} jobs" if self.jobs > 1 else ""
        return f"{self.cores} usable core{'s' * (self.cores != 1)}{shared}"


def choose(threads: int | None = None, jobs: int = 1) -> Choice:
    """The rule (module docstring) for ``jobs`` runs side by side, leaving out this
    process's own count (`for_run` adds it): ``threads`` when given, else ``OMP_NUM_THREADS``, else
    the usable cores // ``jobs``; never below 1."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    cores = usable_cores()
    if threads is not None:
        return Choice(max(1, int(threads)), "--threads", cores, jobs)
    omp = omp_num_threads()
    if omp is not None:
        return Choice(omp, "OMP_NUM_THREADS", cores, jobs)
    return Choice(max(1, cores // jobs), "cores", cores, jobs)


def load_average() -> float | None:
    """The 1-minute load average, or None where the platform has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _say(line: str) -> None:
    print(f"gantrix: {line}", file=sys.stderr, flush=True)


def say_busy(cores: int | None = None, say: Callable[[str], None] = _say) -> bool:
    """Say once per process (and never in a quiet worker) that the machine is busy, when
    the load average is above the usable cores: a run then gets less than them, and two
    runs with a full thread pool each slow each other far more than 2x. True if it said so."""
    global _said_busy
    if _said_busy or os.environ.get(QUIET_ENV):
        return False
    cores = cores or usable_cores()
    load = load_average()
    if load is None or load <= cores:
        return False
    _said_busy = True
    say(f"this machine is busy (load average {load:.1f} on {cores} usable "
        f"core{'s' * (cores != 1)}): runs will be slower than alone. If other trainings "
        f"share these cores, give each its share with --threads N (N = cores // runs, "
        f"e.g. --threads {max(1, cores // 2)})")
    return True


def for_run(threads: int | None = None, say: Callable[[str], None] = _say) -> Choice:
    """Set this process's intra-op threads for a run starting now (the Trainer calls it):
    `choose`, except that without ``threads`` a smaller count this process set itself is
    kept (not one gantrix set for an earlier run). Says the count when it changes it
    (in a new process: when it differs from torch's default), and `say_busy`."""
    global _ours
    current = torch.get_num_threads()
    choice = choose(threads)
    if threads is None and current != _ours and current < choice.threads:
        choice = Choice(current, "this process", choice.cores)
    if choice.threads != current:
        torch.set_num_threads(choice.threads)
        _ours = choice.threads
        if not os.environ.get(QUIET_ENV):
            say(f"{choice.threads} CPU thread{'s' * (choice.threads != 1)} "
                f"({choice.reason()}; torch's count was {current})")
    say_busy(choice.cores, say)
    return choice


def split(jobs: int, threads: int | None = None, what: str = "jobs",
          say: Callable[[str], None] | None = _say) -> Choice:
    """The threads of each of ``jobs`` trainings started side by side (`choose`), said in
    one line (``say=None``: silent) with `say_busy`: what ``gantrix bench quality --jobs``,
    ``gantrix train --nproc``, bench/stacked_mnist.py and ``gantrix ablate --jobs`` call."""
    choice = choose(threads, jobs)
    if say is not None:
        say(f"{jobs} {what} side by side, {choice.threads} CPU "
            f"thread{'s' * (choice.threads != 1)} each ({choice.reason()}; --threads N "
            f"to choose)")
        say_busy(choice.cores, say)
    return choice


def child_environment(threads: int, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker process that trains with ``threads`` threads: ``env``
    (by default this process's) with ``OMP_NUM_THREADS`` set, read by torch as it is
    imported, and `QUIET_ENV` (the launcher said what it chose)."""
    return {**(os.environ if env is None else env), "OMP_NUM_THREADS": str(threads),
            QUIET_ENV: "1"}


def worker(threads: int, parent: int | None = None) -> None:
    """Initializer of an in-Python worker process (``ProcessPoolExecutor``): ``threads``
    intra-op threads, nothing more said about threads or load, and an end to the worker
    when the ``parent`` process (its pid, given by the parent) dies."""
    os.environ[QUIET_ENV] = "1"
    torch.set_num_threads(threads)
    if parent is not None:
        _exit_with_parent(parent)


def _exit_with_parent(parent: int, every: float = 1.0) -> None:
    """End this worker process when its parent dies (a kill -9 of ``gantrix ablate`` or
    ``bench quality``): an orphan would go on training a cell that the next run resumes.
    The pid comes from the parent: a worker still starting when its parent was killed
    already has another parent. Its run folder is safe: every file is replaced atomically."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="gantrix-parent-watch", daemon=True).start()


#: the folder (in the cache) where this machine's trainings note that they run.
RUNNING = "running"
#: seconds between two counts of the live trainings.
RECOUNT_S = 2.0


def _running_dir() -> Path:
    return cache_dir() / RUNNING


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # another user's process, or a platform that cannot tell: count it
    return True


def live_trainings() -> int:
    """How many trainings run on this machine now (this one included when it is in
    `running`): the files of the `RUNNING` folder whose process is alive."""
    try:
        names = [p.name for p in _running_dir().iterdir()]
    except OSError:
        return 1
    pids = {int(n) for n in names if n.isdigit()}
    return max(1, sum(_alive(pid) for pid in pids))


@contextlib.contextmanager
def running():
    """This process counts as a training (`live_trainings`) while the block runs. Where the
    cache folder cannot be written, nothing is counted and nothing fails."""
    path = _running_dir() / str(os.getpid())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError:
        path = None
    try:
        yield
    finally:
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()


class Sharing:
    """A run's share of the cores among the trainings on this machine, kept up to date:
    `update` (called at the run's log lines) recounts at most every `RECOUNT_S` seconds
    and sets usable cores // trainings. Only for a count that came from the cores: one set
    by ``--threads``, ``OMP_NUM_THREADS`` or this process stays as it is."""

    def __init__(self, choice: Choice, say: Callable[[str], None] = _say):
        self.choice = choice
        self.adaptive = choice.source == "cores" and choice.jobs == 1
        self.say = say
        self.last = -math.inf

    def update(self, now: float | None = None) -> int:
        """Recount when due; returns this run's intra-op threads."""
        now = time.monotonic() if now is None else now
        if not self.adaptive or now - self.last < RECOUNT_S:
            return torch.get_num_threads()
        self.last = now
        trainings = live_trainings()
        share = max(1, self.choice.cores // trainings)
        if share != torch.get_num_threads():
            torch.set_num_threads(share)
            if not os.environ.get(QUIET_ENV):
                self.say(f"{trainings} trainings on this machine: {share} CPU "
                         f"thread{'s' * (share != 1)} for this one "
                         f"({self.choice.cores} usable cores // {trainings})")
        return share
