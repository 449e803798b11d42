"""Host time of the Triton ops per call, measured on a machine without a GPU.

Small GAN ops are host-bound on a GPU: what the Python side spends per call (argument
checks, allocations, the autograd Function, Triton's launcher binding the arguments) sets
their wall time, not the kernels. This script measures that side on CPU: the launches are
turned into compile-only warm-ups against a stand-in CUDA target (see ``compile_cuda.py``),
so everything Triton does per launch runs except the driver's own launch call, and nothing
computes (outputs are left uninitialised; inputs are CPU tensors).

It prints, per op and size: launches per forward+backward and host µs per call (best of
several timed blocks; this omits the driver launch, a few µs each, and the CUDA allocator).

    python bench/host_overhead.py
"""
from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import compile_cuda  # noqa: E402  (switches Triton's interpreter off before triton loads)

import torch  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402


def counting_launches(run, counter):
    def run_counted(self, *args, grid, warmup, **kwargs):
        counter[0] += 1
        return run(self, *args, grid=grid, warmup=warmup, **kwargs)
    return run_counted


def cases():
    """(op, size, one call as a zero-argument function): the sizes of ``bench/kernels.py``."""
    from gantrix.kernels import clip as clip_mod
    from gantrix.kernels import grad_penalty, relativistic

    def penalty(shape):
        g = torch.randn(shape, requires_grad=True)
        return lambda: torch.autograd.grad(grad_penalty.GradNormPenalty.apply(g, 1.0, 10.0, False), g)

    def rasgan(n):
        r, f = torch.randn(n, requires_grad=True), torch.randn(n, requires_grad=True)
        return lambda: torch.autograd.grad(relativistic.RelativisticLoss.apply(r, f, "sgan", True, False), (r, f))

    def clip(sizes):
        tensors = [torch.randn(n) for n in sizes]
        return lambda: clip_mod.clip_(tensors, 0.01)

    gen = torch.Generator().manual_seed(0)
    random_sizes = torch.randint(1_000, 400_000, (120,), generator=gen).tolist()
    dcgan64 = [3 * 64 * 16, 64 * 128 * 16, 128, 128, 128 * 256 * 16, 256, 256, 256 * 512 * 16, 512, 512 * 16]
    yield "GP norm fwd+bwd", "256 × 2 (2-D points)", penalty((256, 2))
    yield "GP norm fwd+bwd", "64 × 3·64·64", penalty((64, 3, 64, 64))
    yield "RaSGAN D loss fwd+bwd", "64 logits", rasgan(64)
    yield "RaSGAN D loss fwd+bwd", "57,600 logits", rasgan(57_600)
    yield "clip (in place)", "10 tensors (DCGAN-64 critic)", clip(dcgan64)
    yield "clip (in place)", "120 tensors (random sizes)", clip(random_sizes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capability", type=int, default=90, help="the stand-in GPU target (90 = H100)")
    parser.add_argument("--number", type=int, default=200, help="calls per timed block")
    parser.add_argument("--repeat", type=int, default=15, help="timed blocks; the best is reported")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # host cost of one Python thread; no intra-op pool to wake
    counter = [0]
    JITFunction.run = counting_launches(compile_cuda.compile_only(JITFunction.run), counter)
    compile_cuda.driver.set_active(compile_cuda.CompileOnlyCuda(args.capability))
    print("| op | size | launches per call | host µs per call |")
    print("|---|---|---:|---:|")
    for op, size, call in cases():
        call()  # compile
        counter[0] = 0
        call()
        launches = counter[0]
        best = min(timeit.repeat(call, number=args.number, repeat=args.repeat)) / args.number
        print(f"| {op} | {size} | {launches} | {best * 1e6:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
