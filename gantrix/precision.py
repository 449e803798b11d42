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
TF32_CHOICES = ("default", "on", "off")
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

    def grad_scale(self, role: str) -> torch.Tensor | float | None:
        """The current loss scale of ``role``'s scaler (None without one): the scaler's own
        0-d float32 tensor on the device once it has scaled a loss (read without waiting for
        the device: ``GradScaler.get_scale`` would read it back with ``.item()``), its
        initial scale as a float before that. Scales are powers of 2, so multiplying by it
        and by its reciprocal is exact either way."""
        scaler = self.scalers.get(role)
        if scaler is None:
            return None
        scale = getattr(scaler, "_scale", None)  # (GradScaler's device copy of its scale)
        return scaler.get_scale() if scale is None else scale

    def backward_and_step(self, role: str, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                          before_step: Callable[[], None] = lambda: None,
                          after_backward: Callable[[], None] = lambda: None) -> bool | torch.Tensor:
        """Backward ``loss`` and step ``optimizer``: ``after_backward`` runs on the gradients
        as the backward left them (still scaled under fp16: averaging them over processes
        there makes every process's scaler see the same inf/NaN), ``before_step`` on the
        unscaled gradients. Whether the optimizer stepped: True without a scaler; under fp16 a
        0-d bool tensor on the device, False when the scaler skipped the step (inf/NaN
        gradients: its scale went down), so that nothing is read back here."""
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
        before = scaler._scale.clone()  # (on the device; update() changes it in place)
        scaler.step(optimizer)
        scaler.update()
        return scaler._scale >= before

    def state_dict(self) -> dict[str, Any]:
        return {role: scaler.state_dict() for role, scaler in self.scalers.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for role, scaler in self.scalers.items():
            if role in state:
                scaler.load_state_dict(state[role])


def tf32_state() -> dict[str, bool]:
    """Whether float32 runs in TF32 on CUDA (10-bit mantissa products, fp32 accumulation):
    cuDNN convolutions (on by default in PyTorch) and matrix products (off by default). On the
    CPU neither applies: float32 is IEEE float32 there. (The legacy flags are read, not the
    ``fp32_precision`` strings: PyTorch refuses a mix of the two interfaces.)"""
    return {"cudnn.allow_tf32": bool(torch.backends.cudnn.allow_tf32),
            "cuda.matmul.allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32)}


def describe_tf32() -> str:
    """One line saying what "fp32" means on CUDA here, e.g. for a benchmark's header."""
    state = tf32_state()
    flags = ", ".join(f"{key}={value}" for key, value in state.items())
    if all(state.values()):
        kind = "TF32 convolutions and matrix products"
    elif state["cudnn.allow_tf32"]:
        kind = "TF32 convolutions, IEEE fp32 matrix products"
    elif state["cuda.matmul.allow_tf32"]:
        kind = "IEEE fp32 convolutions, TF32 matrix products"
    else:
        kind = "IEEE fp32 throughout"
    return f"fp32 on CUDA = {kind} ({flags})"


def set_tf32(choice: str) -> None:
    """``on``: TF32 for convolutions and matrix products; ``off``: neither (IEEE fp32);
    ``default``: leave PyTorch's flags as they are."""
    if choice not in TF32_CHOICES:
        raise ValueError(f"tf32 must be one of {', '.join(TF32_CHOICES)}, got {choice!r}")
    if choice != "default":
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = choice == "on"


@contextlib.contextmanager
def ieee_fp32():
    """TF32 off for convolutions and matrix products inside, restored after: for comparisons
    of float32 results with a float64 reference at float32 tolerances."""
    state = tf32_state()
    set_tf32("off")
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = state["cudnn.allow_tf32"]
        torch.backends.cuda.matmul.allow_tf32 = state["cuda.matmul.allow_tf32"]
