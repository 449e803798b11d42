"""Step time of mixed precision against float32: the DCGAN-64 wgan-gp step.

The wgan-gp recipe on 64×64 RGB images (random, in [-1, 1]: the step's cost does not depend
on what the images show), width 64, batch 64 and its five critic updates, once per
``--precision`` in interleaved rounds on the same machine; the time of ``--steps`` steps is
taken between device synchronisations, after a warm-up, and the median over ``--rounds``
is reported with its ratio to float32 (the target on a GPU: bf16 and fp16 ≥ 1.5× fp32).

    python bench/precision.py                      # GPU when there is one, else CPU
    python bench/precision.py --device cpu --steps 2 --rounds 2
    python bench/precision.py --train-steps --json steps.json      # the whole step, 3 ways
    python bench/precision.py --agreement 200 --json agree.json    # bf16/fp16 against fp32

``--train-steps``: steps/s of gantrix's DCGAN-64 ``wgan-gp`` and ``rasgan`` at each
``--batches`` size, with ``GANTRIX_KERNELS=triton`` (auto on CPU) and ``=torch``, and of a
hand-written eager loop with the same models (deep copies) and optimizer settings; on CUDA
also the GPU-busy share (kernel time per step from the profiler over wall time per step
unprofiled): under ~90 % the step is host-bound.

``--agreement N``: the wgan-gp run of N steps in fp32, bf16 and fp16 from the same seed:
the loss curves' mean absolute difference from fp32's (logged every 10 steps, relative to
fp32's mean absolute loss) and the generator's output difference at the end
(‖x − x_fp32‖ / ‖x_fp32‖ on 64 samples of one latent set).

"fp32" on CUDA is what PyTorch's TF32 flags make it: by default cuDNN runs float32
convolutions in TF32 (10-bit mantissa) and matrix products in IEEE float32. ``--tf32 on|off``
sets both flags (``default`` leaves them); the header prints the state the run had, so the
fp32 row says which fp32 it timed. On the CPU float32 is always IEEE.

On a CPU fp16 autocast has no fast kernels, so it is slower there; the figure that
matters is the GPU's. Nothing here is a test.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time

import torch

from gantrix.precision import TF32_CHOICES, describe_tf32, set_tf32
from gantrix.trainer import Trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _trainer(recipe, images, args, **kw):
    kw = {"steps": 2, "batch_size": args.batch_size, "width": args.width, "device": args.device,
          "log_every": 10_000, "sample_every": 0, "progress": False, **kw}
    return Trainer(recipe, images, **kw)


def _eager_loop(trainer, recipe: str, batch: int):
    """One training step written by hand (the obvious PyTorch code) with deep copies of the
    trainer's models: wgan-gp (5 critic updates with the penalty, Adam(1e-4, (0, 0.9))) or
    rasgan (one critic update, Adam(2e-4, (0.5, 0.999))); real batches indexed on the device."""
    device = trainer.device
    gen, critic = copy.deepcopy(trainer.models.generator), copy.deepcopy(trainer.models.discriminator)
    wgan = recipe == "wgan-gp"
    lr, betas, n_critic = (1e-4, (0.0, 0.9), 5) if wgan else (2e-4, (0.5, 0.999), 1)
    opt_d = torch.optim.Adam(critic.parameters(), lr=lr, betas=betas)
    opt_g = torch.optim.Adam(gen.parameters(), lr=lr, betas=betas)
    data = (torch.rand(1024, 3, trainer.data.shape[-1], trainer.data.shape[-1], device=device) * 2 - 1)
    dim = trainer.spec.latent_dim
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def rasgan(d_real, d_fake, real_target: float):
        """RaSGAN's loss: real logits against ``real_target``, fakes against the other."""
        return 0.5 * (bce(d_real - d_fake.mean(), torch.full_like(d_real, real_target))
                      + bce(d_fake - d_real.mean(), torch.full_like(d_fake, 1 - real_target)))

    def score(x):
        return critic(x).reshape(x.shape[0], -1).mean(1)

    def real_batch():
        return data[torch.randint(0, data.shape[0], (batch,), device=device)]

    def step():
        for _ in range(n_critic):
            real = real_batch()
            with torch.no_grad():
                fake = gen(torch.randn(batch, dim, device=device))
            d_real, d_fake = score(real), score(fake)
            if wgan:
                eps = torch.rand(batch, 1, 1, 1, device=device)
                x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
                (g,) = torch.autograd.grad(score(x_hat).sum(), x_hat, create_graph=True)
                loss = d_fake.mean() - d_real.mean() + 10.0 * ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
            else:
                loss = rasgan(d_real, d_fake, 1.0)
            opt_d.zero_grad(set_to_none=True)
            loss.backward()
            opt_d.step()
        for p in critic.parameters():
            p.requires_grad_(False)
        d_fake = score(gen(torch.randn(batch, dim, device=device)))
        if wgan:
            loss_g = -d_fake.mean()
        else:
            d_real = score(real_batch())
            loss_g = rasgan(d_real, d_fake, 0.0)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        for p in critic.parameters():
            p.requires_grad_(True)
    return step


