"""Step time of mixed precision against float32: the DCGAN-64 wgan-gp step.

The wgan-gp recipe on 64×64 RGB images (random, in [-1, 1]: the step's cost does not depend
on what the images show), width 64, batch 64 and its five critic updates, once per
``--precision`` in interleaved rounds on the same machine; the time of ``--steps`` steps is
taken between device synchronisations, after a warm-up, and the median over ``--rounds``
is reported with its ratio to float32 (the target on a GPU: bf16 and fp16 ≥ 1.5× fp32).

    python bench/precision.py                      # GPU when there is one, else CPU
    python bench/precision.py --device cpu --steps 2 --rounds 2

"fp32" on CUDA is what PyTorch's TF32 flags make it: by default cuDNN runs float32
convolutions in TF32 (10-bit mantissa) and matrix products in IEEE float32. ``--tf32 on|off``
sets both flags (``default`` leaves them); the header prints the state the run had, so the
fp32 row says which fp32 it timed. On the CPU float32 is always IEEE.

On a CPU fp16 autocast has no fast kernels, so it is slower there; the figure that
matters is the GPU's. Nothing here is a test.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from gantrix.precision import TF32_CHOICES, describe_tf32, set_tf32
from gantrix.trainer import Trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"])
    parser.add_argument("--tf32", choices=TF32_CHOICES, default="default",
                        help="TF32 for float32 convolutions and matrix products on CUDA (default: "
                             "PyTorch's flags as they are: TF32 convolutions)")
    args = parser.parse_args()
    set_tf32(args.tf32)

    images = torch.rand(2048, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    trainers = {p: Trainer("wgan-gp", images, steps=2, batch_size=args.batch_size, width=args.width,
                           device=args.device, precision=p, log_every=10_000, sample_every=0,
                           progress=False)
                for p in args.precisions}
    device = next(iter(trainers.values())).device
    times: dict[str, list[float]] = {p: [] for p in trainers}
    for trainer in trainers.values():
        trainer.fit()  # warm-up: kernels chosen, caches filled
    for _ in range(args.rounds):
        for p, trainer in trainers.items():
            trainer.settings.steps += args.steps
            _sync(device)
            start = time.perf_counter()
            trainer.fit()
            _sync(device)
            times[p].append((time.perf_counter() - start) / args.steps)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\nwgan-gp step, {args.size}×{args.size} RGB, batch {args.batch_size}, width {args.width}, "
          f"{name}; median of {args.rounds} rounds of {args.steps} steps")
    print(describe_tf32() if device.type == "cuda" else "fp32 on the CPU = IEEE fp32 (TF32 is CUDA's)")
    print()
    print("| precision | ms a step | speed-up over fp32 |")
    print("|---|---|---|")
    base = statistics.median(times["fp32"]) if "fp32" in times else None
    for p, values in times.items():
        median = statistics.median(values)
        ratio = f"{base / median:.2f}×" if base else "—"
        label = p if p != "fp32" or device.type != "cuda" else (
            "fp32 (TF32 convs)" if torch.backends.cudnn.allow_tf32 else "fp32 (IEEE)")
        print(f"| {label} | {median * 1e3:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
