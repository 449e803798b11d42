"""A run planned once: the recipe applied to the data, composed, its settings resolved and
checked, the data opened, the models built and checked — everything a run needs before its
first step, and every finding on the way.

`plan_run` is what `gantrix.Trainer` trains, what ``gantrix check`` reports and what an
ablation varies. Each phase returns its findings; `RunPlan.findings` holds them all, errors
first, each once (a rule may find the same in the generator and in the critic).

``strict`` (training) raises at the first phase with an error: `CompositionError` with the
findings so far, or `GantrixError` for a setting that cannot work. Without it (checking),
the findings are collected and the plan stops at the phase that found errors, with
``stopped`` saying where.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import compiling, distributed
from .compose import Composition, resolve
from .data import BUILTIN, Data, Mirrored, TensorData, describe_source, load_data
from .errors import CompositionError, GantrixError
from .findings import SEVERITIES, Finding
from .models import ModelSpec, Models
from .recipe import Recipe
from .settings import (Settings, check_shared_batch, check_values, defaults_for,
                       resolve_settings, settings_findings)
from .step import checked_models
from .trick import Trick


@dataclass
class RunPlan:
    """A run, set up and checked but not trained. Parts after a phase that found errors
    are None (a strict plan raises instead)."""

    #: the recipe as it applies to the data (`Recipe.for_data`)
    recipe: Recipe
    #: the tricks that survive composition (`gantrix.compose.resolve`), errors or not
    tricks: list[Trick] = field(default_factory=list)
    composition: Composition | None = None
    data: Data | None = None
    settings: Settings | None = None
    spec: ModelSpec | None = None
    models: Models | None = None
    #: the processes that share each batch
    processes: int = 1
    findings: list[Finding] = field(default_factory=list)
    #: the global random state right after the models were built from ``settings.seed``:
    #: where a run's own random stream continues
    rng_after_build: torch.Tensor | None = None
    #: the phase that stopped the plan, in words, or None when it is complete
    stopped: str | None = None

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def _add(self, found: list[Finding]) -> None:
        self.findings = sorted(dict.fromkeys([*self.findings, *found]),
                               key=lambda f: SEVERITIES.index(f.severity))


def as_recipe(recipe: Recipe | str | list[str] | tuple[str, ...] | None) -> Recipe:
    """A `Recipe` from what the Trainer and the benchmarks take: a Recipe, a lone name
    (`gantrix.recipe.read_lone_name`'s rule) or a list of trick strings."""
    if isinstance(recipe, Recipe):
        return recipe
    if recipe is None:
        raise GantrixError("no recipe: name a recipe or at least a loss trick")
    if isinstance(recipe, str):
        return Recipe(recipe)
    return Recipe(*recipe)


def open_data(data: Any, settings: dict[str, Any]) -> tuple[Data, str]:
    """The data a run trains on, and its source as config.toml records it. ``data`` is what
    `gantrix.data.load_data` reads, a `Data`, or a tensor; None takes ``settings["data"]``."""
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
    if data == "tensor":  # the record of an in-memory tensor, never a file of that name
        raise GantrixError('data "tensor" stands for an in-memory tensor, saved in its run '
                           "folder as data.pt: resume or load that run, or train on the file "
                           "(--data RUN/data.pt); a file or folder named tensor: --data ./tensor")
    loaded = load_data(data, seed=seed, image_size=settings.get("image_size"),
                       skip_bad_images=settings.get("skip_bad_images", False),
                       image_fit=settings.get("image_fit"))
    return loaded, describe_source(str(data))


def plan_run(recipe: Recipe, data: Any = None, *, settings: dict[str, Any] | None = None,
             generator: nn.Module | None = None, discriminator: nn.Module | None = None,
             processes: int = 1, layout: int = ModelSpec.layout,
             strict: bool = True) -> RunPlan:
    """Plan a run of ``recipe`` on ``data`` (by default its ``[train] data``; without any,
    a non-strict plan checks the composition alone).

    ``settings`` are the caller's (keyword arguments, command-line options): over the
    recipe's ``[train]`` table, over the defaults for the data. ``generator`` and
    ``discriminator`` replace the built models (the composition still transforms and
    checks them). ``layout`` is the core's model layout (an old run keeps its own).
    """
    given = check_values(dict(settings or {}), "train")
    from_recipe = check_values(dict(recipe.train), "the recipe's [train] table")
    if data is None and "data" not in {**from_recipe, **given} and not strict:
        return _metadata_only(recipe)
    data, source = open_data(data, {**from_recipe, **given})
    recipe = recipe.for_data("images" if data.is_image else "points", source)
    plan = RunPlan(recipe, data=data, processes=processes)
    from_recipe = check_values(dict(recipe.train), "the recipe's [train] table")
    if not _compose(plan, strict):
        plan.stopped = "the composition has errors"
        return plan
    plan.settings = s = resolve_settings({**given, "data": source}, from_recipe,
                                         defaults_for(data, source))
    if s.mirror:
        plan.data = Mirrored(plan.data, s.seed)
    plan._add(_settings_phase(plan.composition, s, processes, strict))
    plan.spec = ModelSpec(data.shape, data.num_classes, s.latent_dim, s.width, layout=layout)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)
        try:
            plan.models, found = checked_models(plan.composition, plan.spec, generator,
                                                discriminator)
        except CompositionError as exc:
            return _stop(plan, "errors found (above)", exc, strict)
        except (ValueError, TypeError) as exc:
            raise GantrixError(f"cannot build models for {data.name} "
                               f"{tuple(data.shape)}: {exc}") from None
        plan.rng_after_build = torch.get_rng_state()
    plan._add(found)
    plan._add(distributed.findings(plan.composition.tricks, plan.models, processes))
    return plan


