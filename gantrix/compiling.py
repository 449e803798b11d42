"""``--compile``: torch.compile on the models' forward passes in training steps.

**What is compiled.** The generator's and the critic's forward passes as
`gantrix.step.ComposedStep` calls them in critic and generator updates: ``torch.compile(model)``,
a wrapper that shares the model's parameters and buffers. The models themselves stay plain
modules, so checkpoints (their state dicts keep their names), copies (an EMA generator, a
look-ahead critic), sampling, evaluation and export all see the eager model; tricks that call
a model themselves call it eager. The first step pays for the compilation (`gantrix train`
says so: `announcement`); a new input shape or mode (the generator without gradients in a
critic update, the critic frozen in a generator update) compiles once more.

**What is not.** A model whose forward pass a trick of the composition differentiates twice
(`gantrix.Trick.differentiates_twice`: the gradient penalties on the critic's input
gradient, a differentiated look-ahead). The backward of a graph compiled by torch.compile
(AOTAutograd) cannot itself be differentiated: a penalty's ``autograd.grad(...,
create_graph=True)`` through a compiled critic fails at the update's backward with "torch.compile
with aot_autograd does not currently support double backward" (torch 2.13). Compiling the
critic with dynamo alone (the ``eager`` backend) would allow it but runs the same eager
kernels, so gains nothing. The choice: such a model stays eager, the run says which and
why, and the other model is compiled; where both stay eager there is nothing to compile and
``--compile`` is refused.

**Backends.** torch.compile's default, inductor: on the CPU it writes and builds C++ (a C++
compiler must be found), on CUDA it writes Triton kernels (``triton`` must be installed).
Both are checked before training (`missing_backend`); a failure while compiling stops the run with
torch's reason (`failure`), not a traceback.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from .errors import GantrixError
from .findings import Finding
from .models import ROLES

if TYPE_CHECKING:
    from .compose import Composition

#: how a role is named in messages
WHAT = {"generator": "generator", "discriminator": "critic"}
#: C++ compilers inductor looks for on the CPU (besides $CXX)
CXX = ("g++", "c++", "clang++")
#: torch's words when a compiled graph is differentiated twice: at the backward, or at the
#: ``create_graph=True`` gradient when the graph donated its buffers
DOUBLE_BACKWARD = ("does not currently support double backward",
                   "requires create_graph=False and retain_graph=False")


def eager_roles(composition: "Composition") -> dict[str, list[str]]:
    """The roles that stay eager under ``--compile``, each with the tricks (names) that
    differentiate its forward pass twice."""
    eager: dict[str, list[str]] = {}
    for trick in composition.tricks:
        for role in trick.differentiates_twice:
            eager.setdefault(role, []).append(trick.name)
    return eager


def compiled_roles(composition: "Composition") -> list[str]:
    """The roles whose forward passes ``--compile`` compiles."""
    eager = eager_roles(composition)
    return [role for role in ROLES if role not in eager]


def _twice(role: str, tricks: list[str], it: bool = False) -> str:
    who = " and ".join(tricks)
    verb = "differentiates" if len(tricks) == 1 else "differentiate"
    what = "it" if it else f"the {WHAT[role]}'s forward pass"
    return f"{who} {verb} {what} twice"


def findings(composition: "Composition") -> list[Finding]:
    """What ``--compile`` cannot do for ``composition``: a warning per model left eager, an
    error when nothing can be compiled."""
    eager = eager_roles(composition)
    reason = ("torch.compile's graphs cannot be differentiated twice (AOTAutograd has no "
              "double backward)")
    if len(eager) == len(ROLES):
        return [Finding("error", f"--compile has nothing to compile: "
                        f"{'; '.join(_twice(r, t) for r, t in eager.items())}, and {reason}; "
                        f"train without --compile",
                        tuple(dict.fromkeys(n for t in eager.values() for n in t)))]
    other = next(role for role in ROLES if role not in eager)  # (one at most is eager here)
    return [Finding("warning", f"--compile leaves the {WHAT[role]}'s forward pass eager: "
                    f"{_twice(role, tricks, it=True)}, and {reason}; the {WHAT[other]}'s is "
                    f"compiled", tuple(tricks))
            for role, tricks in eager.items()]


def missing_backend(device: str) -> str | None:
    """Why torch.compile's inductor cannot build code for ``device`` here, or None."""
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda:
        if importlib.util.find_spec("triton") is None:
            return ("--compile on CUDA needs triton, with which torch.compile writes its "
                    "kernels: pip install triton, or train without --compile")
        return None
    if os.environ.get("CXX") and shutil.which(os.environ["CXX"]):
        return None
    if not any(shutil.which(name) for name in CXX):
        return ("--compile on the CPU needs a C++ compiler, with which torch.compile builds "
                f"its code: none found ({', '.join(CXX)} or $CXX); install one (e.g. apt "
                "install g++), or train without --compile")
    return None


def announcement(composition: "Composition") -> str:
    """The line ``gantrix train --compile`` says before training: what is compiled, and
    that the first steps pay for it."""
    roles = [f"{WHAT[role]}'s" for role in compiled_roles(composition)]
    passes = "forward passes" if len(roles) > 1 else "forward pass"
    return (f"--compile: torch.compile compiles the {' and the '.join(roles)} {passes} in the "
            f"first steps (minutes on a CPU); the steps after run the compiled code")


def compiled(model: nn.Module) -> Callable:
    """``model``'s forward pass through torch.compile (its parameters shared)."""
    try:
        return torch.compile(model)
    except RuntimeError as exc:  # e.g. a Python version this torch's dynamo does not support
        raise GantrixError(f"torch.compile is not available here: {exc}; train without "
                           f"--compile") from None


class CompileFailed(GantrixError):
    """A training step under ``--compile`` failed because of torch.compile; ``error`` is
    torch's exception."""

    def __init__(self, message: str, error: BaseException):
        super().__init__(message)
        self.error = error


def failure(exc: BaseException, step: int, trick: str | None = None) -> CompileFailed | None:
    """What a training step that raised ``exc`` under ``--compile`` says, when torch.compile
    is why (``trick``: the trick in whose hook it was raised, if any); None otherwise."""
    from torch._dynamo.exc import TorchDynamoException

    if isinstance(exc, TorchDynamoException):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return CompileFailed(f"torch.compile failed in training step {step}: {first}; train "
                             f"without --compile", exc)
    if isinstance(exc, RuntimeError) and any(words in str(exc) for words in DOUBLE_BACKWARD):
        who = f"{trick} does" if trick else "a trick of this composition does"
        return CompileFailed(
            f"training step {step} differentiated a compiled model's forward pass twice, "
            f"which torch.compile's graphs cannot be: {who} so without saying it (a "
            f"trick's `differentiates_twice` names the models it differentiates twice, "
            f"which --compile then leaves eager); train without --compile", exc)
    return None
