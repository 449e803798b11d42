"""The composed training step: k critic updates, then m generator updates (one of each
unless the composition says more), every part of it decided by the composition's hooks.

    build:     gantrix_build_model → gantrix_transform_model (chained) → gantrix_check_model
    optimizer: gantrix_configure_optimizer (first answer, else the default Adam)
    per step:   gantrix_critic_steps, gantrix_generator_steps (first answers, else 1)
    per update: gantrix_latent → gantrix_condition → G(z) → gantrix_prepare_batch → loss + Σ terms
                → backward → gantrix_lr_factor → optimizer step → gantrix_after_*_step
    G update:   first gantrix_generator_critic: the critic that scores it (default: D)

It works with any models that follow the shapes of `gantrix.models` (G takes z and keyword
conditioning inputs, D takes x and keyword conditioning inputs).
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

from . import compiling, distributed
from .batch import Batch
from .compose import Composition
from .errors import CompositionError, GantrixError, ModelTransformError
from .findings import Finding
from .hookspecs import call_plugin, failed_hook
from .models import ROLES, ModelSpec, Models, default_model
from .optim import adam
from .precision import Precision
from .run_control import stop_overdue

DEFAULT_LR = 2e-4
DEFAULT_BETAS = (0.5, 0.999)

DataSource = Callable[[], tuple[torch.Tensor, torch.Tensor | None]]


def latent_generator(device: torch.device | str, seed: int) -> torch.Generator:
    """The generator that draws a run's latent vectors, on ``device`` (so that z is drawn
    where it is used: no host-to-device copy a step), seeded with ``seed``."""
    return torch.Generator(torch.device(device)).manual_seed(seed)


def load_generator_state(generator: torch.Generator, state: torch.Tensor) -> str:
    """Restore ``generator`` from ``state``, a ``get_state()`` of a generator that may have
    lived on another kind of device; returns ``"exact"`` or ``"reseeded"``.

    The states of the CPU's generator (Mersenne Twister, 5,056 bytes) and CUDA's (Philox:
    seed and offset, 16 bytes) do not convert into each other: a checkpoint written on CUDA
    and resumed or sampled on the CPU (or the reverse) cannot continue the same stream. Where
    the state's size is this generator's own it is restored exactly (same device kind: a
    resumed run is bit-identical); otherwise the generator is seeded from a hash of the state,
    so the run goes on, deterministically (the same checkpoint always gives the same stream
    on the new device), with a fresh latent stream.
    """
    state = state.detach().to("cpu", torch.uint8).contiguous()
    if state.numel() == generator.get_state().numel():
        generator.set_state(state)
        return "exact"
    import hashlib

    digest = hashlib.sha256(state.numpy().tobytes()).digest()
    generator.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    return "reseeded"


def build_models(composition: Composition, spec: ModelSpec,
                 generator: nn.Module | None = None,
                 discriminator: nn.Module | None = None) -> Models:
    """Build (or take the user's), transform and check both models; their findings join
    ``composition.findings`` (a run keeps them apart: `gantrix.plan.plan_run`).

    Raises `CompositionError` when a trick cannot transform a model or its model check finds
    an error.
    """
    try:
        models, findings = checked_models(composition, spec, generator, discriminator)
    except CompositionError as exc:
        composition.findings.extend(exc.findings)
        raise
    composition.findings.extend(findings)
    return models


def checked_models(composition: Composition, spec: ModelSpec,
                   generator: nn.Module | None = None,
                   discriminator: nn.Module | None = None) -> tuple[Models, list[Finding]]:
    """`build_models`' models and their findings (the tricks' transforms' and model
    checks'), leaving the composition as it was. Raises `CompositionError` with the
    findings when one is an error."""
    hook = composition.hook
    given = {"generator": generator, "discriminator": discriminator}
    built = {}
    findings: list[Finding] = []
    for role in ROLES:
        model = given[role]
        if model is None:
            model = _built(role, spec, lambda: hook.gantrix_build_model(role=role, spec=spec)
                           or default_model(role, spec), composition.pm.get_plugins())
        impls = reversed(hook.gantrix_transform_model.get_hookimpls())  # in call order
        for trick in dict.fromkeys(impl.plugin for impl in impls):  # chained, one at a time
            try:
                out = call_plugin(composition.pm, "gantrix_transform_model", trick,
                                  model=model, role=role, spec=spec)
            except ModelTransformError as exc:
                findings.append(Finding("error", str(exc), (trick.name,), trick.paper))
                continue
            except GantrixError:
                raise
            except Exception as exc:  # not a refusal: the trick broke
                raise TrickFailed(trick, "gantrix_transform_model", 0, exc) from exc
            model = out[0] if out else model
        built[role] = model
    models = Models(built["generator"], built["discriminator"])
    findings += composition.check_models(models)
    if any(f.severity == "error" for f in findings):
        raise CompositionError(findings)
    return models, findings


def configure_optimizers(composition: Composition, models: Models,
                         lr: float = DEFAULT_LR) -> dict[str, torch.optim.Optimizer]:
    """One optimizer per role, from the composition or the core's default Adam (whose
    learning rate is ``lr``)."""
    optimizers = {}
    for role in ROLES:
        params = [p for p in models.by_role(role).parameters() if p.requires_grad]
        opt = composition.hook.gantrix_configure_optimizer(params=params, role=role)
        optimizers[role] = opt or adam(params, lr, DEFAULT_BETAS)
    return optimizers


def _sum_terms(results) -> dict[str, torch.Tensor]:
    terms: dict[str, torch.Tensor] = {}
    for result in results:
        for name, value in (result or {}).items():
            if name in terms:
                raise RuntimeError(f"two tricks returned a loss term named {name!r}")
            terms[name] = value
    return terms


class ComposedStep:
    """Runs updates of ``models`` as ``composition`` says; keeps the update counters.

    ``step()`` does one training step: the critic updates, then the generator updates,
    pulling real batches from ``data``; it returns the detached losses and terms of the last
    updates. ``steps`` counts training steps, ``d_steps`` and ``g_steps`` each model's
    updates; ``total_steps`` (the planned training steps) is what learning-rate schedules
    see.
    """

    def __init__(self, composition: Composition, models: Models, spec: ModelSpec,
                 optimizers: dict[str, torch.optim.Optimizer] | None = None,
                 generator: torch.Generator | None = None, total_steps: int | None = None,
                 precision: Precision | None = None):
        self.composition = composition
        self.hook = composition.hook
        self.models = models
        self.spec = spec
        self.optimizers = optimizers or configure_optimizers(composition, models)
        self.rng = generator
        self.total_steps = total_steps
        self.precision = precision or Precision()
        self.steps = 0
        self.d_steps = 0
        self.g_steps = 0
        # steps in a row in which the fp16 scaler skipped an update (inf/NaN gradients), on
        # the device (see ``skipped_steps``); this step's skip so far (a bool or a device bool)
        self._skipped_run: torch.Tensor | int = 0
        self._skipped: torch.Tensor | bool = False
        #: what each model's forward pass in an update calls: the model, or its compiled
        #: forward (`compile`)
        self._forward: dict[str, Callable] = {role: models.by_role(role) for role in ROLES}
        self._compiled = False

    def compile(self, roles) -> None:
        """Run the forward passes of the models of ``roles`` through torch.compile in every
        update from now on (`gantrix.compiling`); the models themselves are unchanged."""
        for role in roles:
            self._forward[role] = compiling.compiled(self.models.by_role(role))
            self._compiled = True

    def _batch(self, real: torch.Tensor, labels, phase: str, *, critic: Callable | None = None,
               step: int | None = None, graph: bool | None = None) -> Batch:
        """A conditioned, prepared batch for ``phase``, scored by ``critic`` (default: the
        discriminator) and counted as update ``step`` (default: this phase's next). The fakes
        carry the generator's graph when ``graph`` (default: in generator updates only)."""
        z = distributed.shard(draw_latent(self.hook, real.shape[0] * distributed.world_size(),
                                          self.spec.latent_dim, device=real.device,
                                          generator=self.rng))
        if step is None:
            step = self.d_steps if phase == "discriminator" else self.g_steps
        batch = Batch(real=real, labels=labels, z=z, phase=phase, step=step,
                      critic=self._forward["discriminator"] if critic is None else critic,
                      hook=self.hook)
        batch.grad_scale = self.precision.grad_scale("discriminator" if phase == "discriminator"
                                                     else "generator")
        self.hook.gantrix_condition(batch=batch)
        if graph is None:
            graph = phase == "generator"  # the critic's update needs no graph through G
        with contextlib.nullcontext() if graph else torch.no_grad():
            fake = self._forward["generator"](z, **batch.generator_inputs)
        batch.fake = fake.to(real.dtype)  # autocast's half-precision output, as the data
        self.hook.gantrix_prepare_batch(batch=batch)
        return batch

    def probe(self, batch_size: int, device: torch.device | str = "cpu") -> None:
        """Run both models once on a batch of ``batch_size`` as a critic update would (the
        tricks' conditioning and batch preparation included), in eval mode and without
        gradients, and raise `GantrixError` naming the module, the expected and the actual
        shapes when the generator does not take the latent size or make the data's shape,
        or the critic does not return one logit per sample. Uses the global random state
        (fork it to keep yours) and changes nothing else. A batch that cannot be allocated
        is an `OutOfMemory` saying what it takes, a trick's exception a `TrickFailed`."""
        try:
            with _memory_for_batch(batch_size, self.spec):
                return self._probe(batch_size, device)
        except Exception as exc:
            failure = self._failure(exc, before=True)
            if failure is exc:
                raise
        raise failure from failure.error

    def _probe(self, batch_size: int, device: torch.device | str) -> None:
        g, d = self.models.generator, self.models.discriminator
        modes = [(m, m.training) for m in (g, d)]
        n = batch_size
        real = torch.zeros(n, *self.spec.shape, device=device)
        labels = (torch.zeros(n, dtype=torch.long, device=device)
                  if self.spec.num_classes else None)
        try:
            for m, _ in modes:
                m.eval()
            with torch.no_grad():
                z = draw_latent(self.hook, n, self.spec.latent_dim, device=device)
                batch = Batch(real=real, labels=labels, z=z, phase="discriminator", step=0,
                              critic=d, hook=self.hook)
                self.hook.gantrix_condition(batch=batch)
                fake = _run(g, "generator", f"a latent batch of shape {tuple(z.shape)} "
                            f"(latent_dim {self.spec.latent_dim})", z, batch.generator_inputs)
                if not isinstance(fake, torch.Tensor) or fake.shape != real.shape:
                    got = tuple(fake.shape) if isinstance(fake, torch.Tensor) else type(fake).__name__
                    raise GantrixError(
                        f"the generator ({type(g).__name__}) returned {got} for {n} latent "
                        f"vectors; the data needs {tuple(real.shape)} (samples of shape "
                        f"{tuple(self.spec.shape)})")
                batch.fake = fake
                self.hook.gantrix_prepare_batch(batch=batch)
                for side in ("real", "fake"):
                    x = batch.sample(side)
                    out = _run(d, "discriminator", f"a {side} batch of shape {tuple(x.shape)}",
                               x, batch.critic_inputs[side])
                    logits = out.get("logits") if isinstance(out, dict) else out
                    k = x.shape[0]
                    if not isinstance(logits, torch.Tensor) or logits.shape not in (
                            (k,), (k, 1)):
                        got = (tuple(logits.shape) if isinstance(logits, torch.Tensor)
                               else "a dict without 'logits'" if isinstance(out, dict)
                               else type(logits).__name__)
                        raise GantrixError(
                            f"the discriminator ({type(d).__name__}) returned {got} for a "
                            f"{side} batch of shape {tuple(x.shape)}; a critic returns one "
                            f"logit per sample: shape ({k},) or ({k}, 1), or a dict whose "
                            f"'logits' has that shape")
        finally:
            for m, mode in modes:
                m.train(mode)

    def _objective(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The composition's loss and extra terms on ``batch``, for the batch's phase."""
        if batch.phase == "discriminator":
            return (self.hook.gantrix_discriminator_loss(batch=batch),
                    _sum_terms(self.hook.gantrix_discriminator_terms(batch=batch)))
        return (self.hook.gantrix_generator_loss(batch=batch),
                _sum_terms(self.hook.gantrix_generator_terms(batch=batch)))

    def _critic_loss(self, pull: DataSource | None, real: torch.Tensor, labels) -> Callable:
        """The ``critic_loss`` callable `gantrix_generator_critic` receives: the critic's
        objective (loss + terms) for any critic on a fresh batch from ``pull`` (or on
        ``real``, ``labels`` again when there is no data source)."""

        def critic_loss(critic: Callable, *, through_generator: bool = False,
                        ahead: int = 0) -> torch.Tensor:
            x, y = pull() if pull is not None else (real, labels)
            batch = self._batch(x, y, "discriminator", critic=critic,
                                step=self.d_steps + ahead, graph=through_generator)
            return _total(*self._objective(batch))

        return critic_loss

    def _objective_of(self, batch_of: Callable[[], Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss and terms of the batch ``batch_of`` makes, forward passes under the
        precision's autocast."""
        with self.precision.autocast():
            return self._objective(batch_of())

    def _update(self, role: str, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> dict:
        total = _total(loss, terms)
        opt = self.optimizers[role]
        opt.zero_grad(set_to_none=True)
        stepped = self.precision.backward_and_step(
            role, total, opt, lambda: self._schedule(role, opt),
            after_backward=lambda: distributed.average_gradients(
                p for group in opt.param_groups for p in group["params"]))
        if stepped is not True:  # fp16: a device bool, combined without reading it back
            skipped = torch.logical_not(stepped)
            self._skipped = skipped if self._skipped is False else torch.logical_or(skipped, self._skipped)
        prefix = "d" if role == "discriminator" else "g"
        out = {f"{prefix}_loss": loss.detach()}
        out.update({f"{prefix}/{k}": v.detach() for k, v in terms.items()})
        return out

    def _schedule(self, role: str, opt: torch.optim.Optimizer) -> None:
        """Set ``opt``'s learning rates from the tricks' factors for this step, if any."""
        factors = self.hook.gantrix_lr_factor(role=role, step=self.steps, total=self.total_steps)
        if not factors:
            return
        factor = math.prod(factors)
        for group in opt.param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor

    def discriminator_step(self, real: torch.Tensor, labels=None) -> dict:
        """One critic update on a real batch."""
        out = self._update("discriminator", *self._objective_of(
            lambda: self._batch(real, labels, "discriminator")))
        self.hook.gantrix_after_discriminator_step(models=self.models, step=self.d_steps)
        self.d_steps += 1
        return out

    def generator_step(self, real: torch.Tensor, labels=None,
                       data: DataSource | Iterator | None = None) -> dict:
        """One generator update; the critic's weights are frozen meanwhile (no wasted grads).

        The update is scored by the critic `gantrix_generator_critic` answers (the
        discriminator itself by default). A trick that builds that critic from more critic
        losses (an unrolled look-ahead) gets fresh real batches from ``data``; without it,
        every such loss reuses this update's ``real``, ``labels`` (with fresh fakes).
        """
        pull = None if data is None else _puller(data)
        with self.precision.autocast():
            critic = self.hook.gantrix_generator_critic(
                critic=self.models.discriminator, optimizer=self.optimizers["discriminator"],
                critic_loss=self._critic_loss(pull, real, labels),
                grad_scale=self.precision.grad_scale("discriminator"))
        critic = self._forward["discriminator"] if critic is None else critic
        modules = [self.models.discriminator]
        if isinstance(critic, nn.Module) and critic not in (self.models.discriminator,
                                                            self._forward["discriminator"]):
            modules.append(critic)
        frozen = [p for m in modules for p in m.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            out = self._update("generator", *self._objective_of(
                lambda: self._batch(real, labels, "generator", critic=critic)))
        finally:
            for p in frozen:
                p.requires_grad_(True)
        self.hook.gantrix_after_generator_step(models=self.models, step=self.g_steps)
        self.g_steps += 1
        return out

    def critic_steps(self) -> int:
        """How many critic updates open the next training step."""
        return int(self.hook.gantrix_critic_steps(step=self.steps) or 1)

    def generator_steps(self) -> int:
        """How many generator updates close the next training step."""
        return int(self.hook.gantrix_generator_steps(step=self.steps) or 1)

    def step(self, data: DataSource | Iterator) -> dict:
        """One training step: k critic updates, then m generator updates, each on a fresh
        real batch (and fresh latent vectors); returns the last losses and terms (under
        fp16, a step in which the scaler skipped an update counts in ``skipped_steps``).

        A step that fails is left partly done (the models are updated in place): a trick's
        exception becomes `TrickFailed` (naming the trick, its plugin and the hook), memory
        that cannot be allocated `OutOfMemory`; and a stop asked for by a signal long
        enough ago ends a step of many critic updates between two of them, as `StepAbandoned`
        (`gantrix.run_control.stop_overdue`). A run resumes from its last checkpoint
        (`gantrix.recovery`)."""
        try:
            return self._step(_puller(data))
        except Exception as exc:
            failure = self._failure(exc)
            if failure is exc:
                raise
        if isinstance(failure, OutOfMemory):
            raise failure from None  # (torch's frames, holding the step's tensors, go)
        raise failure from failure.error

    def _step(self, pull: DataSource) -> dict:
        out: dict = {}
        self._skipped = False
        critic_steps = self.critic_steps()
        for i in range(critic_steps):
            if i and stop_overdue():
                raise StepAbandoned(self.steps + 1, i, critic_steps)
            out.update(self.discriminator_step(*pull()))
        for _ in range(self.generator_steps()):
            out.update(self.generator_step(*pull(), data=pull))
        self.steps += 1
        if isinstance(self._skipped, torch.Tensor):
            self._skipped_run = torch.where(self._skipped, self._skipped_run + 1, 0)
        return out

    def _failure(self, exc: Exception, before: bool = False) -> Exception:
        """What a failed step (``before``: the probe before training) raises for ``exc``
        (see `step`); ``exc`` itself when the core failed, or when it is already one of
        those (or a user mistake found by the core, in the probe)."""
        if isinstance(exc, (StepAbandoned, TrickFailed, OutOfMemory)) or (
                before and isinstance(exc, GantrixError)):
            return exc
        failed = failed_hook(exc, self.composition.pm.get_plugins())
        if self._compiled and (compiled := compiling.failure(
                exc, self.steps + 1, failed[0].name if failed else None)):
            return compiled
        if out_of_memory(exc):
            return OutOfMemory(f"training step {self.steps + 1} needs more memory than "
                               f"{_where(exc)} can give{_asked(exc)}: lower --batch-size (or "
                               f"--width, --latent-dim, --image-size)")
        if failed is None:
            return exc
        trick, hook = failed
        return TrickFailed(trick, hook, 0 if before else self.steps + 1, exc)

    @property
    def skipped(self) -> torch.Tensor | bool:
        """Whether the fp16 scaler skipped an update of the last step: False without a
        scaler, else a bool on the device (nothing is read back)."""
        return self._skipped

    @property
    def skipped_steps(self) -> int:
        """Steps in a row, up to the last, in which the fp16 scaler skipped an update. Under
        fp16 this reads a device value back (the host waits for the step to finish): read it
        at log lines; without a scaler it is 0 and reads nothing."""
        return int(self._skipped_run)

    @skipped_steps.setter
    def skipped_steps(self, value: int) -> None:
        self._skipped_run = value


class TrickFailed(GantrixError):
    """A trick raised inside a run hook during training step ``step`` (0: while the models
    were built or checked, before training); ``trick`` is the configured trick, ``hook``
    the hook's name, ``error`` the exception it raised."""

    def __init__(self, trick, hook: str, step: int, error: BaseException, more: str = ""):
        self.trick, self.hook, self.step, self.error = trick, hook, step, error
        cls = type(trick)
        name = getattr(trick, "name", "") or cls.__name__
        plugin = getattr(trick, "plugin", "")
        plugin = f"plugin {plugin}" if plugin else "registered by no plugin"
        text = str(error).strip()
        super().__init__(
            f"trick {name!r} ({cls.__module__}.{cls.__qualname__}, {plugin}) failed "
            f"in {hook} {f'at training step {step}' if step else 'before training'}: "
            f"{type(error).__name__}"
            f"{': ' + text if text else ''}{more}")


class OutOfMemory(GantrixError):
    """A training step (or the models' build) needed more memory than could be allocated."""


class StepAbandoned(GantrixError):
    """A training step stopped between two critic updates because a stop was asked for
    (`gantrix.run_control.stop_overdue`): ``done`` of its ``total`` updates were made."""

    def __init__(self, step: int, done: int, total: int):
        self.step, self.done, self.total = step, done, total
        super().__init__(f"training step {step} stopped after {done} of its {total} critic "
                         f"updates")


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says an allocation failed (CUDA's or the CPU allocator's, or
    Python's MemoryError), as opposed to any other error."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("not enough memory" in text
                                              or "can't allocate memory" in text
                                              or "out of memory" in text)


def _built(role: str, spec: ModelSpec, build: Callable[[], nn.Module],
           plugins: Iterable[object]) -> nn.Module:
    """``build()``, the model for ``role``; `OutOfMemory` saying how much its parameters
    need (counted on the meta device, where nothing is allocated) when it cannot be
    allocated, `TrickFailed` when one of ``plugins`` raised in building it."""
    try:
        return build()
    except Exception as exc:
        if not out_of_memory(exc):
            failed = failed_hook(exc, plugins)
            if failed is None or isinstance(exc, GantrixError):
                raise
            raise TrickFailed(*failed, 0, exc) from exc
        where, asked = _where(exc), _asked(exc)
    try:
        with torch.device("meta"):
            size = sum(p.numel() * p.element_size() for p in build().parameters())
        need = f"its parameters alone take {_gib(size)}"
    except Exception:  # a build that cannot run on the meta device: torch's own figure
        need = f"it needs more than can be allocated{asked}"
    raise OutOfMemory(f"the {role} for data of shape {tuple(spec.shape)} cannot be built: "
                      f"{need}, more than {where} can give; lower --latent-dim "
                      f"({spec.latent_dim}) or --width ({spec.width})")


@contextlib.contextmanager
def _memory_for_batch(n: int, spec: ModelSpec) -> Iterator[None]:
    """`OutOfMemory` for an allocation that fails inside: a batch of ``n`` that does not
    fit, with what the batch itself takes (the real and the fake samples: two of it)."""
    try:
        yield
    except Exception as exc:
        if not out_of_memory(exc):
            raise
        size = 2 * n * math.prod(spec.shape) * 4
        raise OutOfMemory(f"a batch of {n} samples of shape {tuple(spec.shape)} needs more "
                          f"memory than {_where(exc)} can give: the real and fake samples "
                          f"alone take {_gib(size)} (float32){_asked(exc)}, and the models' "
                          f"activations more; lower --batch-size") from None


def _where(exc: BaseException) -> str:
    return "the GPU" if isinstance(exc, torch.OutOfMemoryError) or "CUDA" in str(exc) \
        else "this machine"


def _asked(exc: BaseException) -> str:
    """``" (one tensor alone needed 37.3 GiB)"`` from torch's message, when it says."""
    import re

    text = str(exc)
    found = re.search(r"allocate (\d+) bytes", text)
    if found:
        return f" (one tensor alone needed {_gib(int(found.group(1)))})"
    found = re.search(r"[Tt]ried to allocate ([\d.]+ [KMGT]iB)", text)
    return f" (one tensor alone needed {found.group(1)})" if found else ""


def _gib(n: float) -> str:
    """A byte count in words: ``37.3 GiB``, ``512 MiB``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            value = n / size
            return f"{value:.3g} {unit}" if value < 1000 else f"{value:.0f} {unit}"
    return f"{int(n)} bytes"


def draw_latent(hook, n: int, dim: int, *, device: torch.device | str,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` latent vectors of size ``dim`` from the composition's prior (the first
    `gantrix_latent` answer), N(0, I) when no trick sets one."""
    z = hook.gantrix_latent(n=n, dim=dim, device=device, generator=generator)
    if z is None:
        return torch.randn(n, dim, device=device, generator=generator)
    if not isinstance(z, torch.Tensor) or tuple(z.shape) != (n, dim):
        got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise GantrixError(f"gantrix_latent returned {got} for {n} latent vectors of size "
                           f"{dim}; it must return a tensor of shape ({n}, {dim})")
    return z


def _run(model: nn.Module, role: str, what: str, x: torch.Tensor, inputs: dict):
    """``model(x, **inputs)``; a failure names the role, the module and its input."""
    try:
        return model(x, **inputs)
    except GantrixError:
        raise
    except Exception as exc:  # the user's module failed: say where, keep torch's words
        if out_of_memory(exc):
            raise  # (the batch is too large: `_memory_for_batch` says so)
        keywords = f" and keyword inputs {sorted(inputs)}" if inputs else ""
        raise GantrixError(f"the {role} ({type(model).__name__}) fails on {what}{keywords}: "
                           f"{type(exc).__name__}: {str(exc).strip()}") from None


def _total(loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """The loss plus its extra terms: what an update minimises."""
    return loss + sum(terms.values()) if terms else loss


def _puller(data: DataSource | Iterator) -> DataSource:
    """``data`` as a callable returning (real batch, labels or None)."""
    return data if callable(data) else lambda: next(data)
