"""Compile every Triton kernel of gantrix.kernels for NVIDIA GPUs, on a machine without one.

The interpreter tests run the kernels' code on CPU, but Triton's interpreter is lenient: it
never lowers a kernel to GPU code, so type errors, unsupported ops and register spills only
show on a real compile. Triton's compiler itself needs no GPU (the wheel ships ``ptxas``), only
a target. This script gives it one (a stand-in for the CUDA driver that reports the chosen
compute capability), runs the public ops' own Triton ``autograd.Function``s on CPU tensors with
every launch turned into a compile-only warm-up, and so compiles exactly the specialisations
real calls ask for (dtypes, constexpr flags, pointer alignment), down to a cubin per kernel.

Then it reads each cubin's resources (``cuobjdump -res-usage``: registers, stack frame),
counts the global loads and stores in its PTX (16-byte vector or scalar), and prints one row
per compiled kernel. It exits non-zero when a kernel fails to compile or spills more than a
few bytes (``--max-local``).

    python bench/compile_cuda.py                # sm_90 (H100/H200) and sm_80 (A100)
    python bench/compile_cuda.py --arch 90 --quick
    python bench/compile_cuda.py --arch 90 --clip-tensors 10 120   # clip_'s compile time only

``--clip-tensors N ...`` times the first call of ``clip_`` on N tensors of random sizes, each
count from a cold start (in-memory kernel cache cleared, a fresh on-disk Triton cache), and then
a second list of the same count with other sizes (does a new parameter list compile again?).

Nothing is launched and no GPU is needed; timings of the kernels need ``bench/kernels.py`` on a
GPU. This leans on Triton internals (the driver interface and ``JITFunction.run``) as of
Triton 3.x.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)  # must be off before triton is imported: compile for real

import torch  # noqa: E402
import triton  # noqa: E402

# Exit status when this Triton lacks what the stand-in needs (not a fault of the kernels).
NO_HARNESS = 3
try:
    from triton.backends.compiler import GPUTarget
    from triton.backends.driver import DriverBase
    from triton.backends.nvidia.compiler import CUDABackend  # noqa: F401  (the NVIDIA backend)
    from triton.runtime.driver import driver
    from triton.runtime.jit import JITFunction
except ImportError as error:
    print(f"triton {triton.__version__} lacks the internals this stand-in needs: {error}", file=sys.stderr)
    sys.exit(NO_HARNESS)


class CompileOnlyCuda(DriverBase):
    """A CUDA "driver" that only names a target: enough for Triton to compile, not to launch."""

    def __init__(self, capability: int):
        self.capability = capability

    @staticmethod
    def is_active():
        return True

    def map_python_to_cpp_type(self, ty: str) -> str:
        return ty

    def get_current_target(self):
        return GPUTarget("cuda", self.capability, 32)

    def get_active_torch_device(self):
        return torch.device("cpu")

    def get_benchmarker(self):
        raise RuntimeError("compile-only target: nothing can be timed")

    def get_current_device(self):
        return self.capability  # one kernel cache per target

    def get_current_stream(self, device):
        return 0


def compile_only(run):
    """``JITFunction.run`` that compiles (and caches) the launch's specialisation, never launches."""
    def run_as_warmup(self, *args, grid, warmup, **kwargs):
        return run(self, *args, grid=grid, warmup=True, **kwargs)
    return run_as_warmup


def exercise(quick: bool) -> None:
    """Call every op's Triton Function on CPU tensors in the layouts and dtypes users pass."""
    from gantrix.kernels import clip as clip_mod
    from gantrix.kernels import grad_penalty, relativistic

    dtypes = (torch.float32, torch.bfloat16) if quick else (torch.float32, torch.float16, torch.bfloat16)
    # aligned rows, odd rows, 1-d, small samples read by one launch (2-D points, 8×8 digits)
    penalty_shapes = [(64, 3, 64, 64), (5, 3, 17, 13), (7,), (256, 2), (64, 1, 8, 8)]
    for dtype in dtypes:
        for shape in penalty_shapes:
            grads = [torch.randn(shape, dtype=dtype)]
            if len(shape) == 4:
                grads.append(grads[0].to(memory_format=torch.channels_last))
            for g in grads:
                for one_sided in (False, True):
                    g.requires_grad_(True)
                    loss = grad_penalty.GradNormPenalty.apply(g, 1.0, 10.0, one_sided)
                    loss.backward()
        for n in ((1001, 5120) if quick else (64, 1001, 5120)):  # one program (odd, aligned), several
            real, fake = (torch.randn(n, dtype=dtype, requires_grad=True) for _ in range(2))
            for kind in relativistic.KINDS:
                for average in (True, False):
                    for for_generator in (False, True):
                        loss = relativistic.RelativisticLoss.apply(real, fake, kind, average, for_generator)
                        loss.backward()
        sizes = [4 * 64 * 4 * 4, 64, 128 * 64 * 4 * 4, 128, 1, 7, 1001]
        clip_mod.clip_([torch.randn(n, dtype=dtype) for n in sizes], 0.01)
    if not quick:  # a 120-tensor list, as in the benchmark (the same kernel as for 7: no recompile)
        gen = torch.Generator().manual_seed(0)
        sizes = torch.randint(1000, 40_000, (120,), generator=gen).tolist()
        clip_mod.clip_([torch.randn(n) for n in sizes], 0.01)


