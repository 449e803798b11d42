"""The training run: a composed recipe, data and models, trained to a run folder.

    trainer = gantrix.Trainer("wgan-gp", "ring8", out="runs/ring")
    trainer.fit()                       # checkpoints, metrics.jsonl, sample grids, loss curves
    trainer.evaluate()                  # {"modes": 8, "high_quality": 97.1, ...}
    x = trainer.sample(1000)

The trainer knows no trick: every decision inside a step is the composition's (through
`gantrix.step.ComposedStep`), and the models come from `gantrix.step.build_models` (the
tricks' or the core's defaults, or the user's own modules).

Settings (`gantrix.settings`) come from the keyword arguments (the command line), the
recipe's ``[train]`` table, and the defaults for the data, in that order of precedence.

Reproducibility: the trainer owns its random state. Models are initialised from ``seed``;
the latent vectors come from their own generator, the batches from the data's, and the
global torch generator (used by tricks: interpolation weights, noise) is swapped in only
while `fit` runs. All of it is checkpointed, so a resumed run is the uninterrupted run.

Several processes (``torchrun``, ``gantrix train --nproc``): each trains on its slice of the
global batch and rank 0 alone writes the run folder (`gantrix.distributed`); the files
(`gantrix.run_folder`) are the same as one process writes, so any number of processes
resumes them.
"""
from __future__ import annotations

import functools
import inspect
import signal
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from . import (compiling, distributed, evaluation, plots, prefetch, recovery, run_folder,
               threads, trackers)
from .run_state import load_checkpoint, save_checkpoint  # load_checkpoint checks the structure
from .errors import GantrixError
from .findings import Finding
from .models import ModelSpec, grad_norm
from .periodic_eval import PeriodicEvaluation, load_best
from .plan import as_recipe, plan_run
from .precision import Precision
from .progress import Progress, host_values
from .recipe import Recipe
from .run_control import RunRandomState, TrainingInterrupted, stop_requests
from .run_folder import CHECKPOINT, CONFIG, EVAL, LOSSES, SAMPLES
from .run_state import installed_part, legacy_settings, load_weights, qualname, trick_state
from .sampling import Sampler, check_labels
from .settings import FIXED_ON_RESUME, RESUMABLE, with_setting_parameters
from .step import DEFAULT_LR, ComposedStep, configure_optimizers, latent_generator
from .tally import LossTally


class TrainingDiverged(GantrixError):
    """A loss or term became NaN or infinite; the last good checkpoint is kept."""