def _metadata_only(recipe: Recipe) -> RunPlan:
    """A plan without data: the composition checked by the tricks' metadata alone."""
    plan = RunPlan(recipe, stopped="no data: the models were not built")
    _compose(plan, strict=False)
    return plan


def _compose(plan: RunPlan, strict: bool) -> bool:
    """Resolve and compose ``plan.recipe``; False (strict: `CompositionError`) when the
    composition has errors."""
    plan.tricks, found = resolve(plan.recipe)
    plan._add(found)
    if any(f.severity == "error" for f in found):
        if strict:
            raise CompositionError(found)
        return False
    plan.composition = Composition(plan.recipe, resolved=(plan.tricks, found))
    return True


def _stop(plan: RunPlan, why: str, error: CompositionError, strict: bool) -> RunPlan:
    """End a plan at a phase with errors: raise the phase's error when strict, else record
    its findings and ``why``."""
    if strict:
        raise error
    plan._add(error.findings)
    plan.stopped = why
    return plan


def _settings_phase(composition: Composition, settings: Settings, processes: int,
                    strict: bool) -> list[Finding]:
    """The settings against the composition and the processes: a learning rate for an Adam
    that an optimizer trick replaces, a batch the processes cannot share, the tricks'
    `gantrix_check_settings`. Strict: the first error raises."""
    problems = []
    if settings.lr is not None and any("optimizer" in t.features() for t in composition.tricks):
        problems.append("lr sets the core's default Adam, but this composition has an "
                        "optimizer trick: set its lr instead (e.g. --trick adam:lr=1e-4)")
    if settings.compile and (missing := compiling.missing_backend(settings.device)):
        problems.append(missing)
    try:
        check_shared_batch(settings.batch_size, processes)
    except GantrixError as exc:
        problems.append(str(exc))
    if problems and strict:
        raise GantrixError(problems[0])
    found = [Finding("error", p) for p in problems]
    tricks = settings_findings(composition, settings.batch_size, processes)
    if settings.compile:
        tricks += compiling.findings(composition)
    if strict and any(f.severity == "error" for f in tricks):
        raise CompositionError(tricks)
    return found + tricks
