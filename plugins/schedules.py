"""Step schedules: several critic updates per generator update (or generator updates per
critic update), lazy regularization, and learning-rate decay."""
from __future__ import annotations

import re

from gantrix.plugin import GantrixError, Param, ParamError, Policy, Requires, hookimpl


class NCritic(Policy):
    """Train the critic ``n`` times per generator update (WGAN's Algorithm 1: n_critic = 5).

    A Wasserstein critic must be trained close to optimality for its estimate of the
    Earth-Mover distance, and so the generator's gradient, to be reliable; WGAN-GP keeps
    n_critic = 5. ``n-critic:5`` sets it positionally.
    """

    name = "n-critic"
    summary = "n critic updates per generator update (5 for WGAN and WGAN-GP)"
    paper = ("Arjovsky, Chintala & Bottou 2017, Wasserstein GAN, Algorithm 1; "
             "Gulrajani et al. 2017, Improved Training of Wasserstein GANs, Algorithm 1")
    params = (Param("n", int, 5, "critic updates per generator update", low=1, high=100),)

    @hookimpl
    def gantrix_critic_steps(self, step):
        return self.n


class NGenerator(Policy):
    """Update the generator ``n`` times per training step, after the critic's update(s).

    DCGAN's reference implementation (carpedm20/DCGAN-tensorflow, which VEEGAN's and
    PacGAN's Table 2 Stacked-MNIST experiments are built on) runs the generator's optimizer
    twice per critic update "to make sure that d_loss does not go to zero (different from
    paper)": a critic that wins too easily gives the generator vanishing gradients.
    ``n-generator:2`` sets it positionally.

    Each update draws fresh latent vectors and a fresh real batch; the reference code feeds
    one latent batch to the critic update and both generator updates of a step. A training
    step (what ``--steps`` counts and schedules such as ``lr-decay`` follow) holds all ``n``
    updates.

    Cost: with 64-channel DCGAN models (4×4 kernels) on Stacked MNIST (batch 64, one CPU
    thread) a training step with two generator updates took 0.53-0.55 s against 0.34-0.35 s
    with one, 1.6× (``bench/stacked-mnist/dcgan-veegan-4x4.toml`` with and without
    ``--trick n-generator:1``, 60 steps each, alternated).
    """

    name = "n-generator"
    summary = "n generator updates per training step (2 in DCGAN's reference code)"
    paper = ("Radford, Metz & Chintala 2015, DCGAN, reference code carpedm20/DCGAN-tensorflow "
             "(model.py: g_optim run twice per d_optim); PacGAN Table 2 (Lin et al. 2018)")
    params = (Param("n", int, 2, "generator updates per training step", low=1, high=100),)

    @hookimpl
    def gantrix_generator_steps(self, step):
        return self.n


class LazyRegularization(Policy):
    """Compute the regularizers only every k-th update, scaled by k so their expected
    contribution is unchanged (Karras et al. 2020, StyleGAN2 §2.4). The penalties' double
    backward is the dearest part of a step; StyleGAN2 computes R1 every 16 critic updates
    at no loss of quality.

    Applies to every regularizer of the composition, or only to those named in ``only``
    (``lazy-regularization:only=r1``, several joined by ``+``: ``only=r1+r2``), each counted
    in its own phase's updates.

    The regularizer step is **fused** into the main step: on every k-th update of its phase
    (the 0th, k-th, 2k-th, ...) k times the regularizer is added to that update's loss, so
    one backward and one optimizer step serve both; the other updates carry no regularizer.
    StyleGAN2 instead takes the regularizer as a separate optimizer step and therefore
    rescales Adam for the lazily regularized network (lr·c and β^c with c = k/(k+1)). This
    trick takes no separate step and leaves the optimizer's lr and betas exactly as the
    optimizer trick set them: with no extra step there are no extra moment updates to
    compensate for. To mimic StyleGAN2's rescaled Adam, set the optimizer's lr and betas by
    hand (with its β1 = 0 and β2 = 0.99 the difference is small).
    """

    name = "lazy-regularization"
    summary = "compute regularizers every k updates, scaled by k (StyleGAN2, k = 16)"
    paper = "Karras et al. 2020, Analyzing and Improving the Image Quality of StyleGAN, §2.4"
    params = (Param("every", int, 16, "k: compute the regularizers every k updates",
                    low=1, high=10**4),
              Param("only", str, None, "regularizer names joined by '+' (default: all of them)",
                    optional=True))
    requires = (Requires("regularizer", "there is nothing to apply lazily without a regularizer"),)

    def validate(self) -> None:
        #: the regularizers named in ``only`` (empty: all of them).
        self.targets = frozenset(n.strip() for n in re.split(r"[+,]", self.only or "") if n.strip())
        if self.only is not None and not self.targets:
            raise ParamError(f"{self.name}: parameter 'only' got {self.only!r}; "
                             "allowed: regularizer names joined by '+', or none")
        # each regularizer named in `only` must be in the composition: a requirement
        self.requires = type(self).requires + tuple(
            Requires(n, f"lazy-regularization:only names {n}") for n in sorted(self.targets))

    @hookimpl
    def gantrix_regularization_interval(self, trick):
        return self.every if not self.targets or trick.name in self.targets else None


class LinearDecay(Policy):
    """Decay both learning rates linearly over the run, from the optimizer's lr at the first
    training step to ``to`` times it at the last (WGAN-GP's CIFAR-10 and LSUN runs decay
    to 0 over their 100k generator updates, one per training step).

    Every update of training step t (its critic updates and its generator updates) uses the
    same factor. It shortens a run without the last updates' noise: the samples settle on
    the modes instead of jittering around them at a constant step size. Needs the run's
    length (`gantrix train` gives it; `ComposedStep(total_steps=...)` in your own loop);
    resuming with more steps stretches the schedule over the new total, so the lr rises
    again from where the longer run would be.
    """

    name = "lr-decay"
    summary = "decay the learning rates linearly to a fraction of the initial lr (WGAN-GP: to 0)"
    paper = ("Gulrajani et al. 2017, Improved Training of Wasserstein GANs, reference code "
             "gan_cifar_resnet.py (DECAY: lr × (1 − t / iterations))")
    params = (Param("to", float, 0.0, "final lr as a fraction of the initial lr",
                    low=0.0, high=1.0),)

    @hookimpl
    def gantrix_lr_factor(self, role, step, total):
        if total is None:
            raise GantrixError("lr-decay needs the run's length: pass total_steps to "
                               "ComposedStep (gantrix train does)")
        return 1.0 - (1.0 - self.to) * min(step, total) / total


@hookimpl
def gantrix_register_tricks(register):
    for cls in (NCritic, NGenerator, LazyRegularization, LinearDecay):
        register(cls)
