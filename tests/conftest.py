"""Test-wide set-up.

Triton's interpreter must be switched on before anything imports triton, so it is set here,
first, whenever no CUDA device is present: the kernel tests then run the real Triton code on
CPU tensors. ``import torch`` does not import triton, so asking torch about CUDA is safe.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
