"""Trick base classes: the metadata every trick declares, and the four kinds.

A trick is a class; its class attributes are its metadata, read by the registry, the CLI
and the composition checker without instantiating anything. An *instance* is the trick
configured with parameter values; it is registered as a plugin on a composition's run
plugin manager, so its ``@hookimpl`` methods are called during training.

The kinds implement the run hooks that fit them, so a trick author writes plain methods:

- `Loss`: ``d_loss(real_logits, fake_logits)`` and ``g_loss(real_logits, fake_logits)``.
- `Regularizer`: ``d_term(batch)`` and/or ``g_term(batch)``; applied every k steps
  (scaled by k) when a lazy-regularization policy asks for it.
- `Policy`: optimizers, schedules, what happens after each step; implements hooks directly.
- `Architecture`: ``build``/``transform``/``check`` models; implements hooks directly.
"""
from __future__ import annotations

from typing import Any, ClassVar

from .errors import ParamError, UnknownNameError
from .findings import Clash, Replaces, Requires
from .hookspecs import hookimpl
from .params import Param, normalize_key

KINDS = ("loss", "regularizer", "policy", "architecture")
#: the run hooks through which a trick can shape what a trained run samples: the models'
#: structure, the generator's inputs, the published sampler (``generator_ema``).
SAMPLING_HOOKS = ("gantrix_build_model", "gantrix_transform_model", "gantrix_latent",
                  "gantrix_condition", "gantrix_after_generator_step", "gantrix_load_state_dict")


class Trick:
    """Base of every trick. Subclass one of the kinds below rather than this class."""

    #: kebab-case, unique, stable: what users type on the command line.
    name: ClassVar[str] = ""
    #: one of `KINDS`.
    kind: ClassVar[str] = ""
    #: one line for ``gantrix list``.
    summary: ClassVar[str] = ""
    #: the parameters, in order; the first one may be given positionally (``n-critic:5``).
    params: ClassVar[tuple[Param, ...]] = ()
    #: the citation this trick comes from.
    paper: ClassVar[str] = ""
    #: tags this trick needs in the composition (`Requires` records or plain tags).
    requires: ClassVar[tuple[Requires | str, ...]] = ()
    #: tags this trick must not (or should not) be combined with.
    conflicts: ClassVar[tuple[Clash, ...]] = ()
    #: tags this trick supersedes (`Replaces` records or plain tags).
    replaces: ClassVar[tuple[Replaces | str, ...]] = ()
    #: tags this trick adds to a composition besides its name and kind.
    provides: ClassVar[tuple[str, ...]] = ()
    #: whether sampling from a trained run needs this trick installed (`gantrix sample`,
    #: `gantrix eval`, `Trainer.load`). None: derived, True when the trick implements any of
    #: `SAMPLING_HOOKS`. Set False for a trick that only trains (it checks or changes only the
    #: critic, or keeps only training state), so a run can be sampled without its plugin.
    needed_to_sample: ClassVar[bool | None] = None
    #: the roles (``"generator"``, ``"discriminator"``) whose forward pass this trick
    #: differentiates twice: a penalty on the critic's input gradient, a look-ahead
    #: differentiated through the critic's updates. ``--compile`` leaves those models'
    #: forward passes eager, since torch.compile's graphs cannot be differentiated twice
    #: (`gantrix.compiling`). A trick may set it per instance, from its parameters.
    differentiates_twice: ClassVar[tuple[str, ...]] = ()
    #: set by the registry: the distribution (plugin) that registered the class.
    plugin: ClassVar[str] = ""

    def __init__(self, **values: Any):
        declared = {p.name: p for p in self.params}
        config = {}
        for key, value in values.items():
            key = normalize_key(key)
            if key not in declared:
                raise UnknownNameError(f"parameter of {self.name}", key, declared)
            if key in config:  # one_sided= and one-sided= both
                raise _twice(self.name, key)
            config[key] = declared[key].validate(value, self.name)
        for p in self.params:
            config.setdefault(p.name, p.default)
        self.config: dict[str, Any] = config
        for key, value in config.items():
            setattr(self, key, value)
        self.validate()

    def validate(self) -> None:
        """Check relations between parameters; raise `ParamError` with a clear message."""

    def features(self) -> set[str]:
        """The tags this configured trick contributes: its name, kind and ``provides``.

        Override when a tag depends on a parameter (an optimizer with momentum only when
        ``beta1 > 0``, a BatchNorm critic only when ``critic_norm == "batch"``).
        """
        return {self.name, self.kind, *self.provides}

    @classmethod
    def samples(cls) -> bool:
        """`needed_to_sample`, derived from the implemented hooks when not declared."""
        if cls.needed_to_sample is not None:
            return cls.needed_to_sample
        return any(hasattr(cls, hook) for hook in SAMPLING_HOOKS)

    @classmethod
    def parse_params(cls, text: str) -> dict[str, Any]:
        """Parse ``"key=value,key=value"`` (or a lone value for the first parameter)."""
        declared = {p.name: p for p in cls.params}
        values: dict[str, Any] = {}
        for i, part in enumerate(p for p in text.split(",") if p.strip()):
            if "=" in part:
                key, raw = part.split("=", 1)
                key = normalize_key(key)
            elif i == 0 and cls.params:
                key, raw = cls.params[0].name, part
            else:
                raise ParamError(
                    f"{cls.name}: cannot read {part!r}; write key=value "
                    f"(parameters: {', '.join(declared) or 'none'})"
                )
            if key not in declared:
                raise UnknownNameError(f"parameter of {cls.name}", key, declared)
            if key in values:
                raise _twice(cls.name, key)
            values[key] = declared[key].parse(raw, cls.name)
        return values

    @classmethod
    def describe(cls) -> str:
        """The long description: the class docstring, dedented."""
        import inspect

        return inspect.cleandoc(cls.__doc__ or cls.summary)

    def spec(self) -> str:
        """This configured trick as a command-line string, e.g. ``gradient-penalty:weight=5.0``."""
        changed = {k: v for k, v in self.config.items()
                   if v != next(p.default for p in self.params if p.name == k)}
        args = ",".join(f"{k}={_fmt(v)}" for k, v in changed.items())
        return f"{self.name}:{args}" if args else self.name

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"<{type(self).__name__} {self.name}({args})>"


