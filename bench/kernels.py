"""Benchmark of gantrix.kernels against eager PyTorch (and torch.compile where it runs).

Not a test. For every op and size, all implementations run in this process on the same random
data (never zeros): wall time per call (what a training loop feels: medians of timed blocks,
the implementations taking turns block by block so that a busy machine slows all alike); on
CUDA also GPU time (CUDA-graph replay, no launch overhead) and the bandwidth achieved against
the memory floor of the op, as a share of a measured device copy. JSON lines as it goes, a
Markdown table last.

    python bench/kernels.py              # the sizes of DESIGN.md §5 (CUDA; on CPU, slowly)
    python bench/kernels.py --quick      # small sizes, for a CPU
    python bench/kernels.py --correctness --json c.json   # fp32/bf16/fp16 against float64
    python bench/kernels.py --first-call --json f.json    # first-call (compile) time per kernel
    python bench/kernels.py --summary DIR                 # one table of the JSON files in DIR
    options: --compile/--no-compile (torch.compile; default on CUDA only), --json PATH,
             --device cpu|cuda, --tiny (the smallest sizes: a rehearsal on CPU)

Implementations: "eager" (the obvious PyTorch code), "compile" (torch.compile of it),
"gantrix" (the public op, backend chosen automatically: Triton on CUDA, PyTorch on CPU) and,
on CUDA, "gantrix-torch" (the public op forced to its PyTorch path).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import date

import torch
import torch.nn as nn
import torch.nn.functional as F

from gantrix.kernels import clip_, gradient_penalty, grad_norm_penalty, relativistic_loss

CUDA = torch.cuda.is_available()
DEV = "cuda" if CUDA else "cpu"


def use_device(name: str) -> None:
    """Run on ``name`` (cpu, cuda or auto) from here on."""
    global CUDA, DEV
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    CUDA, DEV = name == "cuda", name


def sync():
    if CUDA:
        torch.cuda.synchronize()


class Impl:
    """One implementation of a benchmark case: a callable and the GANTRIX_KERNELS it runs under."""

    def __init__(self, name, fn, mode="auto"):
        self.name, self.fn, self.mode = name, fn, mode

    def __call__(self):
        os.environ["GANTRIX_KERNELS"] = self.mode
        return self.fn()


def wall_us(impls, budget_s):
    """Median wall µs per call of each impl; impls take turns (in rotating order), one timed
    block each, so that load from other processes and cache state fall on all alike."""
    per_block = {}
    for impl in impls:  # warm up (compiles), then size blocks to ~10 ms
        for _ in range(3):
            impl()
        sync()
        t = time.perf_counter()
        impl()
        sync()
        per_block[impl.name] = max(1, int(0.01 / max(time.perf_counter() - t, 1e-7)))
    samples = {impl.name: [] for impl in impls}
    end = time.perf_counter() + budget_s
    rounds = 0
    while time.perf_counter() < end or rounds < 5:
        rounds += 1
        for impl in impls[rounds % len(impls):] + impls[:rounds % len(impls)]:  # rotate who goes first
            n = per_block[impl.name]
            os.environ["GANTRIX_KERNELS"] = impl.mode
            sync()
            t = time.perf_counter()
            for _ in range(n):
                impl.fn()
            sync()
            samples[impl.name].append((time.perf_counter() - t) / n * 1e6)
    return {name: statistics.median(s) for name, s in samples.items()}


def graph_us(impl, n=200):
    """GPU µs per call: replay of a CUDA graph holding one call."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            impl()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        impl()
    for _ in range(5):
        graph.replay()
    times = []
    for _ in range(5):
        sync()
        t = time.perf_counter()
        for _ in range(n):
            graph.replay()
        sync()
        times.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(times)


def copy_gbps(tiny=False):
    """Bandwidth of a large device copy (read + write), the ceiling for the ops' memory traffic."""
    n = (1 << 28) if CUDA else (1 << 20) if tiny else (1 << 24)
    x = torch.randn(n, device=DEV)
    y = torch.empty_like(x)
    us = wall_us([Impl("copy", lambda: y.copy_(x))], 0.2 if tiny else 1.0)["copy"]
    return 8 * n / (us * 1e-6) / 1e9


# ------------------------------------------------------------------------------------ cases
def gp_eager(g):
    return 10.0 * ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def ra_sgan_eager(r, f):
    return 0.5 * (F.binary_cross_entropy_with_logits(r - f.mean(), torch.ones_like(r))
                  + F.binary_cross_entropy_with_logits(f - r.mean(), torch.zeros_like(f)))


