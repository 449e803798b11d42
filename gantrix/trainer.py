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

import contextlib
import functools
import json
import math
import signal
import threading
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from . import distributed, run_folder
from .batch import Batch
from .checkpoint import load_checkpoint, save_checkpoint, write_atomic
from .compose import Composition
from .data import BUILTIN, Data, Mirrored, TensorData, Toy2D, describe_source, load_data
from .errors import GantrixError
from .models import ModelSpec
from .precision import Precision
from .progress import Progress, host_values
from .recipe import Recipe
from .run_folder import CHECKPOINT, CONFIG, EVAL, LOSSES, SAMPLES
from .settings import SETTINGS_DEFAULTS, Settings, check_settings, check_values, defaults_for
from .step import DEFAULT_LR, ComposedStep, build_models, configure_optimizers, draw_latent
from .tally import LossTally

#: points drawn for a 2-D sample plot, images in an image grid.
PLOT_POINTS = 1000
GRID_IMAGES = 64

class TrainingInterrupted(GantrixError):
    """The run was stopped by a signal after saving a checkpoint; ``exit_code`` is 128+signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class TrainingDiverged(GantrixError):
    """A loss or term became NaN or infinite; the last good checkpoint is kept."""


def _resolve_device(name: str) -> torch.device:
    if distributed.active():  # each process has its device: cuda:LOCAL_RANK or the CPU
        return distributed.device()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise GantrixError("device 'cuda' asked for, but torch sees no CUDA device; "
                           "use --device cpu (or auto)")
    return torch.device(name)


def _as_recipe(recipe: Recipe | str | Sequence[str] | None) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    if recipe is None:
        raise GantrixError("no recipe: name a recipe or at least a loss trick")
    if isinstance(recipe, str):
        return recipe_or_trick(recipe)
    return Recipe(*recipe)


def recipe_or_trick(name: str) -> Recipe:
    """A lone name: the recipe of that name when there is one (``wgan`` is both a recipe
    and its loss trick), else the trick (a bare loss such as ``minimax``) or a TOML file."""
    from .registry import catalogue

    return Recipe(recipe=name) if name in catalogue().recipes else Recipe(name)


def _grad_norm(model: nn.Module) -> float | None:
    norms = [p.grad.detach().norm() for p in model.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else None


class Trainer:
    """Train a composed recipe on data; see the module docstring.

    ``recipe`` is a `Recipe`, a recipe name (else a trick name), or a list of trick strings. ``data``
    is a built-in name (``ring8``, ``grid25``, ``spiral``, ``digits``, ``mnist``,
    ``stacked-mnist``), an image folder, a
    ``.npy``/``.pt`` file, a `gantrix.data.Data`, or a tensor of samples; by default the
    recipe's ``[train] data``. ``generator``/``discriminator`` replace the built models (the
    composition's architecture tricks still transform and check them). Without ``out``
    nothing is written to disk. Raises `GantrixError` for anything unusable, before any work.
    """

    def __init__(self, recipe: Recipe | str | Sequence[str] | None, data: Any = None, *,
                 out: str | Path | None = None, steps: int | None = None,
                 batch_size: int | None = None, seed: int | None = None,
                 device: str | None = None, precision: str | None = None,
                 latent_dim: int | None = None,
                 width: int | None = None, lr: float | None = None,
                 image_size: int | None = None, mirror: bool | None = None,
                 skip_bad_images: bool | None = None, sample_every: int | None = None,
                 checkpoint_every: int | None = None, log_every: int | None = None,
                 generator: nn.Module | None = None, discriminator: nn.Module | None = None,
                 progress: bool | None = None, _resume: bool | dict = False,
                 _without: Sequence[str] = ()):
        if distributed.launched():  # started by torchrun: join the other processes first
            distributed.init_from_environment(device)
        self.recipe = _as_recipe(recipe)
        given = check_values(dict(steps=steps, batch_size=batch_size, seed=seed, device=device,
                                     precision=precision, latent_dim=latent_dim, width=width, lr=lr,
                                     image_size=image_size, mirror=mirror,
                                     skip_bad_images=skip_bad_images, sample_every=sample_every,
                                     checkpoint_every=checkpoint_every, log_every=log_every),
                                "train")
        from_recipe = check_values(dict(self.recipe.train), "the recipe's [train] table")
        self.out = Path(out).expanduser() if out is not None else None
        #: this process writes the run folder (in a distributed run, rank 0 alone does)
        self.writer = distributed.is_writer()
        if self.out is not None and not _resume and self.writer:
            run_folder.check_new(self.out)
        self.data, source = self._load_data(data, {**from_recipe, **given})
        self.recipe = self.recipe.for_data("images" if self.data.is_image else "points", source)
        from_recipe = check_values(dict(self.recipe.train), "the recipe's [train] table")
        self.composition = Composition(self.recipe)
        merged = {**SETTINGS_DEFAULTS, **defaults_for(self.data, source), **from_recipe, **given, "data": source}
        self.settings = Settings(**{f.name: merged.get(f.name) for f in fields(Settings)})
        if self.settings.mirror:
            self.data = Mirrored(self.data, self.settings.seed)
        if self.settings.lr is not None and any("optimizer" in t.features()
                                                for t in self.composition.tricks):
            raise GantrixError("lr sets the core's default Adam, but this composition has an "
                               "optimizer trick: set its lr instead (e.g. --trick adam:lr=1e-4)")
        #: processes sharing each batch (`gantrix.distributed`; 1 without torchrun)
        self.processes = distributed.world_size()
        check_settings(self.composition, self.settings.batch_size, self.processes)
        self.device = _resolve_device(self.settings.device)
        if _resume is True and (self.out / CHECKPOINT).exists():
            _resume = load_checkpoint(self.out / CHECKPOINT)
        # a run keeps the core's model layout it was trained with (checkpoints before the
        # layout was recorded are layout 1)
        layout = _resume.get("layout", 1) if isinstance(_resume, dict) else ModelSpec.layout
        self.spec = ModelSpec(self.data.shape, self.data.num_classes,
                              self.settings.latent_dim, self.settings.width, layout=layout)
        self.custom_models = {role: _qualname(model) for role, model in
                              (("generator", generator), ("discriminator", discriminator))
                              if model is not None}
        #: training-only tricks of a loaded run that are not installed (`Trainer.load`): the
        #: run can sample and evaluate, not train.
        self.without = list(_without)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.settings.seed)
            try:
                self.models = build_models(self.composition, self.spec, generator, discriminator)
            except (ValueError, TypeError) as exc:
                raise GantrixError(f"cannot build models for {self.data.name} "
                                   f"{tuple(self.data.shape)}: {exc}") from None
            self._rng = torch.get_rng_state()
        self.composition.findings.extend(
            distributed.findings(self.composition.tricks, self.models, self.processes))
        self.models.generator.to(self.device)
        self.models.discriminator.to(self.device)
        self._cuda_rng = None
        if self.device.type == "cuda":
            with torch.random.fork_rng(devices=[self.device]):
                torch.cuda.manual_seed(self.settings.seed)
                self._cuda_rng = torch.cuda.get_rng_state(self.device)
        optimizers = configure_optimizers(self.composition, self.models,
                                          lr=self.settings.lr or DEFAULT_LR)
        z_rng = torch.Generator(self.device).manual_seed(self.settings.seed + 1)
        self.stepper = ComposedStep(self.composition, self.models, self.spec, optimizers, z_rng,
                                   total_steps=self.settings.steps,
                                   precision=Precision(self.settings.precision, self.device))
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            self.stepper.probe(self.settings.batch_size, self.device)
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
        distributed.same_on_every_rank([self.models.generator, self.models.discriminator])

    # ------------------------------------------------------------------ construction

    @staticmethod
    def _load_data(data: Any, settings: dict) -> tuple[Data, str]:
        seed = settings.get("seed", 0)
        if data is None:
            data = settings.get("data")
        if data is None:
            raise GantrixError(f"no data: pass --data ({', '.join(BUILTIN)}, an image folder "
                               "or a .npy/.pt file)")
        if isinstance(data, Data):
            return data, data.name
        if isinstance(data, torch.Tensor):
            return TensorData("tensor", data, seed=seed), "tensor"
        loaded = load_data(data, seed=seed, image_size=settings.get("image_size"),
                           skip_bad_images=settings.get("skip_bad_images", False))
        return loaded, describe_source(str(data))

    @classmethod
    def resume(cls, run_dir: str | Path, *, steps: int | None = None, device: str | None = None,
               progress: bool | None = None, generator: nn.Module | None = None,
               discriminator: nn.Module | None = None) -> "Trainer":
        """The run in ``run_dir``, restored from its last checkpoint (or from the start when
        it was stopped before its first one); ``steps`` may raise its total."""
        run = run_folder.existing(run_dir)
        return cls(Recipe(config=run / CONFIG), out=run, steps=steps, device=device,
                   progress=progress, generator=generator, discriminator=discriminator,
                   _resume=True)

    @classmethod
    def load(cls, run_dir: str | Path, *, device: str | None = None,
             generator: nn.Module | None = None,
             discriminator: nn.Module | None = None) -> "Trainer":
        """A finished (or checkpointed) run, to sample from or evaluate.

        A run trained with your own modules needs them again: pass new instances as
        ``generator``/``discriminator`` (their weights are loaded). A trick the run trained
        with that sampling does not need (a regularizer, a loss, an optimizer: see
        `gantrix.Trick.needed_to_sample`) may be missing from this installation: the run
        is loaded without it (and without the critic's and optimizers' state), listed in
        ``trainer.without``, and can sample and evaluate but not train.
        """
        run = run_folder.existing(run_dir)
        path = run / CHECKPOINT
        if not path.exists():
            raise GantrixError(f"{run} has no checkpoint yet")
        state = load_checkpoint(path)
        recipe, without = _installed_part(Recipe(config=run / CONFIG), state)
        return cls(recipe, out=run, device=device, progress=False, generator=generator,
                   discriminator=discriminator, _resume=state, _without=without)

    # ------------------------------------------------------------------ state

    @property
    def step(self) -> int:
        """Training steps done so far (each: the critic updates, then the generator's)."""
        return self.stepper.steps

    def _trick_state(self) -> dict:
        merged: dict = {}
        for part in self.composition.hook.gantrix_state_dict():
            for key in part or {}:
                if key in merged:
                    raise RuntimeError(f"two tricks checkpoint a state under {key!r}")
            merged.update(part or {})
        return merged

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs; only tensors and plain containers. Called while
        the trainer owns the global random state (inside `fit`)."""
        rng = {"torch": torch.get_rng_state(), "z": self.stepper.rng.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
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
            "tricks": self._trick_state(),
            "rng": rng,
            "data": self.data.state_dict(),
            "log": {**self.tally.state_dict(),
                    "interval_steps": self._interval[0], "interval_seconds": self._interval[1],
                    "elapsed": self.elapsed},
        }

    def _restore(self, state: dict[str, Any]) -> None:
        recorded = state.get("sampling", {}).get("custom_models", {})
        absent = {role: name for role, name in recorded.items()
                  if role not in self.custom_models}
        if absent and not (self.without and set(absent) == {"discriminator"}):
            raise GantrixError(_custom_models_message(self.out, recorded, absent))
        parts = ["generator"] if self.without else ["generator", "discriminator"]
        try:
            for role in parts:
                self.models.by_role(role).load_state_dict(state["models"][role])
            if not self.without:
                for role, opt in self.stepper.optimizers.items():
                    opt.load_state_dict(state["optimizers"][role])
                self.stepper.precision.load_state_dict(state.get("scalers", {}))
            self.data.load_state_dict(state["data"])
            self.stepper.rng.set_state(state["rng"]["z"])
        except (KeyError, RuntimeError, ValueError) as exc:
            hint = ""
            if not self.custom_models and not recorded:
                hint = ("\n(if the run was trained with your own modules, pass them: "
                        "Trainer.load(run, generator=..., discriminator=...))")
            raise GantrixError(f"the checkpoint in {self.out} does not fit this run's models, "
                               f"optimizers or data: {str(exc).strip()}{hint}") from None
        self.composition.hook.gantrix_load_state_dict(state=state["tricks"], models=self.models)
        self._rng = state["rng"]["torch"]
        if self.device.type == "cuda" and "cuda" in state["rng"]:
            self._cuda_rng = state["rng"]["cuda"]
        self.stepper.steps = int(state["step"])
        self.stepper.d_steps = int(state["d_steps"])
        # checkpoints written before generator steps could be several: one update a step
        self.stepper.g_steps = int(state.get("g_steps", state["step"]))
        log = state["log"]
        self.tally.load_state_dict(log)
        self._interval = (int(log["interval_steps"]), float(log["interval_seconds"]))
        self.elapsed = float(log["elapsed"])

    @contextlib.contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Swap the trainer's random state into torch's global generator(s) and back."""
        outer = torch.get_rng_state()
        outer_cuda = torch.cuda.get_rng_state(self.device) if self._cuda_rng is not None else None
        torch.set_rng_state(self._rng)
        if self._cuda_rng is not None:
            torch.cuda.set_rng_state(self._cuda_rng, self.device)
        try:
            yield
        finally:
            self._rng = torch.get_rng_state()
            torch.set_rng_state(outer)
            if outer_cuda is not None:
                self._cuda_rng = torch.cuda.get_rng_state(self.device)
                torch.cuda.set_rng_state(outer_cuda, self.device)

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """Ctrl-C and SIGTERM ask the loop to stop after the current step (a second one
        stops at once); outside the main thread, signals are left alone.

        A process of a distributed run that leaves with an error is ending, and when the
        error is a lost peer, the launcher's SIGTERM follows within a tenth of a second: it
        is ignored from then on, so that it cannot kill the process before its message
        (where the last checkpoint is) is printed."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def ask_to_stop(signum, frame):
            if self._stop is not None:
                raise KeyboardInterrupt
            self._stop = signum

        old = {s: signal.signal(s, ask_to_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        except BaseException:
            if distributed.active():
                old[signal.SIGTERM] = signal.SIG_IGN
            raise
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    # ------------------------------------------------------------------ files

    def _prepare_folder(self) -> None:
        if self.writer:
            self.history = run_folder.prepare(self.out, self.config_toml(), self.settings.steps,
                                              self.step)

    def config_toml(self) -> str:
        """The run as a TOML config: ``gantrix train --config`` re-runs it."""
        import tomli_w

        head = ("# gantrix run configuration; re-run it with\n"
                "#   gantrix train --config config.toml --out NEW_FOLDER\n")
        if self.custom_models:
            head += ("# this run used your own modules (" + ", ".join(
                f"{role}: {name}" for role, name in self.custom_models.items()) + "), which are "
                "not recorded here;\n# load it with Trainer.load(run, generator=..., "
                "discriminator=...)\n")
        body = {"tricks": self.composition.specs()}
        if self.recipe.names:
            body["summary"] = f"built from recipe {' + '.join(self.recipe.names)}"
        body["train"] = self.settings.table()
        return head + tomli_w.dumps(body)

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

    def save_pictures(self) -> None:
        """A sample picture for this step and the loss curves so far."""
        if self.out is None or not self.writer:
            return
        from . import plots

        path = self.out / SAMPLES / f"step_{self.step:06d}.png"
        if self.data.is_image:
            labels = None
            if self.data.num_classes:
                labels = torch.arange(GRID_IMAGES) % self.data.num_classes
            plots.grid_png(path, self.sample(GRID_IMAGES, labels=labels, strict=False))
        elif self.data.shape == (2,):
            plots.scatter_png(path, self.sample(PLOT_POINTS), self.data.reference(PLOT_POINTS),
                              f"{self.data.name}, step {self.step}")
        if self.history:
            plots.loss_curves_png(self.out / LOSSES, self.history)

    # ------------------------------------------------------------------ training

    def _pull(self):
        x, y = self.data.next_shard(self.settings.batch_size)
        return x.to(self.device), None if y is None else y.to(self.device)

    def _account(self, out: dict[str, torch.Tensor], seconds: float) -> None:
        """Tally a step's losses on their device (read back at log lines and checkpoints)."""
        n, secs = self._interval
        self._interval = (n + 1, secs + seconds)
        self.elapsed += seconds
        skipped = self.stepper.skipped_steps
        if skipped >= MAX_SKIPPED_STEPS:
            self._diverged(f"the fp16 loss scaler skipped an update in each of the last "
                           f"{skipped} steps (their gradients were never finite)", self.step)
        if not skipped:  # else it overflowed at this loss scale: the scaler lowered it
            self.tally.add(out, self.step)

    def _check(self) -> None:
        """Read the tally back; stop with `TrainingDiverged` where a value stopped being
        finite (in any process: they all stop together)."""
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
        n, secs = self._interval
        row: dict[str, Any] = {"step": self.step}
        row.update(distributed.mean_over_ranks(self.tally.means()))
        for values in self.composition.hook.gantrix_log_values():
            row.update({k: float(v) for k, v in (values or {}).items()})
        row["grad_norm/discriminator"] = _grad_norm(self.models.discriminator)
        row["grad_norm/generator"] = _grad_norm(self.models.generator)
        row["step_time"] = secs / n if n else None
        row["elapsed"] = self.elapsed
        self._write_metrics(row)
        self.tally.reset()
        self._interval = (0, 0.0)

    def fit(self) -> "Trainer":
        """Train up to ``steps`` generator updates (continuing where the last call, or the
        checkpoint, left off). Writes the run folder when there is one.

        Raises `TrainingInterrupted` after saving a checkpoint when stopped by Ctrl-C or
        SIGTERM, and `TrainingDiverged` when a loss term stops being finite.
        """
        s = self.settings
        if self.without:
            raise GantrixError(
                f"this run was loaded without its training-only trick(s) "
                f"{', '.join(self.without)} (not installed): it can sample and evaluate; "
                f"install them to continue training it")
        if self.out is not None:
            self._prepare_folder()
        self._last_checkpoint = self.resumed_from
        progress = Progress(s.steps, self._progress if self.writer else False)
        self._stop = None
        with self._own_rng(), self._signals(), distributed.peers_watched(self._kept):
            if self.out is not None and self._last_checkpoint is None:
                self.save_checkpoint()
                self._last_checkpoint = self.step
            try:
                while self.step < s.steps:
                    start = time.perf_counter()
                    out = self.stepper.step(self._pull)
                    seconds = time.perf_counter() - start
                    self._account(out, seconds)
                    step = self.step
                    if step % s.log_every == 0 or step == s.steps:
                        self._log_line()
                    if s.sample_every and step % s.sample_every == 0 and step != s.steps:
                        self.save_pictures()
                    if s.checkpoint_every and step % s.checkpoint_every == 0 and step != s.steps:
                        self.save_checkpoint()
                        self._last_checkpoint = step
                    progress.update(step, functools.partial(host_values, out),
                                    1.0 / max(self.elapsed / max(step, 1), 1e-9))
                    if distributed.agreed(self._stop is not None, step % s.log_every == 0
                                          or step == s.steps):
                        self._interrupted(self._stop or signal.SIGTERM)
            finally:
                progress.close()
            if self.out is not None:
                self.save_checkpoint()
                self._last_checkpoint = self.step
                self.save_pictures()
        return self

    def _kept(self) -> str:
        """Where the last good checkpoint is, for a message about a stopped run."""
        if self.out is None or self._last_checkpoint is None:
            return "nothing was saved"
        return (f"the last checkpoint (step {self._last_checkpoint}) is kept in {self.out}; "
                f"continue with gantrix train --resume {self.out}")

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
        return self.models.extra.get("generator_ema") or self.models.generator

    def sample(self, n: int, labels: torch.Tensor | Sequence[int] | None = None, *,
               seed: int = 0, strict: bool = True) -> torch.Tensor:
        """``n`` samples on the CPU (the generator in eval mode; no random state touched).

        ``labels`` (n class indices) condition a conditional model; ``strict`` makes it an
        error to pass labels to a model that does not take them.
        """
        if n < 1:
            raise GantrixError(f"the number of samples must be at least 1, got {n}")
        if labels is not None:
            labels = self._check_labels(labels, n)
            if strict and not self.conditional:
                raise GantrixError("this model is not conditional (no trick feeds labels to "
                                   "the generator); sample without labels")
        gen = self.sampler
        was_training = gen.training
        gen.eval()
        chunks = []
        rng = torch.Generator(self.device).manual_seed(seed)
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                for lo in range(0, n, 500):
                    m = min(500, n - lo)
                    z = draw_latent(self.composition.hook, m, self.spec.latent_dim,
                                    device=self.device, generator=rng)
                    batch = Batch(real=torch.zeros(m, *self.spec.shape, device=self.device),
                                  critic=self.models.discriminator, phase="generator",
                                  step=self.stepper.g_steps, z=z, hook=self.composition.hook)
                    if labels is not None:
                        batch.fake_labels = labels[lo:lo + m].to(self.device)
                    self.composition.hook.gantrix_condition(batch=batch)
                    chunks.append(gen(z, **batch.generator_inputs).float().cpu() * self.data.scale)
        finally:
            gen.train(was_training)
        return torch.cat(chunks)

    @property
    def conditional(self) -> bool:
        """Whether the generator takes class labels: a trick routes the batch's
        ``fake_labels`` to it as ``generator_inputs["labels"]`` (cgan, acgan, projection)."""
        batch = Batch(real=torch.zeros(1, *self.spec.shape, device=self.device),
                      critic=self.models.discriminator, phase="generator",
                      step=self.stepper.g_steps,
                      z=torch.zeros(1, self.spec.latent_dim, device=self.device),
                      hook=self.composition.hook)
        batch.fake_labels = torch.zeros(1, dtype=torch.long, device=self.device)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            self.composition.hook.gantrix_condition(batch=batch)  # codes may be drawn
        return "labels" in batch.generator_inputs

    def _check_labels(self, labels, n: int) -> torch.Tensor:
        k = self.data.num_classes
        if not k:
            raise GantrixError(f"{self.data.name} has no class labels; sample without labels")
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if len(labels) == 1:
            labels = labels.expand(n)
        if len(labels) != n:
            labels = labels.repeat(math.ceil(n / len(labels)))[:n]
        bad = labels[(labels < 0) | (labels >= k)]
        if len(bad):
            raise GantrixError(f"label {int(bad[0])} is out of range; {self.data.name} has "
                               f"classes 0 to {k - 1}")
        return labels

    def evaluate(self, n: int | None = None, seed: int = 0) -> dict:
        """The quality metrics (`gantrix.metrics`) on ``n`` samples (by default the papers'
        count for the data: 2,500, or 26,000 on stacked-mnist); saved as eval.json in the
        run folder. Empty when the data has no metric (a user's own data)."""
        from . import metrics

        result: dict[str, Any] = {"step": self.step}
        scorer = metrics.metrics_for(self.settings.data)
        if isinstance(self.data, Toy2D):
            result.update(metrics.mode_metrics(self.sample(n or metrics.SAMPLES, seed=seed),
                                               self.data.target))
        elif scorer is not None:
            score, default_n = scorer
            n = n or default_n
            if self.data.num_classes == 10 and self.conditional:  # digits, mnist: ask each class
                labels = torch.arange(n) % 10
                result.update(score(self.sample(n, labels=labels, seed=seed), labels=labels))
            else:
                result.update(score(self.sample(n, seed=seed)))
        if self.out is not None and self.writer and self.out.is_dir():
            write_atomic(self.out / EVAL, (json.dumps(result, indent=2) + "\n").encode())
        return result


#: steps in a row with an update the fp16 scaler skipped before the run counts as diverged
#: (a loss scale halved this often is below 1e-10: the gradients are not finite at any scale).
MAX_SKIPPED_STEPS = 50


def _qualname(model: nn.Module) -> str:
    cls = type(model)
    return f"{cls.__module__}.{cls.__qualname__}"


def _custom_models_message(run: Path | None, recorded: dict, absent: dict) -> str:
    trained = ", ".join(f"{role} {name}" for role, name in recorded.items())
    missing = " and ".join(absent)
    args = ", ".join(f"{role}=..." for role in recorded)
    return (f"the run in {run} was trained with your own modules ({trained}); gantrix cannot "
            f"rebuild them, so the {missing} must be passed again: in Python, "
            f"Trainer.load({str(run)!r}, {args}) (or Trainer.resume to train on) with new "
            f"instances built as for training; their weights are loaded from the checkpoint")


def _installed_part(recipe: Recipe, state: dict) -> tuple[Recipe, list[str]]:
    """``recipe`` (a run's config) without the tricks that are not installed and that the
    checkpoint records as not needed to sample; and their names. A missing trick that is
    needed (or any, for a checkpoint that records nothing) is left for the composition to
    report, with the plugin that would provide it."""
    from .registry import catalogue

    known = catalogue().tricks
    needed = state.get("sampling", {}).get("tricks")
    if needed is None:
        return recipe, []
    dropped = list(dict.fromkeys(s.name for s in recipe.specs
                                 if s.name not in known and s.name not in needed))
    return recipe.without(dropped), dropped
