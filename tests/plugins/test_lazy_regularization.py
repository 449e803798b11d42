"""lazy-regularization does what its docstring claims: the regularizer is fused into the main
critic update (every k-th update k·R1 joins that update's loss; one backward, one optimizer
step per update), and the optimizer's lr and betas stay as they were (no StyleGAN2 rescaling).
The expected gradients are written here from the losses' definitions."""
from __future__ import annotations

import copy

import torch

import gantrix
from gantrix.step import ComposedStep

K, GAMMA, SEED = 3, 10.0, 7


def critic_grads(critic, generator, real, z, regularized: bool):
    """∇θ of the non-saturating critic loss −log σ(D(x)) − log(1 − σ(D(G(z)))), plus
    K · γ/2 · E‖∇ₓ D(x)‖² when ``regularized``, on copies of the models before the update."""
    critic, generator = copy.deepcopy(critic), copy.deepcopy(generator)
    with torch.no_grad():
        fake = generator(z)
    x = real.clone().requires_grad_(True)
    d_real = critic(x)
    loss = -torch.log(torch.sigmoid(d_real)).mean() - torch.log(1 - torch.sigmoid(critic(fake))).mean()
    if regularized:
        (g,) = torch.autograd.grad(d_real.sum(), x, create_graph=True)
        loss = loss + K * GAMMA / 2 * g.pow(2).sum(1).mean()
    return torch.autograd.grad(loss, list(critic.parameters()))


def test_the_regularizer_is_fused_into_every_kth_update_and_adam_is_left_alone():
    spec = gantrix.ModelSpec(shape=(2,), latent_dim=8, width=8)
    composition = gantrix.Recipe("nonsaturating", f"r1:gamma={GAMMA}",
                                 f"lazy-regularization:every={K}").compose()
    models = gantrix.build_models(composition, spec)
    step = ComposedStep(composition, models, spec, generator=torch.Generator().manual_seed(SEED))
    opt = step.optimizers["discriminator"]
    plain = ComposedStep(gantrix.Recipe("nonsaturating", "r1").compose(), models, spec).optimizers
    settings = [(g["lr"], g["betas"]) for g in plain["discriminator"].param_groups]
    steps_taken = []
    original_step = opt.step
    opt.step = lambda *a, **kw: (steps_taken.append(1), original_step(*a, **kw))[1]
    z_source = torch.Generator().manual_seed(SEED)  # the same latents as the step draws
    for update in range(2 * K + 1):
        real = torch.randn(16, 2).clamp(-1, 1)
        z = torch.randn(16, spec.latent_dim, generator=z_source)
        regularized = update % K == 0
        expected = critic_grads(models.discriminator, models.generator, real, z, regularized)
        out = step.discriminator_step(real)
        assert ("d/r1" in out) == regularized
        assert len(steps_taken) == update + 1            # one optimizer step per update, always
        for p, e in zip(models.discriminator.parameters(), expected):
            torch.testing.assert_close(p.grad, e, rtol=1e-4, atol=1e-6)
        assert [(g["lr"], g["betas"]) for g in opt.param_groups] == settings
