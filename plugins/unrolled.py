"""Unrolled GANs (Metz, Poole, Pfau & Sohl-Dickstein 2017): score each generator update
against the critic as it will be after k more critic updates, not as it is now.

A generator that moves all its mass onto the mode the current critic likes best is
punished at once by the look-ahead critic, which has already moved to reject that mode:
the generator sees the critic's response to its own move, which damps the oscillation
between modes that plain alternating updates fall into.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call

from gantrix.plugin import Clash, GantrixError, Param, Policy, distributed, hookimpl

PAPER = "Metz, Poole, Pfau & Sohl-Dickstein 2017, Unrolled Generative Adversarial Networks"

UNCLIPPED = ("the look-ahead critic is updated without the critic's after-step actions, so "
             "weight-clip does not clip it: the generator is scored by an unclipped critic")
ONCE_DIFFERENTIABLE = (
    "unrolled:differentiate=true differentiates the critic's updates, but the other trick's op in "
    "gantrix.kernels ({op}) has a closed-form backward that is not itself differentiable, "
    "so the generator's gradient would silently miss that part of the critic's update; use "
    "unrolled:differentiate=false (first order) with it")
#: tricks whose part of the critic's objective is a once-differentiable kernel op.
SECOND_ORDER_CLASHES = tuple(
    Clash(tag, ONCE_DIFFERENTIABLE.format(op=op), PAPER)
    for tag, op in (("lipschitz-penalty", "grad_norm_penalty"), ("r1", "grad_norm_penalty"),
                    ("r2", "grad_norm_penalty"), ("rsgan", "relativistic_loss"),
                    ("rasgan", "relativistic_loss"), ("ralsgan", "relativistic_loss"),
                    ("rahinge", "relativistic_loss")))


def copy_optimizer(optimizer: torch.optim.Optimizer, critic: nn.Module,
                   shadow: nn.Module) -> torch.optim.Optimizer:
    """A new optimizer of ``optimizer``'s class over ``shadow`` (a deep copy of ``critic``),
    with the same hyperparameters and a copy of its state (Adam's moments and step count),
    so stepping it never touches ``optimizer``."""
    twin = dict(zip(map(id, critic.parameters()), shadow.parameters()))
    groups = []
    for group in optimizer.param_groups:
        try:
            params = [twin[id(p)] for p in group["params"]]
        except KeyError:
            raise GantrixError("unrolled: the critic's optimizer holds parameters that are "
                               "not the critic's; the look-ahead can only copy an optimizer "
                               "of the critic's own parameters") from None
        groups.append({**group, "params": params})
    clone = type(optimizer)(groups, **optimizer.defaults)
    clone.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    return clone


class Unrolled(Policy):
    """Unrolled GAN (Metz et al. 2017): each generator update is scored by the critic after
    k look-ahead critic updates,

        θ_D⁰ = θ_D,   θ_D^(i+1) = θ_D^i − η·update(∇ L_D(θ_G, θ_D^i)),   i < k,
        generator loss  L_G(θ_G, θ_D^k);   the real critic keeps θ_D.

    L_D is the composition's own discriminator objective (its loss trick plus every critic
    term: gradient penalties included), each look-ahead step on a fresh real batch and
    fresh fakes. The look-ahead is thrown away after the generator update.

    ``k`` (int, 1 … 100, default 5; the paper uses 1 to 10) look-ahead steps.
    ``differentiate`` (bool, default false) picks the paper's variant:

    - false: the first-order one — the unrolled critic is taken as fixed, dropping the
      term through dθ_D^k/dθ_G. The critic is deep-copied and updated k times
      by a copy of its own optimizer, state included (Adam's moments and step count, as the
      paper's code does), so the look-ahead is exactly k critic updates from now.
    - true: the generator's gradient flows through the k updates (second order,
      dθ_D^k/dθ_G). The look-ahead steps are plain gradient steps θ − lr·∇L_D with the
      lr of each parameter's optimizer group (not the optimizer's own rule: no Adam
      moments), differentiated with ``torch.func.functional_call``; buffers (BatchNorm
      statistics, spectral-norm vectors) are copied so the real critic's stay put.

    Costs: about k + 1 critic forward/backward passes per generator update instead of 1
    (plus k generator forward passes and k extra real batches from the data); the
    second-order variant also keeps all k look-ahead graphs alive and backpropagates
    through them (double backward). Measured: dcgan on 8×8 digits, batch 128, one thread of
    a shared 2-core CPU, median time per generator update with its critic update, two runs
    under different load: 16–30 ms without, 58–98 ms with k=5 (3.3–3.6×), 126–196 ms with
    k=5, differentiate=true (6.6–7.8×).

    Relations: the critic's after-step actions are not applied to the look-ahead critic
    (with ``weight-clip``: a note). With ``n-critic`` the look-ahead runs once per generator
    update, on top of the n real critic updates. ``differentiate=true`` is an error with the
    gradient penalties (``gradient-penalty``, ``dragan``, ``r1``, ``r2``) and the relativistic
    losses: their `gantrix.kernels` ops have closed-form, once-differentiable backwards, so
    the second-order gradient would silently lose their part; the first-order variant works
    with all of them.
    """

    name = "unrolled"
    summary = "score each generator update against the critic after k look-ahead updates"
    paper = PAPER
    params = (
        Param("k", int, 5, "look-ahead critic updates per generator update", low=1, high=100),
        Param("differentiate", bool, False,
              "backpropagate the generator's gradient through the k updates (second order)"),
    )

    conflicts = (Clash("weight-clip", UNCLIPPED, PAPER, severity="note"),)

    def validate(self) -> None:
        if self.differentiate:
            self.conflicts = type(self).conflicts + SECOND_ORDER_CLASHES
            self.differentiates_twice = ("discriminator",)  # through the look-ahead's updates

    @hookimpl
    def gantrix_generator_critic(self, critic, optimizer, critic_loss, grad_scale):
        if self.differentiate:
            return self.differentiable_lookahead(critic, optimizer, critic_loss, grad_scale)
        return self.lookahead(critic, optimizer, critic_loss, grad_scale)

    def lookahead(self, critic: nn.Module, optimizer: torch.optim.Optimizer,
                  critic_loss: Callable, grad_scale: float | None = None) -> nn.Module:
        """A frozen copy of ``critic`` after k updates by a copy of ``optimizer``. Under
        fp16 (``grad_scale``) each loss is scaled before its backward and the gradients
        unscaled after; an update whose gradients overflow ends the look-ahead there."""
        shadow = copy.deepcopy(critic)
        opt = copy_optimizer(optimizer, critic, shadow)
        for i in range(self.k):
            loss = critic_loss(shadow, through_generator=False, ahead=i)
            opt.zero_grad(set_to_none=True)
            _scaled(loss, grad_scale).backward()
            distributed.average_gradients(shadow.parameters())
            grads = _unscaled([p.grad for p in shadow.parameters()], grad_scale)
            if grads is None:
                break
            for p, g in zip(shadow.parameters(), grads):
                p.grad = g
            opt.step()
        return shadow.requires_grad_(False)

    def differentiable_lookahead(self, critic: nn.Module, optimizer: torch.optim.Optimizer,
                                 critic_loss: Callable,
                                 grad_scale: float | None = None) -> Callable:
        """``critic`` with parameters θ_D^k, a function of the generator, as a callable."""
        lr = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
        names, params, rates = [], [], []
        for name, p in critic.named_parameters():
            if p.requires_grad and id(p) in lr:
                names.append(name)
                params.append(p.detach().requires_grad_(True))
                rates.append(lr[id(p)])
        buffers = {name: b.clone() for name, b in critic.named_buffers()}

        def at(values):
            tensors = {**buffers, **dict(zip(names, values))}
            return lambda x, **inputs: functional_call(critic, tensors, (x,), inputs)

        for i in range(self.k):
            loss = _scaled(critic_loss(at(params), through_generator=True, ahead=i), grad_scale)
            grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
            grads = [None if g is None else distributed.mean_across_ranks(g) for g in grads]
            grads = _unscaled(grads, grad_scale)
            if grads is None:
                break
            params = [p if g is None else p - r * g for p, g, r in zip(params, grads, rates)]
        return at(params)


def _scaled(loss: torch.Tensor, grad_scale: float | None) -> torch.Tensor:
    """The loss to differentiate: under fp16 times the loss scale, in float32."""
    return loss if grad_scale is None else loss.float() * grad_scale


def _unscaled(grads: list, grad_scale: float | None) -> list | None:
    """``grads`` (None entries kept) divided by the fp16 loss scale; None when one of them
    overflowed (the look-ahead stops there). Without a scale, ``grads`` as they are."""
    if grad_scale is None:
        return grads
    grads = [None if g is None else g / grad_scale for g in grads]
    present = [g for g in grads if g is not None]
    finite = torch.stack([torch.isfinite(g).all() for g in present]).all() if present else True
    return grads if bool(finite) else None


@hookimpl
def gantrix_register_tricks(register):
    register(Unrolled)