def maybe_compile(fn, use):
    return torch.compile(fn) if use else None


def gp_cases(sizes, use_compile):
    for b, d in sizes:
        g = torch.randn(b, d, device=DEV, requires_grad=True)
        comp = maybe_compile(gp_eager, use_compile)
        impls = [Impl("eager", lambda: torch.autograd.grad(gp_eager(g), g))]
        if comp:
            impls.append(Impl("compile", lambda: torch.autograd.grad(comp(g), g)))
        impls.append(Impl("gantrix", lambda: torch.autograd.grad(grad_norm_penalty(g), g)))
        if CUDA:
            impls.append(Impl("gantrix-torch", impls[-1].fn, "torch"))
        yield "GP norm fwd+bwd", f"{b} × {d:,}", impls, 12 * b * d


def ra_cases(sizes, use_compile):
    for n in sizes:
        r = torch.randn(n, device=DEV, requires_grad=True)
        f = torch.randn(n, device=DEV, requires_grad=True)
        comp = maybe_compile(ra_sgan_eager, use_compile)
        impls = [Impl("eager", lambda: torch.autograd.grad(ra_sgan_eager(r, f), (r, f)))]
        if comp:
            impls.append(Impl("compile", lambda: torch.autograd.grad(comp(r, f), (r, f))))
        impls.append(Impl("gantrix", lambda: torch.autograd.grad(relativistic_loss(r, f), (r, f))))
        if CUDA:
            impls.append(Impl("gantrix-torch", impls[-1].fn, "torch"))
        yield "RaSGAN D loss fwd+bwd", f"{n:,} logits", impls, 16 * n