def clip_compile_seconds(counts, capability: int) -> list[tuple[int, float, float, int]]:
    """(count, first call s, another list of that count s, kernels compiled) per tensor count,
    each from a cold start: the clip kernels' in-memory caches cleared and a fresh on-disk
    Triton cache."""
    from gantrix.kernels import clip as clip_mod

    kernels = [fn for fn in vars(clip_mod).values() if isinstance(fn, JITFunction)]
    rows = []
    for count in counts:
        gen = torch.Generator().manual_seed(count)
        lists = [[torch.randn(n) for n in torch.randint(1000, 40_000, (count,), generator=gen).tolist()]
                 for _ in range(2)]
        with tempfile.TemporaryDirectory() as cache:
            os.environ["TRITON_CACHE_DIR"] = cache
            for fn in kernels:
                fn.device_caches.clear()
            times = []
            for tensors in lists:
                start = time.perf_counter()
                clip_mod.clip_(tensors, 0.01)
                times.append(time.perf_counter() - start)
            compiled = sum(len(fn.device_caches[capability][0]) for fn in kernels
                           if capability in fn.device_caches)
        rows.append((count, times[0], times[1], compiled))
    return rows


def compiled_kernels(capability: int):
    """Every kernel compiled for ``capability`` so far, as (name, CompiledKernel)."""
    from gantrix.kernels import clip as clip_mod
    from gantrix.kernels import grad_penalty, relativistic

    for module in (grad_penalty, relativistic, clip_mod):
        for name, fn in sorted(vars(module).items()):
            if isinstance(fn, JITFunction) and capability in fn.device_caches:
                for kernel in fn.device_caches[capability][0].values():
                    yield name, kernel


def resources(cubin: bytes) -> dict[str, int]:
    """REG, STACK (the stack frame: spilled registers live there), SHARED and LOCAL of the cubin
    Triton built, read by the ``cuobjdump -res-usage`` that Triton ships."""
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([str(tool), "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    return {key: int(value) for key, value in re.findall(r"\b(REG|STACK|SHARED|LOCAL):(\d+)", out)}


def describe(kernel) -> str:
    """The specialisation a kernel was compiled for: dtypes of pointers, constexpr values."""
    src = kernel.src
    pointers = sorted({ty for ty in _flatten(src.signature.values()) if ty.startswith("*")})
    consts = [f"{src.fn.arg_names[path[0]]}={value}" for path, value in sorted(src.constants.items())
              if len(path) == 1 and src.fn.arg_names[path[0]] not in ("BLOCK", "CHUNK", "BLOCK_B", "BLOCK_P")]
    n_ptr_args = sum(ty.startswith("*") for ty in _flatten(src.signature.values()))
    return " ".join([",".join(pointers) + f"×{n_ptr_args}"] + consts)


def _flatten(values):
    for value in values:
        if isinstance(value, tuple):
            yield from _flatten(value)
        else:
            yield value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, nargs="+", default=[90, 80],
                        help="compute capabilities to compile for (90 = H100/H200, 80 = A100)")
    parser.add_argument("--quick", action="store_true", help="float32 and bfloat16 only, no 120-tensor clip")
    parser.add_argument("--max-local", type=int, default=16,
                        help="bytes of stack and local memory per thread a kernel may use (spills) before "
                             "it counts as a problem; older Triton releases spill a few bytes in places")
    parser.add_argument("--clip-tensors", type=int, nargs="+",
                        help="only time clip_'s first call (its compile) for these tensor counts")
    args = parser.parse_args(argv)

    original_run = JITFunction.run
    JITFunction.run = compile_only(original_run)
    if args.clip_tensors:
        try:
            print("| sm | tensors | first call s (compile) | another list of as many s | kernels compiled |")
            print("|---|---:|---:|---:|---:|")
            for capability in args.arch:
                driver.set_active(CompileOnlyCuda(capability))
                for count, first, second, compiled in clip_compile_seconds(args.clip_tensors, capability):
                    print(f"| {capability} | {count} | {first:.2f} | {second:.2f} | {compiled} |", flush=True)
        finally:
            JITFunction.run = original_run
        return 0
    problems = []
    rows = []
    try:
        for capability in args.arch:
            driver.set_active(CompileOnlyCuda(capability))
            start = time.perf_counter()
            exercise(args.quick)
            seconds = time.perf_counter() - start
            kernels = list(compiled_kernels(capability))
            print(f"sm_{capability}: {len(kernels)} kernels compiled in {seconds:.1f} s", flush=True)
            for name, kernel in kernels:
                res = resources(kernel.asm["cubin"])
                ptx = kernel.asm["ptx"]
                access = Counter(".v" in op for op in re.findall(r"\b(?:ld|st)\.global\S*", ptx))
                local = res.get("STACK", 0) + res.get("LOCAL", 0)
                row = (capability, name, describe(kernel), kernel.metadata.num_warps, res.get("REG", 0),
                       res.get("STACK", 0), res.get("LOCAL", 0), access[True], access[False])
                rows.append(row)
                if local > args.max_local:
                    problems.append(f"sm_{capability} {name} [{row[2]}] uses {local} bytes of local memory "
                                    f"(spilled registers): {res}")
    except Exception as error:  # a compile error: the point of this script is to report it
        problems.append(f"compile failed: {type(error).__name__}: {error}")
    finally:
        JITFunction.run = original_run

    print("| sm | kernel | specialisation | warps | registers | stack bytes | local bytes | vector ld/st "
          "| scalar ld/st |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for capability, name, spec, warps, regs, stack, local, vectors, scalars in rows:
        print(f"| {capability} | {name} | {spec} | {warps} | {regs} | {stack} | {local} | {vectors} | {scalars} |")
    for problem in problems:
        print("PROBLEM:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
