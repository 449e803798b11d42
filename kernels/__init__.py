"""gantrix.kernels: fused, autograd-aware ops for the hot spots of GAN training.

    from gantrix.kernels import gradient_penalty, grad_norm_penalty, relativistic_loss, clip_

    gp = gradient_penalty(critic, real, fake, weight=10.0)          # WGAN-GP, one call
    r1 = grad_norm_penalty(torch.autograd.grad(d_real.sum(), real, create_graph=True)[0],
                           center=0.0, weight=5.0)                  # R1 on your own gradient
    loss_d = relativistic_loss(d_real, d_fake, kind="sgan")          # RaSGAN
    clip_(critic.parameters(), 0.01)                                 # WGAN weight clipping

Every op runs on CPU and CUDA with one contract. On CUDA tensors it runs Triton kernels (few
launches, one pass over memory, closed-form backward, no host synchronisation, so a training
step can be captured in a CUDA graph); elsewhere a PyTorch implementation with the same
closed-form backward. ``GANTRIX_KERNELS=auto|triton|torch`` overrides the choice (see
``gantrix.kernels.dispatch``). Importing this package does not import triton: that happens on
the first call that runs a Triton kernel.
"""
from .functional import clip_, grad_norm_penalty, gradient_penalty, relativistic_loss

__all__ = ["clip_", "grad_norm_penalty", "gradient_penalty", "relativistic_loss"]