def dcgan_critic(ndf, image):
    """DCGAN critic for image×image inputs (64 → four stride-2 convs, 32 → three)."""
    layers, ch, size = [], 3, image
    while size > 4:
        layers += [nn.Conv2d(ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch, ndf, size = ndf, ndf * 2, size // 2
    return nn.Sequential(*layers, nn.Conv2d(ch, 1, 4, 1, 0)).to(DEV)


def clip_cases(sets):
    """Weight clipping of parameters; eager is the obvious loop of the original WGAN code."""
    for name, params in sets:
        numel = sum(p.numel() for p in params)
        flat = torch.cat([p.detach().flatten() for p in params])

        def loop(params=params):
            for p in params:
                p.data.clamp_(-0.01, 0.01)

        @torch.no_grad()
        def foreach(params=params):
            torch._foreach_clamp_min_(params, -0.01)
            torch._foreach_clamp_max_(params, 0.01)

        impls = [Impl("eager", loop), Impl("foreach", foreach),
                 Impl("flat buffer (floor)", lambda flat=flat: flat.clamp_(-0.01, 0.01)),
                 Impl("gantrix", lambda params=params: clip_(params, 0.01))]
        if CUDA:
            impls.append(Impl("gantrix-torch", impls[-1].fn, "torch"))
        yield "clip (in place)", f"{name}: {len(params)} tensors, {numel:,} params", impls, 8 * numel


def critic_step_cases(ndf, image, batch):
    """One WGAN-GP critic step (losses, penalty, backward, Adam) with the eager penalty or ours."""
    def make(penalty):
        torch.manual_seed(0)
        critic = dcgan_critic(ndf, image)
        opt = torch.optim.Adam(critic.parameters(), lr=1e-4, betas=(0.0, 0.9), capturable=CUDA)
        real, fake = torch.randn(2, batch, 3, image, image, device=DEV)
        eps = torch.rand(batch, device=DEV)

        def score(x):  # the DCGAN critic ends in a 4×4 conv: (B, 1, 1, 1), one score a sample
            return critic(x).flatten()

        def step():
            loss = score(fake).mean() - score(real).mean() + penalty(score, real, fake, eps)
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()
        return step

    def eager_penalty(critic, real, fake, eps):
        e = eps.view(-1, 1, 1, 1)
        x_hat = (e * real + (1 - e) * fake).requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
        return gp_eager(g)

    impls = [Impl("eager", make(eager_penalty)),
             Impl("gantrix", make(lambda c, r, f, e: gradient_penalty(c, r, f, eps=e)))]
    if CUDA:
        impls.append(Impl("gantrix-torch", impls[-1].fn, "torch"))
    yield "WGAN-GP critic step", f"DCGAN {image}×{image}, ndf {ndf}, batch {batch}", impls, None


# ------------------------------------------------------------------------- correctness
def _rel(got, want) -> float:
    got, want = got.double(), want.double()
    return float((got - want).norm() / want.norm().clamp_min(1e-300))


#: relative error allowed against float64: float32 arithmetic, bf16/fp16 inputs
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}


def correctness(tiny: bool) -> list[dict]:
    """Each op's Triton path (GANTRIX_KERNELS=triton) in fp32/bf16/fp16 against float64 on
    the same (rounded) inputs: ‖out − ref‖/‖ref‖ of the loss and of the input gradients; clip
    must be exact. Fresh random inputs per check; NaN never passes."""
    os.environ["GANTRIX_KERNELS"] = "triton"
    gp_shape, n_logits, n_clip = ((8, 3, 16, 16), 900, 12) if tiny else ((64, 3, 64, 64), 64 * 30 * 30, 120)
    dtypes = [torch.float32, torch.float16] + ([torch.bfloat16] if CUDA else [])
    rows = []
    for dtype in dtypes:
        tol = TOLERANCE[dtype]
        g = (torch.randn(gp_shape, device=DEV) / gp_shape[-1]).to(dtype).requires_grad_(True)
        g64 = g.detach().double().requires_grad_(True)
        loss, ref = grad_norm_penalty(g), gp_eager(g64)
        (dg,), (dg64,) = torch.autograd.grad(loss, g), torch.autograd.grad(ref, g64)
        errors = {"loss": _rel(loss, ref), "grad": _rel(dg, dg64)}
        rows.append(dict(op="grad_norm_penalty", size="×".join(map(str, gp_shape)), dtype=str(dtype)[6:], **errors))
        r, f = (torch.randn(n_logits, device=DEV).to(dtype).requires_grad_(True) for _ in range(2))
        r64, f64 = (t.detach().double().requires_grad_(True) for t in (r, f))
        loss, ref = relativistic_loss(r, f), ra_sgan_eager(r64, f64)
        grads, grads64 = torch.autograd.grad(loss, (r, f)), torch.autograd.grad(ref, (r64, f64))
        rows.append(dict(op="relativistic_loss (RaSGAN D)", size=f"{n_logits} logits", dtype=str(dtype)[6:],
                         loss=_rel(loss, ref), grad=max(_rel(a, b) for a, b in zip(grads, grads64))))
        gen = torch.Generator().manual_seed(len(rows))
        tensors = [(torch.randn(int(n), generator=gen) * 0.05).to(DEV, dtype)
                   for n in torch.randint(1, 50_000, (n_clip,), generator=gen)]
        want = [t.double().clamp(-0.01, 0.01).to(dtype) for t in tensors]
        clip_(tensors, 0.01)
        exact = all(torch.equal(t, w) for t, w in zip(tensors, want))
        rows.append(dict(op="clip_", size=f"{n_clip} tensors", dtype=str(dtype)[6:], loss=0.0 if exact else 1.0,
                         grad=None))
        for row in rows[-3:]:
            values = [v for v in (row["loss"], row["grad"]) if v is not None]
            row["tolerance"] = 0.0 if row["op"] == "clip_" else tol
            row["ok"] = all(v == v and v <= row["tolerance"] for v in values)  # (NaN fails)
            print(json.dumps(row), flush=True)
    os.environ["GANTRIX_KERNELS"] = "auto"
    print("\n| op | size | dtype | loss rel. error | grad rel. error | tolerance | ok |")
    print("|---|---|---|---:|---:|---:|---|")
    for r in rows:
        grad = "—" if r["grad"] is None else f"{r['grad']:.2e}"
        print(f"| {r['op']} | {r['size']} | {r['dtype']} | {r['loss']:.2e} | {grad} | {r['tolerance']:g} "
              f"| {'yes' if r['ok'] else 'NO'} |")
    return rows


def first_call(tiny: bool) -> list[dict]:
    """The first call of each op on the Triton path (its kernels compiled, with an empty
    Triton cache) against the second call: the compile cost a run pays once."""
    import tempfile

    os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="gantrix-triton-cache-")
    os.environ["GANTRIX_KERNELS"] = "triton"
    from gantrix.kernels import dispatch

    g_big = (64, 3, 64, 64) if not tiny else (4, 3, 40, 40)
    cases = [
        ("grad_norm_penalty, large samples", lambda: torch.randn(g_big, device=DEV, requires_grad=True),
         lambda g: torch.autograd.grad(grad_norm_penalty(g), g), "grad_penalty"),
        ("grad_norm_penalty, small samples", lambda: torch.randn(256, 2, device=DEV, requires_grad=True),
         lambda g: torch.autograd.grad(grad_norm_penalty(g), g), "grad_penalty"),
        ("relativistic_loss, one program", lambda: torch.randn(2, 64, device=DEV).requires_grad_(True),
         lambda x: torch.autograd.grad(relativistic_loss(x[0], x[1]), x), "relativistic"),
        ("relativistic_loss, several programs", lambda: torch.randn(2, 20_000, device=DEV).requires_grad_(True),
         lambda x: torch.autograd.grad(relativistic_loss(x[0], x[1]), x), "relativistic"),
        ("clip_", lambda: [torch.randn(n, device=DEV) for n in (100, 5000, 77)],
         lambda ts: clip_(ts, 0.5), "clip"),
    ]
    rows = []
    for name, make, call, module in cases:
        kernels = [fn for fn in vars(dispatch.triton_op(module)).values() if hasattr(fn, "device_caches")]

        def compiled():
            return sum(len(c[0]) for fn in kernels for c in fn.device_caches.values())
        before = compiled()
        times = []
        for _ in range(2):
            x = make()
            sync()
            start = time.perf_counter()
            call(x)
            sync()
            times.append(time.perf_counter() - start)
        rows.append(dict(op=name, first_s=round(times[0], 3), second_ms=round(times[1] * 1e3, 2),
                         kernels_compiled=compiled() - before))
        print(json.dumps(rows[-1]), flush=True)
    os.environ["GANTRIX_KERNELS"] = "auto"
    print("\n| op (Triton path) | first call s | second call ms | kernels compiled |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['op']} | {r['first_s']} | {r['second_ms']} | {r['kernels_compiled']} |")
    return rows


