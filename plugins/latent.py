"""The generator's prior: what its latent vectors are drawn from.

The core draws z ~ N(0, I). DCGAN's reference code, and the VEEGAN and PacGAN Stacked-MNIST
experiments built on it, draw z ~ U(−1, 1) instead. The prior is part of the model: a
generator trained on one prior and sampled from another makes different (usually worse)
samples, so the trick answers `gantrix_latent` for training, the shape probe, and
`gantrix sample`/`eval` alike, and a run cannot be sampled without it.
"""
from __future__ import annotations

import torch

from gantrix.plugin import Param, Policy, hookimpl


class UniformLatent(Policy):
    """Draw the generator's latent vectors uniformly from the cube [−bound, bound]^d
    (DCGAN's reference code: ``np.random.uniform(-1, 1, [batch_size, z_dim])``).

    Each coordinate has variance bound² / 3, against 1 for the default N(0, I); with the
    default bound 1, |z| concentrates near √(d/3) instead of √d.
    """

    name = "uniform-latent"
    summary = "z ~ U(-1, 1) per coordinate instead of N(0, 1) (DCGAN's reference code)"
    paper = ("Radford, Metz & Chintala 2015, DCGAN, reference code carpedm20/DCGAN-tensorflow "
             "(batch_z uniform in [-1, 1]); VEEGAN and PacGAN Table 2 (Lin et al. 2018)")
    params = (Param("bound", float, 1.0, "half-width of the cube z is drawn from", low=0.0,
                    low_open=True, high=100.0),)

    @hookimpl
    def gantrix_latent(self, n, dim, device, generator):
        u = torch.rand(n, dim, device=device, generator=generator)
        return (2.0 * u - 1.0) * self.bound


@hookimpl
def gantrix_register_tricks(register):
    register(UniformLatent)
