"""Mixed precision for the composed step: ``fp32``, ``bf16`` or ``fp16``.

``bf16`` and ``fp16`` run the models' forward passes (and the losses on their outputs)
under `torch.autocast`; the backward passes and the optimizers' steps stay outside it, as
PyTorch's AMP notes prescribe. ``fp16`` adds one `torch.amp.GradScaler` per optimizer:
float16 gradients underflow without it. Its scale reaches the batch (`Batch.grad_scale`)
so that an input-gradient penalty takes its gradient from the *scaled* critic output and
unscales it in float32 before the norm (`Batch.input_gradient`), the AMP notes' recipe for
gradient penalties; an update whose gradients overflow is skipped by the scaler (which
then halves its scale) instead of stopping the run.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch

MODES = ("fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: the scaler's first scale (GradScaler's default); tests lower or raise it.
INIT_SCALE = 2.0 ** 16


class Precision:
    """How the step computes in ``mode`` on ``device``, with a scaler per role for fp16."""

    def __init__(self, mode: str = "fp32", device: torch.device | str = "cpu",
                 roles: tuple[str, ...] = ("generator", "discriminator")):
        if mode not in MODES:
            raise ValueError(f"precision must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.device_type = torch.device(device).type
        self.dtype = DTYPES.get(mode)
        self.scalers = ({role: torch.amp.GradScaler(self.device_type, init_scale=INIT_SCALE)
                         for role in roles} if mode == "fp16" else {})

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to the mode's dtype (nothing for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scale(self, role: str) -> float | None:
        """The current loss scale of ``role``'s scaler (None without one)."""
        scaler = self.scalers.get(role)
        return None if scaler is None else float(scaler.get_scale())

    def backward_and_step(self, role: str, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                          before_step: Callable[[], None] = lambda: None,
                          after_backward: Callable[[], None] = lambda: None) -> bool:
        """Backward ``loss`` and step ``optimizer``: ``after_backward`` runs on the gradients
        as the backward left them (still scaled under fp16: averaging them over processes
        there makes every process's scaler see the same inf/NaN), ``before_step`` on the
        unscaled gradients. False when the scaler skipped the step (inf/NaN gradients)."""
        scaler = self.scalers.get(role)
        if scaler is None:
            loss.backward()
            after_backward()
            before_step()
            optimizer.step()
            return True
        scaler.scale(loss).backward()
        after_backward()
        scaler.unscale_(optimizer)
        before_step()
        scale = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        return scaler.get_scale() >= scale

    def state_dict(self) -> dict[str, Any]:
        return {role: scaler.state_dict() for role, scaler in self.scalers.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for role, scaler in self.scalers.items():
            if role in state:
                scaler.load_state_dict(state[role])
