"""Trainings side by side on one machine: the step time of the default ring8 run (wgan-gp) and
of dcgan on MNIST, alone and as two and three concurrent runs, under several choices of CPU
threads (issue 32; the table in bench/RESULTS.md).

    python bench/threads.py                  # the full table (about 6-8 minutes on 2 cores)
    python bench/threads.py --quick          # a smoke run: ring8, 1 and 2 jobs, 2 choices

Configurations (``--configs``):

- ``default``: torch's defaults (its intra-op pool as large as it chooses, OpenMP's own
  wait policy): what every gantrix training did before ``gantrix.threads``.
- ``split``: gantrix's rule, the usable cores // the concurrent runs (`gantrix.threads`).
- ``one``: one thread each.
- ``passive``: torch's default threads, with ``OMP_WAIT_POLICY=PASSIVE`` in the run's
  environment (read by OpenMP when torch is imported, so it has to be set before: by the
  shell, or by a launcher for its children): waiting threads sleep instead of spinning.
- ``passive-split``: both.
- ``interop1``: torch's default threads and one inter-op thread
  (``torch.set_num_interop_threads(1)`` before any work).
- ``gantrix``: no count given, as a user starting trainings by hand: gantrix's rule, and
  the runs share the cores through the cache's running folder (`gantrix.threads.Sharing`).

Every run is its own process (``python bench/threads.py --child``), started together with
the others of its cell; each builds its trainer and trains its warm-up steps (`WORKLOADS`),
then all start the timed steps at once (a barrier on their stdin); warm-up and timed steps
each stop at ``--max-seconds`` if they are not done (as a user's Ctrl-C would). A cell is the median over the runs of the median
``step_time`` of their metrics lines (each the mean over ``log_every`` steps); the ratio is
to torch's defaults alone in the same table. Configurations that come to the same threads and
environment for a number of jobs (``split`` alone is ``default`` where torch already uses
every usable core) are measured once. The load average before each table is printed with
it: the figures mean little on a machine that was already busy.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

#: workload: (recipe, data, timed steps, warm-up steps, log_every), full and --quick
WORKLOADS = {
    "ring8": ("wgan-gp", "ring8", 200, 20, 10),
    "mnist": ("dcgan", "mnist", 30, 4, 5),
}
QUICK = {
    "ring8": ("wgan-gp", "ring8", 20, 3, 5),
    "mnist": ("dcgan", "mnist", 6, 2, 2),
}
#: environment variables that would change what a configuration measures
CLEARED = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Config:
    label: str
    #: threads for a run of ``jobs``: None = torch's default
    threads: str = "default"  # "default", "split", "one" or "gantrix" (chosen by the run)
    passive: bool = False
    interop: int | None = None

    def per_run(self, jobs: int, cores: int) -> int | None:
        if self.threads == "one":
            return 1
        if self.threads == "split":
            return max(1, cores // jobs)
        return None


CONFIGS = {
    "default": Config("torch defaults"),
    "split": Config("split: usable cores // runs (gantrix)", "split"),
    "one": Config("one thread each", "one"),
    "passive": Config("torch defaults, OMP_WAIT_POLICY=PASSIVE", passive=True),
    "passive-split": Config("split, OMP_WAIT_POLICY=PASSIVE", "split", passive=True),
    "interop1": Config("torch defaults, 1 inter-op thread", interop=1),
    "gantrix": Config("gantrix's default: each run started alone, sharing by the running folder",
                      "gantrix"),
}
DEFAULT_CONFIGS = ["default", "split", "one", "passive", "interop1"]


# ---------------------------------------------------------------------------- one run

def child(args: argparse.Namespace) -> None:
    """One training run: warm up, say ready, wait for the go, train, print its timing."""
    import torch

    if args.interop:
        torch.set_num_interop_threads(args.interop)
    from gantrix.trainer import Trainer, TrainingInterrupted

    recipe, data, steps, warmup, log_every = (QUICK if args.quick else WORKLOADS)[args.workload]
    # torch's default, kept as it is; or none given: gantrix chooses (and shares) the count
    threads = None if args.gantrix_default else (args.threads or torch.get_num_threads())
    trainer = Trainer(recipe, data, steps=warmup, threads=threads, device="cpu",
                      progress=False, log_every=log_every, sample_every=0, checkpoint_every=0)
    signal.signal(signal.SIGTERM, lambda *_: None)  # a late stop, after fit, is ignored

    def fit_for(seconds: float) -> None:
        """``trainer.fit()``, stopped (SIGTERM, as a user would) after ``seconds``."""
        timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGTERM))
        timer.start()
        try:
            trainer.fit()
        except TrainingInterrupted:  # the steps so far count
            pass
        timer.cancel()

    fit_for(args.max_seconds)  # the warm-up, as long as a measurement at most
    warmup = trainer.step
    print("ready", flush=True)
    sys.stdin.readline()  # the go: every run of the cell is warm
    warm, warm_seconds = len(trainer.history), trainer.elapsed
    trainer.settings.steps = warmup + steps  # the schedules keep the warm-up's length
    start = time.perf_counter()
    fit_for(args.max_seconds)
    rows = [r["step_time"] for r in trainer.history[warm:] if r.get("step_time")]
    done = trainer.step - warmup
    if not rows and done:  # stopped before a metrics line: the mean of the steps done
        rows = [(trainer.elapsed - warm_seconds) / done]
    print(json.dumps({"median": statistics.median(rows) if rows else None, "rows": len(rows),
                      "steps": done, "seconds": time.perf_counter() - start,
                      "threads": torch.get_num_threads(),
                      "interop": torch.get_num_interop_threads()}), flush=True)


# ---------------------------------------------------------------------------- a cell

def environment(config: Config) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env["GANTRIX_THREADS_QUIET"] = "1"  # the runs say nothing about threads or load
    if config.passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def cell(workload: str, config: Config, jobs: int, cores: int, args) -> dict:
    """``jobs`` runs of ``workload`` side by side under ``config``."""
    threads = config.per_run(jobs, cores)
    command = [sys.executable, __file__, "--child", "--workload", workload,
               "--max-seconds", str(args.max_seconds),
               *(["--quick"] if args.quick else []),
               *(["--threads", str(threads)] if threads else []),
               *(["--interop", str(config.interop)] if config.interop else []),
               *(["--gantrix-default"] if config.threads == "gantrix" else [])]
    runs = [subprocess.Popen(command, env=environment(config), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True) for _ in range(jobs)]
    try:
        for run in runs:  # the barrier: all warm, then all go
            line = run.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"a run of {workload} ({config.label}) failed to start")
        for run in runs:
            run.stdin.write("go\n")
            run.stdin.flush()
        results = []
        for run in runs:
            out, _ = run.communicate(timeout=args.max_seconds + 600)
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
    medians = [r["median"] for r in results if r["median"] is not None]
    return {"median": statistics.median(medians) if medians else None,
            "threads": results[0]["threads"], "interop": results[0]["interop"],
            "steps": min(r["steps"] for r in results)}


def load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def table(workload: str, configs: list[str], jobs_list: list[int], cores: int, args) -> str:
    recipe, data, steps, warmup, log_every = (QUICK if args.quick else WORKLOADS)[workload]
    load = load_average()
    measured: dict[tuple, dict] = {}
    rows = []
    for name in configs:
        config = CONFIGS[name]
        cells = []
        for jobs in jobs_list:
            key = (config.per_run(jobs, cores) or args.torch_threads, config.passive,
                   config.interop, jobs, config.threads == "gantrix")
            if key not in measured:
                measured[key] = cell(workload, config, jobs, cores, args)
                print(f"{workload}, {config.label}, {jobs} job(s): "
                      f"{_ms(measured[key]['median'])} a step, "
                      f"{measured[key]['threads']} thread(s) each", file=sys.stderr, flush=True)
            cells.append(measured[key])
        rows.append((config, cells))
    base = next((c[0]["median"] for cfg, c in rows if cfg == CONFIGS["default"]
                 and jobs_list[0] == 1), None)
    lines = [f"#### {workload}: `{recipe}` on {data}, default settings, {steps} timed steps "
             f"after {warmup} (median step time a run; × torch defaults alone)",
             "", f"Load average before the table (1, 5, 15 min): {load}; {cores} usable cores.",
             "", "| threads a run | " + " | ".join(
                 "alone" if j == 1 else f"{j} side by side" for j in jobs_list) + " |",
             "|---|" + "---:|" * len(jobs_list)]
    for config, cells in rows:
        counts = "/".join(str(c["threads"]) for c in cells)
        values = []
        for c in cells:
            text = _ms(c["median"])
            if base and c["median"]:
                text += f" ({c['median'] / base:.2f}×)"
            values.append(text)
        lines.append(f"| {config.label} ({counts}) | " + " | ".join(values) + " |")
    return "\n".join(lines)


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: few steps, ring8, alone and 2 jobs, default and one")
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS))
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS))
    parser.add_argument("--jobs", type=int, nargs="+", help="runs side by side (default 1 2 3)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="cap of a run's warm-up and of its timed steps (default 10; --quick 5)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--gantrix-default", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--interop", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.max_seconds is None:
        args.max_seconds = 5.0 if args.quick else 10.0
    if args.child:
        child(args)
        return
    import torch

    from gantrix.threads import usable_cores

    workloads = args.workloads or (["ring8"] if args.quick else list(WORKLOADS))
    configs = args.configs or (["default", "one"] if args.quick else DEFAULT_CONFIGS)
    jobs_list = sorted(set(args.jobs or ([1, 2] if args.quick else [1, 2, 3])))
    if jobs_list[0] < 1:
        parser.error("--jobs must be at least 1")
    cores = usable_cores()
    args.torch_threads = torch.get_num_threads()  # what a run under torch's defaults gets
    start = time.perf_counter()
    words = ["python", "bench/threads.py", *sys.argv[1:]]
    print(f"Command: `{' '.join(words)}`\n\nMachine: {platform.machine()}, {cores} usable CPU "
          f"cores (os.cpu_count() {os.cpu_count()}), torch {torch.__version__} (default "
          f"{torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op "
          f"threads).\n")
    for workload in workloads:
        print(table(workload, configs, jobs_list, cores, args) + "\n", flush=True)
    print(f"({time.perf_counter() - start:.0f} s in all)", file=sys.stderr)


if __name__ == "__main__":
    main()
