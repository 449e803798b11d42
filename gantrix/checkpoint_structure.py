"""The structure of a run's checkpoint, checked when it is loaded.

`gantrix.checkpoint.load_checkpoint` makes sure a file is a gantrix checkpoint that loads
safely (tensors and plain containers only). A file that passes can still hold the wrong
things: edited, written by a script, or damaged in a way that still unpickles (``step =
"abc"``, ``sampling`` a list, an RNG state that is not one). Left alone, such a checkpoint
fails deep inside a resume or a sample with a raw ``TypeError``; `check_structure` says which
key is wrong and what it should hold first, naming the file.

What is checked is what the core reads (`gantrix.trainer.Trainer.state_dict` writes it): the
counters, the sampling record, the models' and optimizers' tables, the random states (each
one loaded into a scratch generator, which validates it), the data's order and position,
the evaluation record and the log's sums. The tricks' own states are each trick's to read.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import GantrixError
from .models import ModelSpec

#: how many bytes a CUDA generator's state has (Philox: seed and offset).
CUDA_STATE_BYTES = 16


class _Wrong(Exception):
    """A key of the checkpoint that does not hold what it should: its dotted path, what
    was expected, and the value found."""

    def __init__(self, key: str, expected: str, value: Any = None, *, missing: bool = False):
        super().__init__(key)
        self.key, self.expected, self.value, self.missing = key, expected, value, missing


def _shown(value: Any) -> str:
    """A short description of ``value`` for the error."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def _count(value: Any, key: str, *, low: int = 0) -> int:
    """An integer of at least ``low`` (a 0-d integer tensor too, as a data position is kept)."""
    if isinstance(value, torch.Tensor) and value.ndim == 0 and not value.is_floating_point() \
            and value.dtype != torch.bool:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _Wrong(key, f"an integer of at least {low}", value)
    return value


