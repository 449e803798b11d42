"""The public ops: argument checks, then the backend ``dispatch`` picks (Triton or PyTorch).

Checks look only at shapes, dtypes and devices, never at values, so no op waits on the GPU; the
one exception is an ``eps`` tensor the caller hands to ``gradient_penalty`` (see there).

This package imports nothing from the rest of gantrix: it is the drop-in backend for other
people's training loops (gantrix's own penalties draw their interpolation weights with
``gantrix.distributed.rand`` and pass that draw in as a callable ``eps``).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from numbers import Real
from typing import Any

import torch

from . import dispatch, reference

KINDS = ("sgan", "lsgan", "hinge")
SMALL_ON_CPU = 4096  # elements; below it the _foreach pair beats a clamp_ call each (see clip_)


def _float_tensor(value, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
    return value


def _batched(value, name: str) -> torch.Tensor:
    """A floating tensor with a non-empty batch dimension and at least one element per sample."""
    _float_tensor(value, name)
    if value.dim() == 0:
        raise ValueError(f"{name} must have a batch dimension, got a 0-d tensor")
    if value.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(value.shape)})")
    return value


def _number(value, name: str) -> float:
    if type(value) is float:  # the common case, without the slower ABC check below
        return value
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def _same(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dtype != b.dtype:
        raise TypeError(f"{names} must have the same dtype, got {a.dtype} and {b.dtype}")
    if a.device != b.device:
        raise ValueError(f"{names} must be on the same device, got {a.device} and {b.device}")


def _flag(value, name: str) -> bool:
    """A switch: True or False (1 and 0 too); not a truthy string such as ``"no"``."""
    if isinstance(value, bool):
        return value
    if type(value) is int and value in (0, 1) or type(value).__name__ == "bool_":
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")


def _loss_scale(value) -> float | torch.Tensor | None:
    """``gradient_penalty``'s ``grad_scale``: None, a finite number > 0, or a 0-d
    floating-point tensor (a GradScaler's ``_scale``), whose value is not read back."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        if value.dim() != 0 or not value.is_floating_point():
            raise TypeError(f"grad_scale must be a number or a 0-d floating-point tensor (the "
                            f"GradScaler's scale), got a {value.dtype} tensor of shape "
                            f"{tuple(value.shape)}")
        return value
    value = _number(value, "grad_scale")
    if not 0.0 < value < math.inf:
        raise ValueError(f"grad_scale must be a finite number > 0 (range (0, inf)), got {value}")
    return value


def _nonnegative(value, name: str) -> float:
    """A finite real number ≥ 0 (a penalty's weight or target norm)."""
    value = _number(value, name)
    if not 0.0 <= value < math.inf:
        raise ValueError(f"{name} must be a finite number >= 0 (range [0, inf)), got {value}")
    return value


def grad_norm_penalty(grad: torch.Tensor, *, center: float = 1.0, weight: float = 10.0,
                      one_sided: bool = False) -> torch.Tensor:
    """weight · mean_b (‖g_b‖₂ − center)² over a batch of gradients, as a scalar.

    The norm of each sample b is taken over all its non-batch dims (never over dim 1 alone, nor
    over the whole batch). ``one_sided`` penalises only norms above ``center``:
    max(0, ‖g_b‖ − center)². ``center=0`` gives weight · mean_b ‖g_b‖², the R1/R2 penalty.
    ``weight`` and ``center`` are finite and ≥ 0 (a ValueError names the one that is not);
    ``one_sided`` is True or False (a TypeError otherwise).

    ``grad`` is usually the input gradient from ``torch.autograd.grad(..., create_graph=True)``:
    the backward (closed form, 2·weight·(‖g_b‖ − center)·g_b/(‖g_b‖·B), zero for a sample whose
    gradient is zero — never NaN) hands its result to autograd, which carries it on through the
    critic's double-backward graph to the critic's weights. The loss is float32 for float16 and
    bfloat16 gradients (float64 for float64).
    """
    _batched(grad, "grad")
    center, weight = _nonnegative(center, "center"), _nonnegative(weight, "weight")
    impl = dispatch.triton_op("grad_penalty") if dispatch.use_triton(grad) else reference
    return impl.GradNormPenalty.apply(grad, center, weight, _flag(one_sided, "one_sided"))


def gradient_penalty(critic: Callable[..., torch.Tensor], real: torch.Tensor, fake: torch.Tensor, *,
                     weight: float = 10.0, center: float = 1.0,
                     eps: torch.Tensor | Callable[..., torch.Tensor] | None = None,
                     one_sided: bool = False, critic_kwargs: Mapping[str, Any] | None = None,
                     grad_scale: float | torch.Tensor | None = None, **legacy_kwargs) -> torch.Tensor:
    """The WGAN-GP penalty of ``critic`` at random points between ``real`` and ``fake`` samples.

    x̂_b = fake_b + eps_b·(real_b − fake_b), one ``eps_b ~ U[0, 1)`` per sample, drawn with
    ``torch.rand(B, device=real.device, dtype=real.dtype)``, unless ``eps`` is given (below);
    then ``critic(x̂, **critic_kwargs)``, its input
    gradient out of place with ``torch.autograd.grad(out.sum(), x̂, create_graph=True)``, and
    ``grad_norm_penalty`` of it (``weight``, ``center`` and ``one_sided`` as there).
    ``real`` and ``fake`` are detached: the penalty trains the critic only, and one ordinary
    ``.backward()`` of a loss holding it reaches every critic weight (DDP included).

    Under float16 autocast, pass the GradScaler's scale as ``grad_scale``: the input
    gradient is then taken from ``grad_scale``·Σ out (a float16 gradient of the unscaled
    output underflows to zero for a critic with small input gradients) and divided by it in
    float32 before the norm, as PyTorch's AMP notes do for gradient penalties. Without it
    (float32, bfloat16) the gradient of the output itself is used. The scale may be a float
    (finite, > 0: a ValueError otherwise) or the scaler's own 0-d floating-point tensor on the
    device (``scaler._scale``): a tensor is not read back, so nothing waits on the GPU
    (``GradScaler.get_scale()`` reads it with ``.item()``), and its value is not checked.
    ``one_sided`` is True or False (a TypeError otherwise: a string such as ``"no"`` is not
    taken for true).

    Extra inputs of the critic (a cGAN's labels) go in the ``critic_kwargs`` dict, whatever
    their names: ``gradient_penalty(D, real, fake, critic_kwargs={"labels": y})`` — or close
    over them: ``gradient_penalty(lambda x: D(x, y), real, fake)``. (Before, they went as
    extra keywords, ``gradient_penalty(D, real, fake, labels=y)``; that still works but warns
    with a DeprecationWarning, and cannot pass inputs named like this function's own.)

    The critic must give one output per sample, shape (B,) or (B, 1) — reduce a PatchGAN's
    map or several heads to one score per sample in a closure — and the output must depend on
    x̂ through autograd (not under ``torch.no_grad()``, not detached); otherwise a ValueError
    says which.

    ``eps`` fixes the interpolation weights, in one of two forms:

    - a tensor of shape (B,) with values in [0, 1] on ``real``'s device: checked to lie in
      [0, 1], which reads one value back from the device (a host synchronisation; skipped
      while a CUDA graph is being captured) — for tests and one-off calls;
    - a callable ``eps(B, *, device, dtype) -> Tensor`` that draws them, e.g.
      ``functools.partial(torch.rand, generator=g)`` or a distributed loop's per-rank draw:
      called at the point where the default ``torch.rand`` draw would be made (after the
      argument checks, before the critic runs), so it consumes the random stream in the same
      order. Its result is trusted: its shape, dtype and device are checked, its values are
      not, so nothing is read back from the device.
    """
    if not callable(critic):
        raise TypeError(f"critic must be callable, got {type(critic).__name__}")
    _batched(real, "real")
    _batched(fake, "fake")
    _same(real, fake, "real and fake")
    inputs = _critic_inputs(critic_kwargs, legacy_kwargs)
    weight, center = _nonnegative(weight, "weight"), _nonnegative(center, "center")
    one_sided, grad_scale = _flag(one_sided, "one_sided"), _loss_scale(grad_scale)
    batch = real.shape[0]
    if eps is None:
        eps = torch.rand(batch, device=real.device, dtype=real.dtype)
    elif callable(eps) and not isinstance(eps, torch.Tensor):
        eps = eps(batch, device=real.device, dtype=real.dtype)
        _check_eps_layout(eps, batch, real.device, "the eps callable's result")
    else:
        _check_eps(eps, batch, real.device)
    eps = eps.to(real.dtype).view((batch,) + (1,) * (real.dim() - 1))
    with torch.enable_grad():
        x_hat = torch.lerp(fake.detach(), real.detach(), eps).requires_grad_(True)
        out = critic(x_hat, **inputs)
        _check_critic_output(out, batch)
        total = out.sum() if grad_scale is None else out.float().sum() * grad_scale
        (grad,) = torch.autograd.grad(total, x_hat, create_graph=True, allow_unused=True)
        if grad is not None and grad_scale is not None:
            grad = grad.float() * (1.0 / grad_scale)
        if grad is None:
            raise ValueError("the critic's output does not depend on its input x: it ignores its "
                             "first argument, or uses it only through detached or "
                             "non-differentiable operations, so there is no input gradient to "
                             "penalise")
        return grad_norm_penalty(grad, center=center, weight=weight, one_sided=one_sided)


def _critic_inputs(critic_kwargs, legacy_kwargs: dict) -> dict:
    """The critic's extra inputs: the ``critic_kwargs`` mapping, or (deprecated) the extra
    keywords of ``gradient_penalty``; not both."""
    if critic_kwargs is not None and not isinstance(critic_kwargs, Mapping):
        raise TypeError(f"critic_kwargs must be a dict of the critic's extra inputs, got "
                        f"{type(critic_kwargs).__name__}")
    if not legacy_kwargs:
        return dict(critic_kwargs or {})
    names = ", ".join(sorted(legacy_kwargs))
    if critic_kwargs is not None:
        raise TypeError(f"gradient_penalty got critic_kwargs and also extra keywords ({names}): "
                        f"put all the critic's inputs in critic_kwargs")
    warnings.warn(f"passing the critic's inputs ({names}) as keywords of gradient_penalty is "
                  f"deprecated: pass critic_kwargs={{...}} instead", DeprecationWarning, stacklevel=3)
    return legacy_kwargs


def _check_eps_layout(eps, batch: int, device: torch.device, name: str = "eps") -> None:
    """``eps``: a float tensor of shape (batch,) on ``device`` (metadata only, no device read)."""
    _float_tensor(eps, name)
    if eps.shape != (batch,):
        raise ValueError(f"{name} must have shape ({batch},), one value per sample, got {tuple(eps.shape)}")
    if eps.device != device:
        raise ValueError(f"{name} must be on {device}, got {eps.device}")


def _check_eps(eps, batch: int, device: torch.device) -> None:
    """``eps``: a float tensor of shape (batch,) on ``device``, every value in [0, 1]."""
    _check_eps_layout(eps, batch, device)
    if eps.is_cuda and torch.cuda.is_current_stream_capturing():
        return  # reading a value back is not allowed inside a CUDA graph
    outside = ~((eps >= 0) & (eps <= 1))  # NaN is outside too
    if outside.any():
        bad = eps[outside][0].item()
        raise ValueError(f"eps must lie in [0, 1] (one interpolation weight per sample), "
                         f"got {bad:.6g} at sample {int(outside.nonzero()[0, 0])}")


def _check_critic_output(out, batch: int) -> None:
    """One differentiable output per sample: shape (batch,) or (batch, 1), tracked by autograd."""
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"critic must return a tensor, got {type(out).__name__}")
    if tuple(out.shape) not in ((batch,), (batch, 1)):
        raise ValueError(f"the critic must return one output per sample, shape ({batch},) or "
                         f"({batch}, 1) for a batch of {batch}, got {tuple(out.shape)}; reduce "
                         f"several outputs per sample (a PatchGAN's map, several heads) to one in "
                         f"a closure, e.g. lambda x: D(x).mean(dim=(1, 2, 3))")
    if not out.requires_grad:
        raise ValueError("the critic's output is not tracked by autograd: the critic runs under "
                         "torch.no_grad() or inference_mode, detaches its output, or does not use "
                         "its input, so there is no input gradient to penalise; run its forward "
                         "with gradients enabled, on its input")


def relativistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, *, kind: str = "sgan",
                      average: bool = True, for_generator: bool = False) -> torch.Tensor:
    """The relativistic GAN losses (Jolicoeur-Martineau, 2018) on logits of any shape, as a scalar.

    r, f are the real and fake logits; m_r, m_f their means over all elements; BCE(x, t) is
    binary cross-entropy on logits x against target t, averaged over all elements.

    ``average=False``, r paired with f element by element (RSGAN, RLSGAN, RHinge):
      sgan   D: BCE(r − f, 1)              G: BCE(f − r, 1)
      lsgan  D: mean((r − f − 1)²)         G: mean((f − r − 1)²)
      hinge  D: mean(relu(1 − (r − f)))    G: mean(relu(1 − (f − r)))
    ``average=True`` (RaSGAN, RaLSGAN, RaHinge):
      sgan   D: ½[BCE(r − m_f, 1) + BCE(f − m_r, 0)]
             G: ½[BCE(r − m_f, 0) + BCE(f − m_r, 1)]
      lsgan  D: ½[mean((r − m_f − 1)²) + mean((f − m_r + 1)²)]
             G: ½[mean((f − m_r − 1)²) + mean((r − m_f + 1)²)]
      hinge  D: ½[mean(relu(1 − (r − m_f))) + mean(relu(1 + (f − m_r)))]
             G: ½[mean(relu(1 − (f − m_r))) + mean(relu(1 + (r − m_f)))]

    D is the discriminator's loss, G (``for_generator=True``) the generator's. Gradients reach
    both inputs, including the coupling through the means. PatchGAN logits (B, 1, H, W) work
    as they are. The loss is float32 for float16 and bfloat16 logits (float64 for float64).
    ``average`` and ``for_generator`` are True or False (a TypeError otherwise).
    """
    _batched(real_logits, "real_logits")
    _batched(fake_logits, "fake_logits")
    _same(real_logits, fake_logits, "real_logits and fake_logits")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
    average, for_generator = _flag(average, "average"), _flag(for_generator, "for_generator")
    if dispatch.use_triton(real_logits):
        return dispatch.triton_op("relativistic").RelativisticLoss.apply(
            real_logits, fake_logits, kind, average, for_generator)
    return reference.relativistic_loss(real_logits, fake_logits, kind, average, for_generator)