def _busy_share(run_steps, n: int, seconds_per_step: float, device) -> float | None:
    """GPU kernel time per step (profiler) over the unprofiled wall time per step."""
    if device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run_steps(n)
        _sync(device)
    kernel_us = sum(e.self_device_time_total for e in prof.key_averages())
    return kernel_us * 1e-6 / n / seconds_per_step


def train_steps(args) -> list[dict]:
    """steps/s of gantrix (triton, torch) and of the hand-written loop, per recipe and batch."""
    rows = []
    on_cuda = _resolve(args.device).type == "cuda"
    for recipe in args.recipes:
        for batch in args.batches:
            images = torch.rand(max(4 * batch, 256), 3, args.size, args.size,
                                generator=torch.Generator().manual_seed(0)) * 2 - 1
            trainer = None
            for impl in ("triton" if on_cuda else "auto", "torch", "eager"):
                if impl != "eager":
                    os.environ["GANTRIX_KERNELS"] = impl
                    trainer = _trainer(recipe, images, args, batch_size=batch)
                    device = trainer.device

                    def run_steps(n, trainer=trainer):
                        trainer.settings.steps += n
                        trainer.fit()
                else:
                    os.environ["GANTRIX_KERNELS"] = "torch"
                    loop = _eager_loop(trainer, recipe, batch)

                    def run_steps(n, loop=loop):
                        for _ in range(n):
                            loop()
                run_steps(2)  # warm-up: kernels compiled, caches filled
                times = []
                for _ in range(args.rounds):
                    _sync(device)
                    start = time.perf_counter()
                    run_steps(args.steps)
                    _sync(device)
                    times.append((time.perf_counter() - start) / args.steps)
                per_step = statistics.median(times)
                busy = _busy_share(run_steps, args.steps, per_step, device)
                row = dict(recipe=recipe, batch=batch, impl="gantrix " + impl if impl != "eager" else
                           "hand-written eager", ms_per_step=round(per_step * 1e3, 2),
                           steps_per_s=round(1 / per_step, 2),
                           gpu_busy_pct=None if busy is None else round(100 * busy, 1))
                rows.append(row)
                print(json.dumps(row), flush=True)
            os.environ.pop("GANTRIX_KERNELS", None)
    for row in rows:
        eager = next(r for r in rows if r["recipe"] == row["recipe"] and r["batch"] == row["batch"]
                     and r["impl"] == "hand-written eager")
        row["x_eager"] = round(row["steps_per_s"] / eager["steps_per_s"], 2)
    print("\n| recipe | batch | implementation | ms a step | steps/s | × hand-written eager | GPU busy % |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in rows:
        busy = "—" if r["gpu_busy_pct"] is None else r["gpu_busy_pct"]
        print(f"| {r['recipe']} | {r['batch']} | {r['impl']} | {r['ms_per_step']} | {r['steps_per_s']} "
              f"| {r['x_eager']} | {busy} |")
    return rows


def agreement(args) -> list[dict]:
    """bf16 and fp16 against fp32 over ``args.agreement`` wgan-gp steps from one seed."""
    images = torch.rand(1024, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    runs = {}
    for p in args.precisions:
        trainer = _trainer("wgan-gp", images, args, steps=args.agreement, precision=p, seed=0,
                           log_every=10)
        trainer.fit()
        losses = [[row[k] for k in sorted(row) if k in ("d_loss", "g_loss")] for row in trainer.history]
        runs[p] = (torch.tensor(losses, dtype=torch.float64), trainer.sample(64, seed=1).double())
    base_losses, base_x = runs["fp32"]
    rows = []
    for p, (losses, x) in runs.items():
        scale = base_losses.abs().mean().clamp_min(1e-12)
        rows.append(dict(precision=p, steps=args.agreement,
                         loss_curve_rel_diff=round(float((losses - base_losses).abs().mean() / scale), 4),
                         final_loss=[round(v, 4) for v in losses[-1].tolist()],
                         output_rel_diff=round(float((x - base_x).norm() / base_x.norm()), 4)))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n| precision | steps | loss curves: mean abs Δ / mean abs fp32 loss | final d_loss, g_loss "
          f"| generator output ‖Δ‖/‖fp32‖ |")
    print("|---|---:|---:|---|---:|")
    for r in rows:
        print(f"| {r['precision']} | {r['steps']} | {r['loss_curve_rel_diff']} | {r['final_loss']} "
              f"| {r['output_rel_diff']} |")
    return rows


def _resolve(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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
    parser.add_argument("--train-steps", action="store_true",
                        help="steps/s of the whole step: gantrix (triton, torch) and a hand-written loop")
    parser.add_argument("--recipes", nargs="+", default=["wgan-gp", "rasgan"])
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--agreement", type=int, metavar="STEPS",
                        help="bf16/fp16 against fp32 over STEPS wgan-gp steps (loss curves, outputs)")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    set_tf32(args.tf32)
    print(describe_tf32(), flush=True)
    if args.train_steps or args.agreement:
        rows = train_steps(args) if args.train_steps else agreement(args)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(dict(tf32=describe_tf32(), rows=rows), fh, indent=1)
        return

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
