"""The batch: what every trick sees during one discriminator or generator update.

It carries the real and fake samples, the latent vectors, labels and codes, and computes
the critic's outputs and input gradients *once*, on first use, sharing them between the
loss and every regularizer (no trick recomputes D(x)).

Sides are ``"real"`` and ``"fake"``. The critic may return a tensor of logits, or a dict
with ``"logits"`` and extra outputs (an InfoGAN Q head, say); `Batch.outputs` gives the
whole dict, `real_logits`/`fake_logits` the logits.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

SIDES = ("real", "fake")


class Batch:
    """One update's samples and the critic's shared outputs on them.

    ``phase`` is ``"discriminator"`` or ``"generator"``; ``step`` counts the updates of that
    phase so far (so a lazy regularizer's "every k steps" is in its own phase's updates).
    """

    def __init__(self, *, real: torch.Tensor, critic: Callable, phase: str, step: int,
                 z: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                 hook=None):
        self.real = real
        self.labels = labels
        self.z = z
        self.phase = phase
        self.step = step
        self.fake: torch.Tensor | None = None
        self.fake_labels: torch.Tensor | None = None
        self.codes: dict[str, torch.Tensor] = {}
        self.generator_inputs: dict[str, Any] = {}
        self.critic_inputs: dict[str, dict[str, Any]] = {"real": {}, "fake": {}}
        self._critic = critic
        self._hook = hook
        self._outputs: dict[str, dict[str, Any]] = {}
        self._wants_grad: set[str] = set()
        self._grads: dict[str, torch.Tensor] = {}
        self._intervals: dict[str, int] = {}
        #: the fp16 loss scale of this update's optimizer (None outside fp16): input
        #: gradients are taken from the critic's output times it, then unscaled.
        self.grad_scale: float | None = None

    @property
    def batch_size(self) -> int:
        return self.real.shape[0]

    @property
    def device(self) -> torch.device:
        return self.real.device

    def sample(self, side: str) -> torch.Tensor:
        _check_side(side)
        x = self.real if side == "real" else self.fake
        if x is None:
            raise RuntimeError("the fake samples do not exist yet (asked before the generator ran)")
        return x

    def critic(self, x: torch.Tensor, side: str = "real") -> torch.Tensor:
        """The critic's logits on any ``x`` (e.g. interpolates), conditioned like ``side``."""
        return _logits(self._critic(x, **self.critic_inputs[side]))

    def require_input_grad(self, side: str) -> None:
        """Ask for d(critic)/d(input) on ``side``; call it from ``gantrix_prepare_batch`` so
        the critic's one forward pass is taken with the input tracked."""
        _check_side(side)
        self._wants_grad.add(side)

    def outputs(self, side: str) -> dict[str, Any]:
        """Everything the critic returned on ``side`` (computed once, then cached)."""
        if side not in self._outputs:
            x = self.sample(side)
            if side in self._wants_grad and not x.requires_grad:
                x = x.detach().requires_grad_(True)
                self._set_sample(side, x)
            out = self._critic(x, **self.critic_inputs[side])
            self._outputs[side] = out if isinstance(out, dict) else {"logits": out}
        return self._outputs[side]

    @property
    def real_logits(self) -> torch.Tensor:
        return self.outputs("real")["logits"]

    @property
    def fake_logits(self) -> torch.Tensor:
        return self.outputs("fake")["logits"]

    def input_grad(self, side: str) -> torch.Tensor:
        """∇ₓ Σ D(x) on ``side``, with ``create_graph=True`` so a penalty on it trains D.

        Shared by every trick that asks. When the input was not marked in time, the critic
        is run once more on a tracked copy (correct, one forward pass dearer).
        """
        if side not in self._grads:
            x = self.sample(side)
            if x.requires_grad and side in self._outputs:
                logits = self._outputs[side]["logits"]
            else:
                x = x.detach().requires_grad_(True)
                logits = self.critic(x, side)
            self._grads[side] = self.input_gradient(logits, x)
        return self._grads[side]

    def input_gradient(self, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """∇ₓ Σ output, with ``create_graph=True`` so a penalty on it trains the critic.

        Use it for every input gradient a penalty takes (interpolates too): under fp16 it is
        taken from the output times the loss scale, so float16 gradients do not underflow,
        and unscaled in float32 before any norm. An overflow gives inf, which the scaler
        sees in the parameters' gradients: that update is skipped.
        """
        if self.grad_scale is None:
            (grad,) = torch.autograd.grad(output.sum(), x, create_graph=True)
            return grad
        (grad,) = torch.autograd.grad(output.float().sum() * self.grad_scale, x, create_graph=True)
        return grad.float() * (1.0 / self.grad_scale)

    def regularization_interval(self, trick) -> int:
        """How often ``trick`` applies (1 = every step), as the composition's policies say."""
        if trick.name not in self._intervals:
            k = self._hook.gantrix_regularization_interval(trick=trick) if self._hook else None
            self._intervals[trick.name] = int(k or 1)
        return self._intervals[trick.name]

    def _set_sample(self, side: str, x: torch.Tensor) -> None:
        if side == "real":
            self.real = x
        else:
            self.fake = x


def _logits(out) -> torch.Tensor:
    return out["logits"] if isinstance(out, dict) else out


def _check_side(side: str) -> None:
    if side not in SIDES:
        raise ValueError(f"side must be 'real' or 'fake', got {side!r}")