def clip_(params: Iterable[torch.Tensor] | torch.Tensor, c: float) -> None:
    """Clamp every tensor of ``params`` in place to [−c, c] (WGAN weight clipping); returns None.

    Takes any mix of sizes, dtypes and devices (``model.parameters()`` works as is). CUDA
    tensors are grouped by device and dtype: one Triton launch per group (any count), or
    two ``_foreach`` launches on the PyTorch path. On CPU a large tensor is clamped where it is
    met (one pass) and the small ones together by the ``_foreach`` pair, whose two passes cost
    less than a Python call per tensor; lists of a hundred tensors and more are common. Nothing
    waits on the GPU, so it can be captured in a CUDA graph.
    """
    c = _number(c, "c")
    if not 0.0 < c < math.inf:
        raise ValueError(f"c must be a finite number > 0 (range (0, inf)), got {c}")
    tensors = [params] if isinstance(params, torch.Tensor) else list(params)
    to_triton = dispatch.mode() == "triton"
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    small: list[torch.Tensor] = []
    low = -c
    # inference mode, not just no_grad: in-place ops then skip autograd's checks entirely (about
    # 0.5 µs a tensor on CPU; 1.1-1.2x faster over 120 tensors), and still bump the version
    # counters, so autograd notices the change
    with torch.inference_mode():
        try:  # integer, complex and non-tensor inputs fail in here; named below
            for t in tensors:  # (the CPU case is host-bound: this loop is kept lean)
                if t.is_cuda or to_triton:
                    groups.setdefault((t.device, t.dtype), []).append(t)
                elif t.numel() > SMALL_ON_CPU:
                    t.clamp_(low, c)
                else:
                    small.append(t)
            if small:
                reference.clip_(small, c)
            if groups and not all(dtype.is_floating_point for _, dtype in groups):
                raise TypeError
        except (AttributeError, TypeError, RuntimeError, NotImplementedError):
            for i, t in enumerate(tensors):  # (some CPU tensors may be clipped already)
                _float_tensor(t, f"params[{i}]")
            raise
        for group in groups.values():
            if dispatch.use_triton(group[0]):
                dispatch.triton_op("clip").clip_(group, c)
            else:
                reference.clip_(group, c)
