"""How fast, and in how much memory, a folder of CelebA-sized images becomes training data.

Generates synthetic JPEG folders (178×218, the size of CelebA's aligned faces; smooth
random fields with noise, so each file is about as large as a CelebA JPEG), then measures:

- preparing (``gantrix data prepare FOLDER --image-size N``, a fresh cache): seconds,
  images/s per worker, the peak memory of the whole process tree (main process and
  workers: their proportional set sizes summed, sampled every 20 ms from /proc, so a page
  shared between processes counts once), the largest single process, and the cache's
  size; the target is a peak ≤ 1.5 × the prepared uint8 data + 300 MB;
- a second run's start: the wall time from launching Python to the end of the first
  64-px dcgan step on the folder (its cache used), with its parts (importing gantrix and
  torch, opening the data, building the models, the step); target ≤ 10 s for 50,000;
- the loader before the cache, for comparison (``--eager``): every image decoded, kept,
  resized and stacked as float32 in one process, as gantrix 0.1 did; its time and peak;
- training: the time of a 64-px dcgan step with the folder (memory-mapped uint8, scaled
  per batch) against the same images as a float32 tensor in memory, interleaved rounds,
  medians; and the time ``next_batch`` itself takes on each.

    python bench/data.py --images 5000 50000 --eager 5000

Prints a Markdown table per measure; nothing here is a test.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

WIDTH, HEIGHT = 178, 218


def _write_images(task: tuple[str, int, int]) -> int:
    """Write images [start, stop) of a synthetic folder; returns the bytes written."""
    from PIL import Image

    folder, start, stop = task
    total = 0
    for i in range(start, stop):
        rng = np.random.default_rng(i)
        coarse = rng.uniform(0, 255, (6, 5, 3)).astype(np.uint8)
        im = Image.fromarray(coarse).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
        pixels = np.asarray(im, np.float32) + rng.normal(0, 6, (HEIGHT, WIDTH, 3))
        path = Path(folder) / f"{i:06d}.jpg"  # one flat folder, as img_align_celeba
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        total += path.stat().st_size
    return total


def make_folder(folder: Path, n: int) -> float:
    """A synthetic folder of ``n`` JPEGs (made once, reused); returns its mean file size."""
    done = folder / ".complete"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        tasks = [(str(folder), s, min(s + 500, n)) for s in range(0, n, 500)]
        with multiprocessing.get_context("spawn").Pool() as pool:
            pool.map(_write_images, tasks)
        done.write_text(str(n))
    sizes = [p.stat().st_size for p in folder.rglob("*.jpg")]
    return statistics.mean(sizes)


def _pss(pid: int) -> int:
    """Proportional set size of ``pid`` in bytes: its private pages plus its share of
    pages it shares (a forked child about to exec, libraries), so a sum over processes
    counts every page once."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tree_memory(pid: int) -> tuple[int, int]:
    """Memory of ``pid`` and its descendants: (sum of PSS, largest single process)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    todo, total, largest = [pid], 0, 0
    while todo:
        p = todo.pop()
        pss = _pss(p)
        total += pss
        largest = max(largest, pss)
        todo.extend(children.get(p, []))
    return total, largest


def measured(command: list[str], env: dict) -> tuple[float, int, int, str]:
    """Run ``command``; its wall seconds, peak memory of its process tree (PSS summed),
    of its largest process, and its output."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0, 0]

    def sample():
        while proc.poll() is None:
            total, largest = _tree_memory(proc.pid)
            peak[0], peak[1] = max(peak[0], total), max(peak[1], largest)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    output = proc.communicate()[0]
    seconds = time.perf_counter() - start
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{output}")
    return seconds, peak[0], peak[1], output


def _eager_load(folder: str, size: int) -> None:
    """The loader before the cache (gantrix 0.1): decode every image and keep it, then
    resize each to float32 and stack them."""
    from PIL import Image

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    images = []
    for path in files:
        with Image.open(path) as im:
            im.load()
            images.append(im.copy())
    arrays = [np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC),
                         dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0 for im in images]
    x = np.stack(arrays)
    print(f"{x.nbytes}")


FIRST_STEP = """
import sys, time
start = time.perf_counter()
from gantrix.trainer import Trainer
imported = time.perf_counter()
from gantrix.data import load_data
data = load_data(sys.argv[1], image_size=int(sys.argv[2]))
opened = time.perf_counter()
trainer = Trainer("dcgan", data, steps=1, progress=False)
built = time.perf_counter()
trainer.fit()
done = time.perf_counter()
print(imported - start, opened - imported, built - opened, done - built)
"""


def first_step(folder: Path, size: int, env: dict) -> tuple[float, list[float]]:
    """A second run's start: wall seconds from launching Python to the end of the first
    dcgan step on the (cached) folder, and its parts: import, open the data, build the
    models, the step."""
    seconds, _, _, out = measured([sys.executable, "-c", FIRST_STEP, str(folder), str(size)], env)
    return seconds, [float(v) for v in out.strip().splitlines()[-1].split()]


