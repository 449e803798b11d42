"""The hook contract: every hook gantrix calls, documented where it is declared.

There are two levels, as in pytest and datasette.

**Discovery hooks** are called on the one global plugin manager (`gantrix.registry`), into
which gantrix's built-in modules (``gantrix.registry.BUILTIN_PLUGINS``) and every installed
entry point of group ``gantrix`` are registered. They tell gantrix what exists: tricks,
recipes, trackers, CLI commands.

**Run hooks** are called on a plugin manager built for one composed recipe
(`gantrix.compose.Composition`): each chosen trick is instantiated with its parameters and
registered there as a plugin. The built-in base classes (`gantrix.Loss`, `Regularizer`,
`Policy`, `Architecture`) implement the run hooks that fit their kind, so a trick author
usually writes plain methods (``d_loss``, ``d_term``, ...) and never touches these hooks;
a trick that needs more implements any hook below directly with ``@hookimpl``.

A hook implementation that matches no spec here is rejected (``check_pending``). An
implementation may take only the arguments it needs, in any order (``def
gantrix_transform_model(self, model)``): gantrix calls every implementation through pluggy,
which passes each one the arguments it names (`call_plugin` when one plugin is called alone).

The annotations are for readers and type checkers; this module imports only pluggy at run
time, so every module of gantrix (and every plugin) can import it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import pluggy

if TYPE_CHECKING:
    from os import PathLike

    import torch
    import typer
    from torch import nn

    from .batch import Batch
    from .findings import Finding
    from .models import ModelSpec, Models
    from .trick import Trick

PROJECT = "gantrix"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


def call_plugin(pm: pluggy.PluginManager, name: str, plugin: object, /, **kwargs: Any) -> Any:
    """Call hook ``name`` of ``plugin`` alone, through pluggy, with the hook's arguments.

    For the core's loops that call plugins one at a time (to record which one failed, or to
    chain results): pluggy passes the implementation only the arguments it names, runs its
    wrappers, and reports the call to pluggy's tracing, exactly as a call of the whole hook
    would. Returns what the hook call returns: the list of non-None results (for a
    ``firstresult`` hook, the answer or None). An exception of the implementation propagates
    unchanged.
    """
    others = [other for other in pm.get_plugins() if other is not plugin]
    return pm.subset_hook_caller(name, others)(**kwargs)


def failed_hook(exc: BaseException, plugins: Iterable[object]) -> tuple[object, str] | None:
    """The plugin among ``plugins`` whose hook implementation raised ``exc``, and the hook's
    name; None when no implementation of theirs did (the core itself failed).

    Read from the traceback, after the fact, so the calls themselves cost nothing more: each
    of pluggy's hook calls on the way is a frame of its call loop holding the implementation
    being called (``hook_impl``) and the hook's name; the innermost of them that belongs to
    ``plugins`` raised (a trick's hook that calls another trick's through the core is not
    blamed for the other's failure). Where pluggy's loop cannot be recognised, the innermost
    frame of a method of one of ``plugins`` names it, with its method for the hook.
    """
    plugins = {id(p) for p in plugins}
    found = fallback = None
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        impl = frame.f_locals.get("hook_impl") if frame.f_code is _MULTICALL else None
        if impl is not None and id(impl.plugin) in plugins:
            found = (impl.plugin, str(frame.f_locals.get("hook_name", impl.function.__name__)))
        owner = frame.f_locals.get("self")
        if owner is not None and id(owner) in plugins:
            fallback = (owner, frame.f_code.co_name)
        tb = tb.tb_next
    return found or fallback


def _multicall_code():
    """The code of pluggy's hook-call loop (a private name: None where it moved)."""
    try:
        from pluggy._callers import _multicall
    except ImportError:
        return None
    return getattr(_multicall, "__code__", None)


_MULTICALL = _multicall_code()


# --------------------------------------------------------------------------- discovery


@hookspec
def gantrix_register_tricks(register: Callable[[type[Trick]], None]) -> None:
    """Register trick classes.

    ``register(cls)`` takes a subclass of `gantrix.Trick` (usually of `Loss`,
    `Regularizer`, `Policy` or `Architecture`) whose class attributes carry its metadata:
    ``name`` (kebab-case, unique, used on the CLI), ``summary``, ``params``, ``paper``,
    ``requires``, ``conflicts``, ``replaces``. Registering a name twice is an error that
    names both plugins.
    """


@hookspec
def gantrix_register_recipes(
        register: Callable[[str, str | PathLike[str] | Mapping[str, Any]], None]) -> None:
    """Register named recipes (a paper's full setup).

    ``register(name, path_or_mapping)`` takes either a TOML file path or a mapping of the
    same shape (``{"summary": ..., "paper": ..., "tricks": [...]}`` where each trick is a
    ``"name:key=value,..."`` string or a table with ``name`` and params); the summary is
    the file's or mapping's ``summary``. Registering a name twice is an error that names
    both plugins.
    """


@hookspec
def gantrix_register_trackers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register experiment trackers: services a run's metrics lines and sample pictures
    also go to (``gantrix train --log NAME[,NAME...]``; the ``log`` setting).

    ``register(name, factory, *, packages=(), install="", summary="")``: ``name`` is
    kebab-case and unique (what users type after ``--log``); ``packages`` are the modules
    the tracker imports, each imported when a run that asks for the tracker is set up,
    before any file is written: one that cannot be imported stops the run with a
    `GantrixError` that names it and shows ``install``, the command that installs it
    (``pip install 'gantrix[tensorboard]'``); ``summary`` is one line (by default the first
    of the factory's docstring). Registering a name twice is an error that names both
    plugins. Import the packages inside the factory, not at module level, so the plugin
    loads where they are not installed.

    ``factory(run_dir=..., config=..., step=...)`` opens the tracker for one training
    session, in the process that writes the run folder (rank 0) only: ``run_dir`` is the
    run folder (a `pathlib.Path`; write files inside it), ``config`` the run's settings
    (the ``[train]`` table of its config.toml) with its tricks under ``"tricks"``, and
    ``step`` the training step the session starts from (0, or the checkpoint's when
    resumed: anything an interrupted session logged after it is stale). It returns the
    tracker, an object with

    - ``log_metrics(values, step)``: ``values`` is ``{name: float}``, the numbers of one
      line of metrics.jsonl (losses and terms, gradient norms, timings, tricks' log values,
      evaluation scores), ``step`` the line's training step;
    - ``log_image(name, path, step)`` (optional): a sample picture of the run (``name``
      ``"samples"``), ``path`` the PNG file in the run folder;
    - ``close()`` (optional): called once when `Trainer.fit` ends, also when it stops with
      an error.

    An exception of the factory stops the run before its first step (a `GantrixError`
    naming the tracker); one of a tracker's methods is a warning, after which that tracker
    gets nothing more in this session: metrics.jsonl stays the run's full record. Trackers
    are called inside the training loop: they must not draw from torch's random streams.
    """


@hookspec
def gantrix_register_commands(app: typer.Typer) -> None:
    """Add commands to the ``gantrix`` command line.

    ``app`` is the `typer.Typer` application; decorate functions with ``@app.command()``.
    Called once, when the CLI starts, after the built-in commands exist. Built-in commands
    win: a plugin that adds a command (or group) whose name is taken, or whose hook raises,
    adds no command at all and is reported as failed to load (``gantrix plugins``), with
    everything else it registered withdrawn.
    """


# --------------------------------------------------------------------------- build time


@hookspec(firstresult=True)
def gantrix_build_model(role: str, spec: ModelSpec) -> nn.Module | None:
    """Build the model for ``role`` (``"generator"`` or ``"discriminator"``), or return None.

    ``spec`` is a `gantrix.ModelSpec` describing the data (shape, number of classes, latent
    size). The first trick that returns a module wins; when none does, the core builds its
    default for the data (an MLP for vectors, a strided-conv pair for images).
    """


@hookspec
def gantrix_transform_model(model: nn.Module, role: str, spec: ModelSpec) -> nn.Module | None:
    """Return a transformed ``model`` (or None to leave it as it is).

    Called once per role after the model is built, chained: each architecture trick gets
    the previous trick's output. Used to condition a model on labels, replace activations,
    wrap layers in spectral normalisation, add a Q head, ...

    A trick that cannot transform this model raises `gantrix.ModelTransformError` with the
    reason: the core reports it as an error finding of that trick (with its paper), keeps the
    model as it was, and stops before training once every model has been checked.
    """


@hookspec
def gantrix_check_model(model: nn.Module, role: str) -> Iterable[Finding] | None:
    """Inspect a built (and transformed) model and return `Finding`s (or None).

    Errors stop the run before training; warnings are shown. This is where rules about
    real modules live: BatchNorm in a critic under a gradient penalty, a Sigmoid output
    under a Wasserstein loss, the DCGAN rules, parameter counts.
    """


@hookspec
def gantrix_check_settings(batch_size: int, processes: int) -> Iterable[Finding] | None:
    """Inspect the run's settings before any file is written or update made; return
    `Finding`s (or None).

    ``batch_size`` is the number of real samples per update (``--batch-size``: the global
    batch); ``processes`` how many processes share it (`gantrix.distributed`: each update
    sees ``batch_size / processes`` of them, a contiguous slice). Errors stop the run as
    model-check errors do. A trick whose needs depend on the batch (packs of m samples,
    groups of a minibatch statistic) says so here rather than failing at the first update;
    take only the arguments you need.
    """


@hookspec(firstresult=True)
def gantrix_configure_optimizer(params: list[nn.Parameter],
                                role: str) -> torch.optim.Optimizer | None:
    """Return the `torch.optim.Optimizer` for ``role``'s ``params``, or None.

    The first answer wins; the composition checker allows only one trick that provides
    ``"optimizer"``. Without any, the core uses Adam(lr=2e-4, betas=(0.5, 0.999)).
    """


# --------------------------------------------------------------------------- every step


@hookspec
def gantrix_lr_factor(role: str, step: int, total: int | None) -> float | None:
    """Return a factor for ``role``'s learning rate in training step ``step``, or None.

    Called before every optimizer step. The factors of all tricks multiply; the core sets
    each parameter group's lr to its initial lr (what the optimizer was built with, kept as
    ``initial_lr`` in the group, as torch's schedulers do) times the product. A schedule is
    a function of the step alone, so a resumed run follows it exactly. A training step is
    one call of `gantrix.ComposedStep.step`: its critic updates and the generator updates
    after them (one each unless `gantrix_critic_steps` or `gantrix_generator_steps` say
    more). ``total`` is the run's planned number of training steps, or None when the caller
    of `gantrix.ComposedStep` gave none; a schedule that needs it raises
    `gantrix.GantrixError`.
    """


@hookspec(firstresult=True)
def gantrix_critic_steps(step: int) -> int | None:
    """Return how many discriminator updates open training step ``step``.

    First answer wins; default 1. (`n-critic` answers 5 for WGAN.)
    """


@hookspec(firstresult=True)
def gantrix_generator_steps(step: int) -> int | None:
    """Return how many generator updates close training step ``step``, after its critic
    updates.

    First answer wins; default 1. (`n-generator` answers 2 for DCGAN's reference code,
    which updates the generator twice per critic update.)
    """


@hookspec(firstresult=True)
def gantrix_regularization_interval(trick: Trick) -> int | None:
    """Return how often (every k steps) the regularizer ``trick`` is applied, or None.

    A regularizer applied every k steps is scaled by k so its expected contribution is
    unchanged (lazy regularization, Karras et al. 2020). Default: every step.
    """


@hookspec(firstresult=True)
def gantrix_generator_critic(
        critic: nn.Module, optimizer: torch.optim.Optimizer,
        critic_loss: Callable[..., torch.Tensor],
        grad_scale: float | None) -> nn.Module | Callable[..., Any] | None:
    """Return the critic that scores the next generator update, or None for ``critic`` itself.

    Called once per generator update, before its batch is built, while the critic's
    parameters are still trainable. ``critic`` is the composition's discriminator and
    ``optimizer`` its optimizer: read or copy them, never step or modify them — the real
    critic must come out of the generator update exactly as it went in (unrolled GANs score
    the generator against a look-ahead copy of the critic).

    ``critic_loss(critic, *, through_generator=False, ahead=0)`` returns the composition's
    own discriminator objective for any ``critic`` (a module, or a callable with the
    critic's signature ``critic(x, **conditioning)``), as a scalar: the loss trick's
    discriminator loss plus every discriminator term, on a fresh real batch from the step's
    data source (the generator update's own real batch when `ComposedStep.generator_step`
    was called without one) and fresh fakes, through `gantrix_condition` and
    `gantrix_prepare_batch` like a critic update. ``through_generator`` keeps the graph
    through the generator (for a gradient through the critic's updates); ``ahead`` = i
    scores the batch as the i-th critic update from now (what lazy regularizers count).

    ``grad_scale`` is the critic's fp16 loss scale (None outside fp16): a trick that takes
    gradients of ``critic_loss`` itself multiplies the loss by it before the backward and
    divides the gradients after (float16 gradients underflow unscaled), and treats
    non-finite gradients as an overflow (`gantrix.precision`).

    The answer is a module or a callable of that signature. The core freezes a returned
    module's parameters during the generator update, like the critic's own. First answer
    wins; default: ``critic``.
    """


@hookspec(firstresult=True)
def gantrix_latent(n: int, dim: int, device: torch.device | str,
                   generator: torch.Generator | None) -> torch.Tensor | None:
    """Return ``n`` latent vectors of size ``dim`` (a tensor of shape ``(n, dim)`` on
    ``device``) drawn from the generator's prior, or None for the default N(0, I).

    Called wherever gantrix draws a generator's input: every training batch, the shape
    probe before training, and `gantrix sample`/`eval`, so a model is always sampled from
    the prior it was trained on. Draw from ``generator`` (a `torch.Generator`, or None for
    torch's global stream) so runs stay reproducible. First answer wins.
    """


@hookspec(firstresult=True)
def gantrix_code_inputs(n: int, device: torch.device | str,
                        generator: torch.Generator | None
                        ) -> tuple[torch.Tensor, Mapping[str, torch.Tensor]] | None:
    """Return how to draw ``n`` samples with chosen values of the generator's categorical
    latent code, or None when the trick gives the generator no such code.

    The answer is ``(codes, inputs)``: ``codes`` the code value of each sample, a long
    tensor of shape ``(n,)`` cycling through the K values (sample i gets ``i % K``), and
    ``inputs`` the generator's keyword inputs for the n samples (each a tensor of n rows,
    on ``device``) that give sample i the value ``codes[i]``; they replace the inputs of
    the same names that `gantrix_condition` draws. Any other code in them (continuous
    ones) is drawn from its prior with ``generator`` (a `torch.Generator` on ``device``,
    or None for torch's global stream), so evaluations stay reproducible.

    Called by the evaluation of data a built-in classifier labels (digits, mnist: `gantrix
    eval`, ``--eval-every``, `gantrix ablate`), which then reports how well the code
    agrees with the predicted class (``code_mi``, ``code_accuracy``:
    `gantrix.metrics.code_agreement`). First answer wins.
    """


@hookspec
def gantrix_condition(batch: Batch) -> None:
    """Fill the generator's and critic's conditioning inputs for this step.

    Called once per `Batch` before the fake samples are generated: sample class labels for
    the fakes, latent codes, ... by setting ``batch.fake_labels``, ``batch.codes`` or adding
    keyword arguments to ``batch.generator_inputs``.

    When ``batch.fake_labels`` is already set, keep those labels (feed them to the generator
    rather than sampling new ones): `gantrix sample --labels` sets them to the classes the
    user asks for.
    """


@hookspec
def gantrix_prepare_batch(batch: Batch) -> None:
    """Adjust the batch before the critic sees it.

    Called once per `Batch` after the fakes exist and before any critic output is computed:
    add instance noise or augmentation to ``batch.real``/``batch.fake``, or request input
    gradients (``batch.require_input_grad("real")``) so the critic's forward is shared.
    """


@hookspec(firstresult=True)
def gantrix_discriminator_loss(batch: Batch) -> torch.Tensor | None:
    """Return the discriminator's (critic's) adversarial loss, a scalar tensor.

    Exactly one loss trick answers (the checker enforces one loss per composition).
    """


@hookspec(firstresult=True)
def gantrix_generator_loss(batch: Batch) -> torch.Tensor | None:
    """Return the generator's adversarial loss, a scalar tensor."""


@hookspec
def gantrix_discriminator_terms(batch: Batch) -> Mapping[str, torch.Tensor] | None:
    """Return extra discriminator loss terms as ``{term name: scalar tensor}`` (or None).

    All answers are summed into the discriminator loss and logged by name (penalties,
    consistency terms, ...).
    """


@hookspec
def gantrix_generator_terms(batch: Batch) -> Mapping[str, torch.Tensor] | None:
    """Return extra generator loss terms as ``{term name: scalar tensor}`` (or None)."""


@hookspec
def gantrix_after_discriminator_step(models: Models, step: int) -> None:
    """Act after each discriminator optimizer step (weight clipping, ...).

    ``models`` is a `gantrix.Models` (generator, discriminator, and any extra modules).
    """


@hookspec
def gantrix_after_generator_step(models: Models, step: int) -> None:
    """Act after each generator optimizer step (weight averaging, ...).

    A trick may publish an alternative generator to sample from under
    ``models.extra["generator_ema"]`` (an average of the generator's weights); `gantrix
    sample`, `gantrix eval` and the sample grids then use it instead of ``models.generator``.
    """


@hookspec
def gantrix_log_values() -> Mapping[str, float] | None:
    """Return ``{name: number}`` to add to each line of metrics.jsonl, or None: a trick's
    own state worth watching that is not a loss term (ada's augmentation probability,
    top-k's current k).

    Asked at every log line, on the host; names must be unique across tricks (prefix them
    with the trick's name, ``"ada/p"``). In a distributed run rank 0's values are logged, so
    log only what every process agrees on.
    """


@hookspec
def gantrix_state_dict() -> Mapping[str, Any] | None:
    """Return ``{key: state}`` to checkpoint for this trick (EMA weights, ...), or None.

    Keys must be unique across tricks; use the trick's name as a prefix.
    """


@hookspec
def gantrix_load_state_dict(state: Mapping[str, Any], models: Models) -> None:
    """Restore from the merged checkpoint state written by `gantrix_state_dict`.

    ``models`` is the run's `gantrix.Models`, already restored, so a trick that publishes a
    module in ``models.extra`` (``"generator_ema"``) can put it back at once, before any
    step, for a run loaded only to sample. (An implementation may omit ``models``.)
    """