def summary(folder: str) -> int:
    """One Markdown table of every stage's JSON in ``folder`` (missing stages said so)."""
    from pathlib import Path

    def load(name):
        path = Path(folder) / name
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    lines = ["| part | case | figure |", "|---|---|---|"]
    machine = load("kernels.json") or {}
    if machine.get("device"):
        lines.append(f"| machine | {machine['device']}, torch {machine.get('torch')} | device copy "
                     f"{machine.get('copy_GBps')} GB/s |")
    parts = [("correctness.json", "kernel correctness vs float64",
              lambda r: (f"{r['op']} {r['dtype']} ({r['size']})",
                         f"loss {r['loss']:.1e}, grad {'—' if r['grad'] is None else format(r['grad'], '.1e')}"
                         f" (tol {r['tolerance']:g}): {'ok' if r['ok'] else 'FAIL'}")),
             ("kernels.json", "kernel time vs eager",
              lambda r: (f"{r['op']}, {r['size']}, {r['impl']}",
                         f"wall {r['wall_us']} µs ({r['wall_x']}× eager); GPU "
                         f"{r.get('gpu_us', '—')} µs ({r.get('gpu_x', '—')}× eager)"
                         + (f"; {r['pct_copy']} % of copy" if 'pct_copy' in r else ""))),
             ("steps.json", "training step",
              lambda r: (f"{r['recipe']}, batch {r['batch']}, {r['impl']}",
                         f"{r['steps_per_s']} steps/s ({r['x_eager']}× hand-written); GPU busy "
                         f"{'—' if r['gpu_busy_pct'] is None else r['gpu_busy_pct']} %")),
             ("agreement.json", "precision vs fp32",
              lambda r: (f"{r['precision']}, {r['steps']} wgan-gp steps",
                         f"loss curves {r['loss_curve_rel_diff']} (rel. mean abs diff), "
                         f"outputs {r['output_rel_diff']} (rel. L2)")),
             ("first_call.json", "first call (compile)",
              lambda r: (r["op"], f"{r['first_s']} s, then {r['second_ms']} ms "
                                  f"({r['kernels_compiled']} kernels compiled)"))]
    for name, part, fmt in parts:
        data = load(name)
        if data is None:
            lines.append(f"| {part} | — | missing: the stage failed or timed out (see its log) |")
            continue
        for row in data["rows"]:
            case, figure = fmt(row)
            lines.append(f"| {part} | {case} | {figure} |")
    print("\n".join(lines))
    return 0


