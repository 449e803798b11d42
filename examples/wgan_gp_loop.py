"""A plain PyTorch WGAN-GP loop on 8 Gaussians on a ring, with gantrix.kernels as the penalty.

    python examples/wgan_gp_loop.py --steps 200

The only gantrix call is ``gradient_penalty(critic, real, fake)``: it interpolates, takes the
critic's input gradient with create_graph=True and returns the penalty, whose ``.backward()``
(inside the critic loss) reaches every critic weight. On CUDA it runs Triton kernels. A critic
with extra inputs (a cGAN's labels) gets them as ``critic_kwargs={"labels": y}``, or through a
closure, ``gradient_penalty(lambda x: critic(x, y), real, fake)``.
"""
import argparse
import math

import torch
import torch.nn as nn

from gantrix.kernels import gradient_penalty

CENTERS = 2.0 * torch.tensor([[math.cos(a), math.sin(a)] for a in (k * math.pi / 4 for k in range(8))])


def ring8(n: int, device) -> torch.Tensor:
    """n samples of the mixture: a random center of the ring (radius 2) plus N(0, 0.02²) noise."""
    return CENTERS.to(device)[torch.randint(0, 8, (n,), device=device)] + 0.02 * torch.randn(n, 2, device=device)


def mlp(n_in: int, n_out: int, width: int = 64) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, n_out))


def main(steps: int = 200, batch: int = 128, n_critic: int = 5, seed: int = 0, device: str = "cpu") -> dict:
    torch.manual_seed(seed)
    gen, critic = mlp(2, 2).to(device), mlp(2, 1).to(device)
    opt_g = torch.optim.Adam(gen.parameters(), lr=5e-4, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(critic.parameters(), lr=5e-4, betas=(0.5, 0.9))
    for step in range(1, steps + 1):
        for _ in range(n_critic):
            real = ring8(batch, device)
            with torch.no_grad():
                fake = gen(torch.randn(batch, 2, device=device))
            wasserstein = critic(real).mean() - critic(fake).mean()
            loss_d = -wasserstein + gradient_penalty(critic, real, fake, weight=10.0)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        loss_g = -critic(gen(torch.randn(batch, 2, device=device))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if step % 50 == 0 or step == steps:
            print(f"step {step:5d}  W estimate {wasserstein.item():.4f}  loss_d {loss_d.item():.4f}  "
                  f"loss_g {loss_g.item():.4f}")
    with torch.no_grad():
        sample = gen(torch.randn(2000, 2, device=device)).cpu()
    nearest = torch.cdist(sample, CENTERS).min(dim=1)
    close = nearest.values < 0.3
    modes = int(torch.bincount(nearest.indices[close], minlength=8).gt(20).sum())
    print(f"samples within 0.3 of a mode: {close.float().mean().item():.1%}; modes covered: {modes}/8")
    return {"wasserstein": wasserstein.item(), "loss_d": loss_d.item(), "loss_g": loss_g.item(), "modes": modes}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(1)  # models this small lose more to thread hand-offs than they gain
    main(args.steps, args.batch, seed=args.seed, device=args.device)