def _seconds(value: Any, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise _Wrong(key, "a finite number of seconds, at least 0", value)


def _table(value: Any, key: str, what: str = "a table") -> dict:
    if not isinstance(value, dict):
        raise _Wrong(key, what, value)
    return value


def _get(state: dict, key: str, path: str) -> Any:
    if key not in state:
        raise _Wrong(f"{path}{key}", "", missing=True)
    return state[key]


def _cpu_rng(value: Any, key: str) -> None:
    """A CPU generator's state: one that a generator accepts."""
    if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8:
        raise _Wrong(key, "a CPU random generator's state (a uint8 tensor)", value)
    try:
        torch.Generator().set_state(value)
    except RuntimeError as exc:
        raise _Wrong(key, f"a valid CPU random generator's state ({exc})", value) from None


def _latent_rng(value: Any, key: str) -> None:
    """The latent stream's state: a CPU generator's (checked as one) or a CUDA one's."""
    if isinstance(value, torch.Tensor) and value.dtype == torch.uint8 \
            and value.ndim == 1 and value.numel() == CUDA_STATE_BYTES:
        return
    _cpu_rng(value, key)


def _tensor_table(value: Any, key: str) -> None:
    for name, tensor in _table(value, key, "a table of tensors (a model's weights)").items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise _Wrong(f"{key}.{name}", "a tensor (a model's weights)", tensor)


def _data(value: Any, key: str) -> None:
    """The data's state, whatever the kind of data: its random states, and an order and
    position that index its samples (`gantrix.data`'s ``state_dict``)."""
    state = _table(value, key, "a table (the data's order and random state)")
    for name, item in state.items():
        where = f"{key}.{name}"
        if name.endswith("rng"):
            _cpu_rng(item, where)
        elif name == "order":
            if not isinstance(item, torch.Tensor) or item.ndim != 1 \
                    or item.is_floating_point() or item.dtype == torch.bool:
                raise _Wrong(where, "a 1-D integer tensor (the samples' order)", item)
            if len(item) and (int(item.min()) < 0 or int(item.max()) >= len(item)):
                raise _Wrong(where, f"indices from 0 to {len(item) - 1}", item)
        elif name == "pos":
            order = state.get("order")
            pos = _count(item, where)
            if isinstance(order, torch.Tensor) and pos > len(order):
                raise _Wrong(where, f"a position from 0 to {len(order)}", item)
        elif isinstance(item, dict):
            _data(item, where)


def _sampling(value: Any, key: str) -> None:
    sampling = _table(value, key, "a table with 'tricks' and 'custom_models'")
    tricks = sampling.get("tricks", [])
    if not isinstance(tricks, list) or not all(isinstance(t, str) for t in tricks):
        raise _Wrong(f"{key}.tricks", "a list of trick names", tricks)
    custom = sampling.get("custom_models", {})
    if not isinstance(custom, dict) or not all(
            role in ("generator", "discriminator") and isinstance(name, str)
            for role, name in custom.items()):
        raise _Wrong(f"{key}.custom_models",
                     "a table of 'generator'/'discriminator' to a class name", custom)


def _rng(value: Any, key: str) -> None:
    rng = _table(value, key, "a table of random states ('torch', 'z')")
    _cpu_rng(_get(rng, "torch", f"{key}."), f"{key}.torch")
    _latent_rng(_get(rng, "z", f"{key}."), f"{key}.z")
    if "cuda" in rng and not (isinstance(rng["cuda"], torch.Tensor)
                              and rng["cuda"].dtype == torch.uint8):
        raise _Wrong(f"{key}.cuda", "a CUDA random generator's state (a uint8 tensor)",
                     rng["cuda"])


def _optimizers(value: Any, key: str) -> None:
    for role, opt in _table(value, key, "a table of optimizer states").items():
        opt = _table(opt, f"{key}.{role}", "an optimizer's state (a table)")
        _table(_get(opt, "state", f"{key}.{role}."), f"{key}.{role}.state")
        if not isinstance(_get(opt, "param_groups", f"{key}.{role}."), list):
            raise _Wrong(f"{key}.{role}.param_groups", "a list", opt["param_groups"])


def _log(value: Any, key: str) -> None:
    log = _table(value, key, "a table (the loss sums since the last metrics line)")
    sums = _table(_get(log, "sums", f"{key}."), f"{key}.sums")
    counts = _table(_get(log, "counts", f"{key}."), f"{key}.counts")
    for name, total in sums.items():
        if isinstance(total, bool) or not isinstance(total, (int, float)):
            raise _Wrong(f"{key}.sums.{name}", "a number", total)
    for name, n in counts.items():
        _count(n, f"{key}.counts.{name}", low=1)
    _count(_get(log, "interval_steps", f"{key}."), f"{key}.interval_steps")
    _seconds(_get(log, "interval_seconds", f"{key}."), f"{key}.interval_seconds")
    _seconds(_get(log, "elapsed", f"{key}."), f"{key}.elapsed")


def _evaluation(value: Any, key: str) -> None:
    evaluation = _table(value, key, "a table (the best score during training)")
    for name in ("best_step", "n"):
        if evaluation.get(name) is not None:
            _count(evaluation[name], f"{key}.{name}")
    best = evaluation.get("best")
    if best is not None and (isinstance(best, bool) or not isinstance(best, (int, float))):
        raise _Wrong(f"{key}.best", "a number (or none)", best)
    if "seconds" in evaluation:
        _seconds(evaluation["seconds"], f"{key}.seconds")


def _models(value: Any, key: str) -> None:
    models = _table(value, key, "a table of the generator's and the critic's weights")
    for role in ("generator", "discriminator"):
        _tensor_table(_get(models, role, f"{key}."), f"{key}.{role}")


def _layout(value: Any, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) \
            or value not in range(1, ModelSpec.layout + 1):
        raise _Wrong(key, f"a model layout from 1 to {ModelSpec.layout}", value)


#: each key the core reads: whether it must be there, and its check
_KEYS: dict[str, tuple[bool, Callable[[Any, str], None]]] = {
    "sampling": (False, _sampling),
    "layout": (False, _layout),
    "step": (True, _count),
    "d_steps": (True, _count),
    "g_steps": (False, _count),
    "models": (True, _models),
    "optimizers": (True, _optimizers),
    "scalers": (False, _table),
    "tricks": (True, _table),
    "rng": (True, _rng),
    "data": (True, _data),
    "evaluation": (False, _evaluation),
    "log": (True, _log),
}


def check_structure(state: dict[str, Any], path: Path) -> dict[str, Any]:
    """``state`` (a checkpoint loaded from ``path``) when every key the core reads holds
    what it should; else a `GantrixError` naming the file, the key, what it should hold and
    what it holds."""
    try:
        for key, (required, check) in _KEYS.items():
            if key in state:
                check(state[key], key)
            elif required:
                raise _Wrong(key, "", missing=True)
    except _Wrong as wrong:
        what = (f"it has no {wrong.key!r}" if wrong.missing else
                f"its {wrong.key!r} must be {wrong.expected}, got {_shown(wrong.value)}")
        raise GantrixError(
            f"{path} is damaged or was not written by gantrix: {what}. The run cannot go on "
            f"from it: restore a copy of the checkpoint, or train the run again") from None
    return state