# ------------------------------------------------------------------------------------ driver
def main():
    parser = argparse.ArgumentParser(description="gantrix.kernels vs eager PyTorch")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a CPU")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=CUDA,
                        help="also time torch.compile of the eager code (default: on CUDA only)")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of timing per case")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    parser.add_argument("--json", help="write the rows here as JSON")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--tiny", action="store_true", help="the smallest sizes (a CPU rehearsal)")
    parser.add_argument("--correctness", action="store_true", help="fp32/bf16/fp16 against float64, then exit")
    parser.add_argument("--first-call", action="store_true", help="first-call time per op, then exit")
    parser.add_argument("--summary", metavar="DIR", help="one table of the JSON files in DIR, then exit")
    args = parser.parse_args()
    if args.summary:
        return summary(args.summary)
    use_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.correctness or args.first_call:
        rows = correctness(args.tiny) if args.correctness else first_call(args.tiny)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(dict(rows=rows), fh, indent=1)
        return 1 if args.correctness and not all(r["ok"] for r in rows) else 0
    if args.tiny:
        gp_sizes, ra_sizes = [(8, 3 * 16 * 16)], [64]
        step = dict(ndf=4, image=16, batch=4)
        clip_counts = [("random sizes", (12, 100, 5_000))]
    elif args.quick:
        gp_sizes, ra_sizes = [(64, 3 * 32 * 32), (64, 3 * 64 * 64)], [64, 64 * 30 * 30]
        step = dict(ndf=16, image=32, batch=16)
        clip_counts = [("DCGAN-64 critic", None), ("random sizes", (120, 1_000, 40_000))]
    else:
        gp_sizes, ra_sizes = [(64, 3 * 64 * 64), (64, 3 * 256 * 256)], [64, 4096, 64 * 30 * 30]
        step = dict(ndf=64, image=64, batch=64)
        clip_counts = [("DCGAN-64 critic", None), ("random sizes", (120, 1_000, 400_000))]
    sets = []
    for name, spec in clip_counts:
        if spec is None:
            net = dcgan_critic(64, 64)
            sets.append((name, list(net.parameters())))
        else:
            count, lo, hi = spec
            gen = torch.Generator().manual_seed(1)
            sizes = torch.randint(lo, hi, (count,), generator=gen).tolist()
            sets.append((name, [nn.Parameter(torch.randn(n, device=DEV)) for n in sizes]))

    copy = copy_gbps(args.tiny)
    info = dict(device=torch.cuda.get_device_name() if CUDA else f"CPU ({os.cpu_count()} cores, "
                f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()})",
                torch=torch.__version__, date=str(date.today()), copy_GBps=round(copy, 1))
    print(json.dumps(info), flush=True)
    rows = []
    cases = [gp_cases(gp_sizes, args.compile), ra_cases(ra_sizes, args.compile), clip_cases(sets),
             critic_step_cases(**step)]
    for generator in cases:
        for op, size, impls, floor_bytes in generator:
            walls = wall_us(impls, args.budget)
            for impl in impls:
                row = dict(op=op, size=size, impl=impl.name, wall_us=round(walls[impl.name], 1),
                           wall_x=round(walls["eager"] / walls[impl.name], 2))
                if CUDA:
                    try:
                        row["gpu_us"] = round(graph_us(impl), 1)
                    except Exception as err:  # e.g. a compiled double backward refusing capture
                        row["gpu_error"] = repr(err)[:160]
                if floor_bytes:
                    us = row.get("gpu_us", row["wall_us"])
                    row["GBps"] = round(floor_bytes / (us * 1e-6) / 1e9, 1)
                    row["pct_copy"] = round(100 * row["GBps"] / copy)
                rows.append(row)
                print(json.dumps(row), flush=True)
    for row in rows:
        eager = next(r for r in rows if r["op"] == row["op"] and r["size"] == row["size"] and r["impl"] == "eager")
        if "gpu_us" in row and "gpu_us" in eager:
            row["gpu_x"] = round(eager["gpu_us"] / row["gpu_us"], 2)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(info, rows=rows), fh, indent=1)
    print_table(info, rows)


def print_table(info, rows):
    print(f"\n{info['date']} · {info['device']} · torch {info['torch']} · "
          f"device copy {info['copy_GBps']} GB/s\n")
    print("| op | size | impl | wall µs/call | × eager (wall) | GPU µs (graph) | × eager (GPU) "
          "| GB/s at floor | % of copy |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        gpu = r.get("gpu_us", "n/a (capture failed)" if "gpu_error" in r else "—")
        print(f"| {r['op']} | {r['size']} | {r['impl']} | {r['wall_us']:,} | {r['wall_x']} | {gpu} | "
              f"{r.get('gpu_x', '—')} | {r.get('GBps', '—')} | {r.get('pct_copy', '—')} |")


if __name__ == "__main__":
    sys.exit(main())