def _twice(trick: str, key: str) -> ParamError:
    """A parameter given twice in one trick (``weight=1,weight=2``): which one is meant is
    a guess, so neither is taken."""
    return ParamError(f"{trick}: parameter {key!r} is given twice; give it once")


def _fmt(v: Any) -> str:
    return "none" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


class Loss(Trick):
    """An adversarial loss on critic logits. Exactly one per composition.

    Subclasses write ``d_loss`` and ``g_loss``; both take the critic's logits on real and
    fake samples (any shape, the same for both) and return a scalar tensor.
    """

    kind = "loss"
    #: whether ``g_loss`` reads ``real_logits``; when False the composed step passes None
    #: and saves the critic's forward pass on real data during generator steps.
    generator_uses_real: ClassVar[bool] = True

    def d_loss(self, real_logits, fake_logits):
        raise NotImplementedError(f"{type(self).__name__} must define d_loss")

    def g_loss(self, real_logits, fake_logits):
        raise NotImplementedError(f"{type(self).__name__} must define g_loss")

    @hookimpl
    def gantrix_discriminator_loss(self, batch):
        return self.d_loss(batch.real_logits, batch.fake_logits)

    @hookimpl
    def gantrix_generator_loss(self, batch):
        real = batch.real_logits if self.generator_uses_real else None
        return self.g_loss(real, batch.fake_logits)


class Regularizer(Trick):
    """An extra loss term for the critic (``d_term``) and/or the generator (``g_term``).

    Each returns a scalar tensor, or None to add nothing this step. The term is logged under
    the trick's name. When a policy sets an interval k for this regularizer, the term is
    computed only every k-th step and multiplied by k.
    """

    kind = "regularizer"

    def d_term(self, batch):
        return None

    def g_term(self, batch):
        return None

    def _lazy(self, batch, term):
        k = batch.regularization_interval(self)
        if batch.step % k:
            return None
        value = term(batch)
        return None if value is None else {self.name: value * k if k != 1 else value}

    @hookimpl
    def gantrix_discriminator_terms(self, batch):
        return self._lazy(batch, self.d_term)

    @hookimpl
    def gantrix_generator_terms(self, batch):
        return self._lazy(batch, self.g_term)


class Policy(Trick):
    """How training runs: optimizers, step schedules, what happens after each step."""

    kind = "policy"


class Architecture(Trick):
    """Rules for the models: build them, transform them, check them."""

    kind = "architecture"
