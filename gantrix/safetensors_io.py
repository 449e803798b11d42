"""The safetensors file format, written and read with torch alone (no extra package).

A safetensors file is an 8-byte little-endian header length, a JSON header (each tensor's
dtype, shape and byte range; string metadata under ``"__metadata__"``), then the tensors'
bytes, little-endian and contiguous (https://huggingface.co/docs/safetensors). The format
is small and fixed, so gantrix writes it itself: the ``safetensors`` package and every tool
built on it read these files, and no tensor is ever unpickled when one is read back.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from .atomic import write_atomic
from .errors import GantrixError

#: the format's dtype names
DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
          torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
          torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
_BY_NAME = {name: dtype for dtype, name in DTYPES.items()}
#: a header larger than this is not a safetensors file gantrix wrote (the format caps it)
MAX_HEADER = 100_000_000


def save(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write ``tensors`` and the string ``metadata`` to ``path`` (atomically)."""
    header: dict = {"__metadata__": dict(metadata)}
    chunks, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    write_atomic(Path(path), struct.pack("<Q", len(text)) + text + b"".join(chunks))


def load(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of the safetensors file ``path``; a `GantrixError` naming
    the file when it is not one."""
    raw = Path(path).read_bytes()
    try:
        (size,) = struct.unpack("<Q", raw[:8])
        if size > MAX_HEADER or 8 + size > len(raw):
            raise ValueError("header length out of range")
        header = json.loads(raw[8:8 + size])
        metadata = header.pop("__metadata__", {}) or {}
        body = memoryview(raw)[8 + size:]
        tensors = {}
        for name, entry in header.items():
            lo, hi = entry["data_offsets"]
            dtype = _BY_NAME[entry["dtype"]]
            data = bytearray(body[lo:hi])
            flat = (torch.frombuffer(data, dtype=torch.uint8) if data
                    else torch.empty(0, dtype=torch.uint8))
            tensors[name] = flat.view(dtype).reshape(entry["shape"]).clone()
    except (ValueError, KeyError, TypeError, RuntimeError, struct.error) as exc:
        raise GantrixError(f"{path} is not a safetensors file gantrix can read ({exc}); "
                           f"export the generator again with gantrix export") from None
    return tensors, metadata