class Trainer:
    """Train a composed recipe on data; see the module docstring.

    ``recipe`` is a `Recipe`, a lone name (a recipe's, else a trick's, or a TOML file:
    `gantrix.recipe.read_lone_name`), or a list of trick strings. ``data`` is a built-in
    name (``ring8``, ``grid25``, ``spiral``, ``digits``, ``mnist``, ``stacked-mnist``), an
    image folder, a ``.npy``/``.pt`` file, a `gantrix.data.Data`, or a tensor of samples; by
    default the recipe's ``[train] data``. The other keywords are the run's settings, the
    fields of `gantrix.settings.Settings` (``steps``, ``batch_size``, ``seed``, ...), over
    the recipe's ``[train]`` table. ``generator``/``discriminator`` replace the built models
    (the composition's architecture tricks still transform and check them). Without ``out``
    nothing is written to disk. The run is planned by `gantrix.plan.plan_run` (``.plan``);
    anything unusable raises `GantrixError` there, before any work.
    """

    def __init__(self, recipe: Recipe | str | Sequence[str] | None, data: Any = None, *,
                 out: str | Path | None = None, generator: nn.Module | None = None,
                 discriminator: nn.Module | None = None, progress: bool | None = None,
                 _resume: bool | dict = False, _without: Sequence[str] = (), **settings: Any):
        if distributed.launched():  # started by torchrun: join the other processes first
            distributed.init_from_environment(settings.get("device"))
        self.out = Path(out).expanduser() if out is not None else None
        #: this process writes the run folder (in a distributed run, rank 0 alone does)
        self.writer = distributed.is_writer()
        loading = isinstance(_resume, dict)  # Trainer.load: to sample and evaluate
        if self.out is not None and self.writer and not loading:  # touching nothing
            run_folder.check_usable(self.out, new=not _resume)
        self._new = self.out is not None and not _resume  # checked again by `fit`, locked
        self._memory_data = data if isinstance(data, torch.Tensor) else None  # saved by `fit`
        if _resume is True and (self.out / CHECKPOINT).exists():
            _resume = load_checkpoint(self.out / CHECKPOINT)
        # a run keeps the core's model layout it was trained with (checkpoints before the
        # layout was recorded are layout 1)
        layout = _resume.get("layout", 1) if isinstance(_resume, dict) else ModelSpec.layout
        #: the run planned and checked (`gantrix.plan`): composition, settings, data, models
        self.plan = plan_run(as_recipe(recipe), data, settings=settings, generator=generator,
                             discriminator=discriminator, processes=distributed.world_size(),
                             layout=layout)
        self.recipe, self.composition = self.plan.recipe, self.plan.composition
        self.settings, self.data, self.spec = self.plan.settings, self.plan.data, self.plan.spec
        self.models, self.processes = self.plan.models, self.plan.processes
        #: the trackers of ``log`` (`gantrix.trackers`), checked before any file is written
        #: (not for a run loaded to sample or evaluate); `fit` opens them (rank 0 only)
        self.tracking = trackers.Tracking(self.settings.log, self.out, writer=self.writer,
                                          check=not loading)
        self.device = distributed.resolve_device(self.settings.device)
        #: this run's share of the CPU cores (`gantrix.threads`), kept up to date in `fit`
        self._cores = threads.Sharing(threads.for_run(self.settings.threads))
        self.custom_models = {role: qualname(model) for role, model in
                              (("generator", generator), ("discriminator", discriminator))
                              if model is not None}
        #: training-only tricks of a loaded run that are not installed (`Trainer.load`): the
        #: run can sample and evaluate, not train.
        self.without = list(_without)
        #: the run's own global random stream: from the models' seeded build on
        self._rng = RunRandomState(self.plan.rng_after_build, self.device, self.settings.seed)
        #: the batches training draws (closed as `fit` ends; their state is the checkpoint's)
        self._batches = prefetch.Batches(self.data, self.device, self.settings.batch_size)
        self.models.generator.to(self.device)
        self.models.discriminator.to(self.device)
        optimizers = configure_optimizers(self.composition, self.models,
                                          lr=self.settings.lr or DEFAULT_LR)
        z_rng = latent_generator(self.device, self.settings.seed + 1)
        self.stepper = ComposedStep(self.composition, self.models, self.spec, optimizers, z_rng,
                                   total_steps=self.settings.steps,
                                   precision=Precision(self.settings.precision, self.device))
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            self.stepper.probe(self.settings.batch_size, self.device)
        if self.settings.compile and not loading:  # compiled after the eager probe
            self.stepper.compile(compiling.compiled_roles(self.composition))
        #: evaluation during training (``eval_every``), or None
        self.evaluation = PeriodicEvaluation.for_run(self.settings, self.data.is_image,
                                                     self.composition)
        #: the step and score of ``best.pt`` when this trainer was loaded from it
        self.best: dict[str, Any] | None = None
        self.history: list[dict] = []
        self.tally = LossTally()
        self._interval = (0, 0.0)  # steps and seconds since the last metrics line
        self.elapsed = 0.0
        self._stop: int | None = None
        self._progress = progress
        self.resumed_from: int | None = None
        self._last_checkpoint: int | None = None
        if isinstance(_resume, dict):  # else a run stopped before its first checkpoint
            self._restore(_resume)
            self.resumed_from = self.step
        self._sampler = Sampler(self.composition, self.models, self.spec, self.device)
        distributed.same_on_every_rank([self.models.generator, self.models.discriminator])

    @property
    def findings(self) -> list[Finding]:
        """Every finding of the run's plan (composition, settings, models), errors first."""
        return self.plan.findings

    @classmethod
    def resume(cls, run_dir: str | Path, *, progress: bool | None = None,
               generator: nn.Module | None = None, discriminator: nn.Module | None = None,
               **settings: Any) -> "Trainer":
        """The run in ``run_dir``, restored from its last checkpoint (or from the start when
        it was stopped before its first one). ``settings`` may change what a resumed run
        may change (`gantrix.settings.FIXED_ON_RESUME` lists the rest): ``steps`` may raise
        its total, ``device``, ``threads`` and ``eval_every`` set this session's."""
        fixed = sorted(set(settings) & set(FIXED_ON_RESUME))
        if fixed:
            raise GantrixError(f"a resumed run keeps its {', '.join(fixed)} as it was "
                               f"configured; only {', '.join(RESUMABLE)} may change")
        run = run_folder.existing(run_dir)
        recipe = Recipe(config=run / CONFIG)
        return cls(recipe, run_folder.saved_data(run, recipe.train.get("data")), out=run,
                   progress=progress, generator=generator, discriminator=discriminator,
                   _resume=True, **legacy_settings(recipe.train), **settings)

    @classmethod
    def load(cls, run_dir: str | Path, *, device: str | None = None,
             generator: nn.Module | None = None, discriminator: nn.Module | None = None,
             checkpoint: str = "last") -> "Trainer":
        """A finished (or checkpointed) run, to sample from or evaluate.

        A run trained with your own modules needs them again: pass new instances as
        ``generator``/``discriminator`` (their weights are loaded). A trick the run trained
        with that sampling does not need (a regularizer, a loss, an optimizer: see
        `gantrix.Trick.needed_to_sample`) may be missing from this installation: the run
        is loaded without it (and without the critic's and optimizers' state), listed in
        ``trainer.without``, and can sample and evaluate but not train.

        ``checkpoint="best"`` takes the generator that scored best during training
        (``best.pt``, written with ``eval_every``; its step and score in ``trainer.best``).
        """
        run = run_folder.existing(run_dir)
        path = run / CHECKPOINT
        if not path.exists():
            raise GantrixError(f"{run} has no checkpoint yet")
        state = load_checkpoint(path)
        recipe, without = installed_part(Recipe(config=run / CONFIG), state)
        trainer = cls(recipe, run_folder.saved_data(run, recipe.train.get("data")), out=run,
                      device=device, progress=False, generator=generator,
                      discriminator=discriminator, _resume=state, _without=without,
                      **legacy_settings(recipe.train))
        if checkpoint == "best":
            trainer.best = load_best(trainer)
        elif checkpoint != "last":
            raise GantrixError(f"checkpoint must be 'last' or 'best', got {checkpoint!r}")
        return trainer

    # ------------------------------------------------------------------ state

    @property
    def step(self) -> int:
        """Training steps done so far (each: the critic updates, then the generator's)."""
        return self.stepper.steps

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs; only tensors and plain containers. Called while
        the trainer owns the global random state (inside `fit`)."""
        rng = {**RunRandomState.state_dict(self.device), "z": self.stepper.rng.get_state()}
        return {
            "sampling": {"tricks": [t.name for t in self.composition.tricks if t.samples()],
                         "custom_models": dict(self.custom_models)},
            "layout": self.spec.layout,
            "step": self.stepper.steps,
            "d_steps": self.stepper.d_steps,
            "g_steps": self.stepper.g_steps,
            "models": {"generator": self.models.generator.state_dict(),
                       "discriminator": self.models.discriminator.state_dict()},
            "optimizers": {k: o.state_dict() for k, o in self.stepper.optimizers.items()},
            "scalers": self.stepper.precision.state_dict(),
            "tricks": trick_state(self.composition),
            "rng": rng,
            "data": self._batches.state_dict(),  # the batches used, not those read ahead
            **({"evaluation": self.evaluation.state_dict()} if self.evaluation else {}),
            "log": {**self.tally.state_dict(),
                    "interval_steps": self._interval[0], "interval_seconds": self._interval[1],
                    "elapsed": self.elapsed},
        }

    def _restore(self, state: dict[str, Any]) -> None:
        load_weights(self, state)
        self.composition.hook.gantrix_load_state_dict(state=state["tricks"], models=self.models)
        self._rng.load(state["rng"])
        if self.evaluation is not None and "evaluation" in state:
            self.evaluation.load_state_dict(state["evaluation"])
        self.stepper.steps = int(state["step"])
        self.stepper.d_steps = int(state["d_steps"])
        # checkpoints written before generator steps could be several: one update a step
        self.stepper.g_steps = int(state.get("g_steps", state["step"]))
        log = state["log"]
        self.tally.load_state_dict(log)
        self._interval = (int(log["interval_steps"]), float(log["interval_seconds"]))
        self.elapsed = float(log["elapsed"])

    def _signals(self):
        """Ctrl-C and SIGTERM ask `fit` to stop after the current step (`stop_requests`)."""
        return stop_requests(self._ask_to_stop, self._kept)

    def _ask_to_stop(self, signum: int) -> None:
        self._stop = signum

    # ------------------------------------------------------------------ files

    def _prepare_folder(self) -> None:
        self.history = run_folder.prepare(self.out, self.config_toml(), self.settings.steps,
                                          self.step, self._memory_data)
        self._new = False

    def config_toml(self) -> str:
        """The run as a TOML config: ``gantrix train --config`` re-runs it."""
        return run_folder.config_toml(self.composition.specs(), self.recipe.names,
                                      self.settings.table(), self.custom_models)

    def save_checkpoint(self) -> None:
        """Write the checkpoint, after checking that no loss since the last check diverged
        (a diverged model never replaces the last good checkpoint)."""
        self._check()
        if self.out is not None and self.writer:
            save_checkpoint(self.out / CHECKPOINT, self.state_dict())

    def _write_metrics(self, row: dict) -> None:
        self.history.append(row)
        if self.out is not None and self.writer:
            run_folder.append_metrics(self.out, row)
        self.tracking.log_metrics(row)

    def save_pictures(self) -> None:
        """A sample picture for this step (`gantrix.plots.sample_picture`) and the loss
        curves so far."""
        if self.out is None or not self.writer:
            return
        path = self.out / SAMPLES / f"step_{self.step:06d}.png"
        if plots.sample_picture(path, self.data, self.sample, f"{self.data.name}, step {self.step}"):
            self.tracking.log_image("samples", path, self.step)
        if self.history:
            plots.loss_curves_png(self.out / LOSSES, self.history)

    # ------------------------------------------------------------------ training

    def _pull(self):
        """The next batch on the device: `gantrix.prefetch.Batches` (placed once, or read ahead)."""
        return self._batches.next()

    def _account(self, out: dict[str, torch.Tensor], seconds: float) -> None:
        """Tally a step's losses on their device (read back at log lines and checkpoints)."""
        n, secs = self._interval
        self._interval = (n + 1, secs + seconds)
        self.elapsed += seconds
        skipped = self.stepper.skipped  # a skipped step overflowed: the scaler lowered its scale
        self.tally.add(out, self.step, keep=None if skipped is False else ~skipped)

    def _check(self) -> None:
        """Read the tally back; stop with `TrainingDiverged` where a value stopped being
        finite (in any process: they all stop together), or where the fp16 scaler skipped
        every update of the last `MAX_SKIPPED_STEPS` steps."""
        skipped = self.stepper.skipped_steps  # read here, at log lines and checkpoints only
        if skipped >= MAX_SKIPPED_STEPS:
            self._diverged(f"the fp16 loss scaler skipped an update in each of the last "
                           f"{skipped} steps (their gradients were never finite)", self.step)
        bad = self.tally.read()
        elsewhere = distributed.any_rank(bad is not None)
        if bad is not None:
            self._diverged(f"{bad.name} is {bad.value}", bad.step)
        if elsewhere:
            self._diverged("a loss of another process stopped being finite", self.step)

    def _diverged(self, what: str, step: int):
        where = (f"the last good checkpoint (step {self._last_checkpoint}) is kept in "
                 f"{self.out / CHECKPOINT}" if self.out is not None and
                 self._last_checkpoint is not None else "nothing was saved")
        raise TrainingDiverged(f"training diverged: {what} at step {step}; stopped, {where}")

    def _log_line(self) -> None:
        self._check()
        self._cores.update()
        n, secs = self._interval
        row: dict[str, Any] = {"step": self.step}
        row.update(distributed.mean_over_ranks(self.tally.means()))
        for values in self.composition.hook.gantrix_log_values():
            row.update({k: float(v) for k, v in (values or {}).items()})
        row["grad_norm/discriminator"] = grad_norm(self.models.discriminator)
        row["grad_norm/generator"] = grad_norm(self.models.generator)
        row["step_time"] = secs / n if n else None
        row["elapsed"] = self.elapsed
        self._write_metrics(row)
        self.tally.reset()
        self._interval = (0, 0.0)

    def _evaluate_if_due(self, step: int) -> bool:
        """Evaluate at every ``eval_every``-th step and the last (`PeriodicEvaluation`). In
        a distributed run every process takes its share of the samples; the writer's row."""
        s = self.settings
        if self.evaluation is None or not (step % s.eval_every == 0 or step == s.steps):
            return False
        row = self.evaluation.score(self)
        if row is not None:
            self._write_metrics(row)
        return True

    @property
    def eval_seconds(self) -> float:
        """Seconds this process spent in evaluation during training (all sessions)."""
        return self.evaluation.seconds if self.evaluation is not None else 0.0

    def fit(self) -> "Trainer":
        """Train up to ``steps`` generator updates (continuing where the last call, or the
        checkpoint, left off). Writes the run folder when there is one.

        Raises `TrainingInterrupted` after saving a checkpoint when stopped by Ctrl-C or
        SIGTERM, and `TrainingDiverged` when a loss term stops being finite.
        """
        s = self.settings
        if self.best is not None:
            raise GantrixError("this trainer holds best.pt's generator, to sample and evaluate; "
                               "to train on, resume the run (its last checkpoint)")
        if self.without:
            raise GantrixError(
                f"this run was loaded without its training-only trick(s) "
                f"{', '.join(self.without)} (not installed): it can sample and evaluate; "
                f"install them to continue training it")
        self._last_checkpoint = self.resumed_from
        self._stop = None
        with run_folder.writing(self.out if self.writer else None, self._kept, new=self._new,
                                prepare=self._prepare_folder), \
                self.tracking.open({**s.table(), "tricks": self.composition.specs()}, self.step), \
                threads.running(), self._rng.owned(), self._signals(), \
                distributed.peers_watched(self._kept):
            progress = Progress(s.steps, self._progress if self.writer else False)
            if self.out is not None and self._last_checkpoint is None:
                self.save_checkpoint()
                self._last_checkpoint = self.step
            try:
                while self.step < s.steps:
                    start = time.perf_counter()
                    out = recovery.train_step(self)  # a failed step: gantrix.recovery
                    seconds = time.perf_counter() - start
                    self._account(out, seconds)
                    step = self.step
                    if step % s.log_every == 0 or step == s.steps:
                        self._log_line()
                    evaluated = self._evaluate_if_due(step)
                    if (s.sample_every and step % s.sample_every == 0 or evaluated) \
                            and step != s.steps:
                        self.save_pictures()
                    if s.checkpoint_every and step % s.checkpoint_every == 0 and step != s.steps:
                        self.save_checkpoint()
                        self._last_checkpoint = step
                    progress.update(step, functools.partial(host_values, out),
                                    1.0 / max(self.elapsed / max(step, 1), 1e-9))
                    if distributed.agreed(self._stop is not None, step % s.log_every == 0
                                          or step == s.steps):
                        self._interrupted(self._stop or signal.SIGTERM)
                if self.out is not None:
                    self.save_checkpoint()
                    self._last_checkpoint = self.step
                    self.save_pictures()
            except Exception as exc:  # a trick raising at a log line, checkpoint, picture
                raise recovery.blame(self, exc)
            finally:
                self._batches.close()  # stops a reader; the data's stream as the steps left it
                progress.close()
        return self

    def _kept(self) -> str:
        """Where the last good checkpoint is, for a message about a stopped run."""
        return run_folder.kept(self.out, self._last_checkpoint)

    def _interrupted(self, signum: int):
        name = signal.Signals(signum).name
        if self.out is not None:
            self.save_checkpoint()
            where = (f"checkpoint saved at step {self.step}; continue with "
                     f"gantrix train --resume {self.out}")
        else:
            where = f"stopped at step {self.step}; call fit() again to continue"
        raise TrainingInterrupted(f"interrupted by {name}: {where}", signum)

    # ------------------------------------------------------------------ using the model

    @property
    def sampler(self) -> nn.Module:
        """The generator to sample from: an averaged copy when a trick publishes one."""
        return self._sampler.generator

    def sample(self, n: int, labels: torch.Tensor | Sequence[int | str] | None = None, *,
               seed: int = 0, strict: bool = True) -> torch.Tensor:
        """``n`` samples on the CPU (the generator in eval mode; no random state touched).

        ``labels`` (n class indices, or names where the data names its classes) condition a
        conditional model; ``strict`` makes it an error to pass labels to a model without.
        """
        if n < 1:
            raise GantrixError(f"the number of samples must be at least 1, got {n}")
        if labels is not None:
            labels = check_labels(labels, n, self.data.num_classes, self.data.name,
                                  self.data.class_names)
            if strict and not self.conditional:
                raise GantrixError("this model is not conditional (no trick feeds labels to "
                                   "the generator); sample without labels")
        return self._sampler.sample(n, labels, seed=seed, step=self.stepper.g_steps) * self.data.scale

    @property
    def conditional(self) -> bool:
        """Whether the generator takes class labels (`Sampler.takes_labels`)."""
        return self._sampler.takes_labels(self.stepper.g_steps)

    def evaluate(self, n: int | None = None, seed: int = 0, *, metrics: Sequence[str] | None = None,
                 features: str | None = None, inception_weights: str | Path | None = None,
                 save: bool = True) -> dict:
        """The data's quality metrics on ``n`` samples, saved as eval.json in the run folder
        (``save``; a folder that cannot be written is a warning, the result still returned).

        Without ``metrics``: `gantrix.metrics`' (modes on 2-D data and stacked-mnist; classes
        and Fréchet distance on digits and mnist; by default on the papers' 2,500 samples, or
        26,000 on stacked-mnist; empty for a user's own data). With ``metrics`` (``"fid"``,
        ``"kid"``, ``"pr"``): `gantrix.evaluation`'s, in ``features`` (``"inception"``,
        ``"classifier"``, or None: Inception where it can be used, else the data's
        classifier), the space named in the result's ``"features"``, the real data's own
        figures beside them (``fid_real``, ...)."""
        if metrics is not None:
            result = evaluation.evaluate(self, metrics, n=n, seed=seed, features=features,
                                         inception_weights=None if inception_weights is None
                                         else Path(inception_weights))
        else:
            result = evaluation.data_metrics(self, n, seed)
        if save and self.out is not None and self.writer and self.out.is_dir():
            try:
                evaluation.save_result(self.out, result, EVAL)
            except GantrixError as exc:
                warnings.warn(str(exc), stacklevel=2)
        return result


#: steps in a row with an update the fp16 scaler skipped before the run counts as diverged
#: (a loss scale halved this often is below 1e-10: the gradients are not finite at any scale).
MAX_SKIPPED_STEPS = 50


with_setting_parameters(Trainer.__init__, lambda name, param: inspect.Parameter(
    name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=f"{param.type.__name__} | None"))
