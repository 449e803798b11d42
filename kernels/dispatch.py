"""Backend choice for the kernels: Triton or the PyTorch reference.

The rule, evaluated on every call (so a test or a script can change the variable at run time):

* ``GANTRIX_KERNELS=torch`` — always the PyTorch reference.
* ``GANTRIX_KERNELS=auto`` (the default) — Triton when every tensor is on a CUDA device, has a
  dtype the kernels support (float32, float16, bfloat16) and triton is installed; otherwise the
  PyTorch reference. On CPU, auto never picks Triton's interpreter: it is a testing tool, slow.
* ``GANTRIX_KERNELS=triton`` — Triton or a clear ``RuntimeError`` saying why it cannot run,
  never a silent fallback. Besides CUDA, Triton can run on CPU tensors when its interpreter is
  switched on (``TRITON_INTERPRET=1`` before triton is first imported): that is how the tests
  run the real kernels on a machine without a GPU.

Triton is imported only here, on the first call that goes to a Triton kernel: ``import
gantrix.kernels`` (and so ``import gantrix``) never imports it.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
from functools import lru_cache

import torch

ENV = "GANTRIX_KERNELS"
MODES = ("auto", "triton", "torch")
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# Passed to every Triton launch: multiply-adds fused (a·b + c rounded once), said explicitly so
# that results do not change when Triton's default does (it warns that it will) and no warning
# reaches users.
FP_FUSION = {"enable_fp_fusion": True}


def mode() -> str:
    """The backend mode asked for by ``GANTRIX_KERNELS`` (``auto`` when unset)."""
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"{ENV}={value!r} is not one of {', '.join(MODES)}")
    return value


def interpreting() -> bool:
    """Whether Triton runs in its CPU interpreter (it reads the variable at import time)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@lru_cache(maxsize=None)
def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def _why_not_triton(tensors) -> str | None:
    """The reason Triton cannot run on these tensors, or None when it can."""
    if not triton_installed():
        return "triton is not installed (pip install 'gantrix[triton]')"
    for t in tensors:
        if t.device.type == "cpu":
            if not interpreting():
                return ("the tensors are on the CPU and Triton's interpreter is off "
                        "(set TRITON_INTERPRET=1 before triton is imported to run the kernels on CPU)")
            if t.dtype == torch.bfloat16:
                return "Triton's CPU interpreter has no bfloat16"
        elif t.device.type != "cuda":
            return f"Triton kernels run on CUDA devices, not {t.device.type}"
        if t.dtype not in TRITON_DTYPES:
            return f"the Triton kernels take float32, float16 or bfloat16, not {t.dtype}"
    return None


def use_triton(*tensors: torch.Tensor) -> bool:
    """True when the call on ``tensors`` should run the Triton kernels (see the module rule)."""
    chosen = mode()
    if chosen == "torch":
        return False
    if chosen == "auto":
        for t in tensors:
            if not t.is_cuda or t.dtype not in TRITON_DTYPES:
                return False
        return triton_installed()
    reason = _why_not_triton(tensors)
    if reason is not None:
        raise RuntimeError(f"{ENV}=triton, but the Triton kernels cannot run here: {reason}")
    return True


def device_guard(tensor: torch.Tensor) -> contextlib.AbstractContextManager:
    """The context every Triton launch runs in: ``torch.cuda.device(tensor.device)`` for a CUDA
    tensor, so that the launch goes to that device's current stream even when another device
    is current (tensors on ``cuda:1`` while the current device is 0: a user's model-parallel
    parameters, a process that never called ``set_device``); nothing for a CPU tensor (Triton's
    interpreter). Cheap: it swaps the current device only when it differs."""
    if tensor.device.type == "cuda":
        return torch.cuda.device(tensor.device)
    return contextlib.nullcontext()


def triton_op(name: str):
    """The module holding the Triton kernels of one op, imported (with triton) on first use."""
    return importlib.import_module(f"{__package__}.{name}")