def step_times(folder: Path, size: int, rounds: int, steps: int) -> dict[str, tuple[float, float]]:
    """Seconds per dcgan step (and per ``next_batch``) with the folder's memory-mapped uint8
    data and with the same images as an in-memory float32 tensor, in interleaved rounds."""
    from gantrix.data import load_data
    from gantrix.trainer import Trainer

    folder_data = load_data(folder, image_size=size)
    tensor = folder_data.get()  # the same images, float32, in memory
    trainers = {"folder (memory-mapped uint8)": Trainer("dcgan", folder_data, steps=2, progress=False),
                "tensor (float32 in memory)": Trainer("dcgan", tensor, steps=2, progress=False)}
    times: dict[str, list[float]] = {k: [] for k in trainers}
    fetch: dict[str, list[float]] = {k: [] for k in trainers}
    for trainer in trainers.values():
        trainer.fit()  # warm up
    for _ in range(rounds):
        for name, trainer in trainers.items():
            start = trainer.elapsed
            trainer.settings.steps += steps
            trainer.fit()
            times[name].append((trainer.elapsed - start) / steps)
            batch = trainer.settings.batch_size
            t0 = time.perf_counter()
            for _ in range(steps):
                trainer.data.next_batch(batch)
            fetch[name].append((time.perf_counter() - t0) / steps)
    return {name: (statistics.median(times[name]), statistics.median(fetch[name])) for name in trainers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--eager", type=int, nargs="*", default=[5000],
                        help="folder sizes to also load the old way (float32 in memory)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "gantrix-bench-data")
    parser.add_argument("--workers", type=int, nargs="+", default=[os.cpu_count() or 1])
    parser.add_argument("--step-rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="steps per timing round")
    args = parser.parse_args()

    rows, starts, eager = [], [], []
    gantrix = [sys.executable, "-m", "gantrix.cli"]
    for n in args.images:
        folder = args.work / f"jpeg-{n}"
        mean_size = make_folder(folder, n)
        print(f"folder {folder}: {n:,} JPEGs {WIDTH}×{HEIGHT}, {mean_size / 1e3:.1f} kB each", file=sys.stderr)
        for workers in args.workers:
            cache = args.work / f"cache-{n}-{workers}"
            shutil.rmtree(cache, ignore_errors=True)
            env = {**os.environ, "GANTRIX_CACHE": str(cache)}
            seconds, peak, largest, out = measured(
                [*gantrix, "data", "prepare", str(folder), "--image-size", str(args.size),
                 "--workers", str(workers)], env)
            prepared = n * 3 * args.size * args.size
            cached = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
            inside = float(re.search(r"prepared [\d,]+ images .* in ([\d.]+) s", out).group(1))
            rows.append((n, workers, seconds, inside, n / inside / workers, peak, largest, prepared, cached))
            print(out, file=sys.stderr)
        starts.append((n, *first_step(folder, args.size, env)))
        if n in args.eager:
            code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); " \
                   f"import data; data._eager_load({str(folder)!r}, {args.size})"
            seconds, peak, _, out = measured([sys.executable, "-c", code], dict(os.environ))
            eager.append((n, seconds, peak, int(out.strip().splitlines()[-1])))

    print(f"\n### Preparing a folder ({args.size}×{args.size}, a fresh cache)\n")
    print("| images | workers | command, seconds | preparing, seconds | images/s per worker "
          "| peak memory (tree) | largest process | prepared uint8 | target peak (1.5× + 300 MB) "
          "| cache size |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, workers, seconds, inside, rate, peak, largest, prepared, cached in rows:
        target = 1.5 * prepared + 300e6
        print(f"| {n:,} | {workers} | {seconds:.1f} | {inside:.1f} | {rate:,.0f} | {peak / 1e6:,.0f} MB "
              f"{'✓' if peak <= target else '✗'} | {largest / 1e6:,.0f} MB | {prepared / 1e6:,.0f} MB "
              f"| {target / 1e6:,.0f} MB | {cached / 1e6:,.0f} MB |")
    if eager:
        print("\n### The loader before the cache (float32 in memory, one process)\n")
        print("| images | seconds | peak memory | result (float32) |")
        print("|---|---|---|---|")
        for n, seconds, peak, nbytes in eager:
            print(f"| {n:,} | {seconds:.1f} | {peak / 1e6:,.0f} MB | {nbytes / 1e6:,.0f} MB |")
    print("\n### A second run on the same folder (cache used)\n")
    print("| images | launch to first dcgan step done, s (target ≤ 10 for 50,000) | import gantrix "
          "| open the data | build the models | the step |")
    print("|---|---|---|---|---|---|")
    for n, seconds, (imported, opened, built, step) in starts:
        print(f"| {n:,} | {seconds:.1f} | {imported:.1f} | {opened:.2f} | {built:.2f} | {step:.2f} |")
    folder = args.work / f"jpeg-{args.images[0]}"
    os.environ["GANTRIX_CACHE"] = str(args.work / f"cache-{args.images[0]}-{args.workers[0]}")
    times = step_times(folder, args.size, args.step_rounds, args.steps)
    print(f"\n### Training: dcgan at {args.size}×{args.size} on {args.images[0]:,} images "
          f"(median of {args.step_rounds} interleaved rounds of {args.steps} steps)\n")
    print("| data | seconds a step | next_batch alone |")
    print("|---|---|---|")
    for name, (step, fetch) in times.items():
        print(f"| {name} | {step:.3f} | {fetch * 1e3:.2f} ms |")


if __name__ == "__main__":
    main()
