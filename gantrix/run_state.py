"""A run's checkpoint, going out and coming back: written and read back (`save_checkpoint`;
`load_checkpoint`, which also checks its structure), the tricks' merged state, the weights,
optimizers, data order and latent stream loaded into a trainer (`load_weights`), which of a
run's tricks this installation lacks and sampling does not need, and the message for a run
trained with the user's own modules (which gantrix cannot rebuild)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from . import checkpoint
from .checkpoint import save_checkpoint
from .checkpoint_structure import check_structure
from .compose import Composition
from .errors import GantrixError
from .recipe import Recipe
from .registry import catalogue
from .step import load_generator_state

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["custom_models_message", "installed_part", "load_checkpoint", "load_weights",
           "qualname", "save_checkpoint", "trick_state"]


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A run's checkpoint at ``path``: a gantrix checkpoint that loads safely
    (`gantrix.checkpoint.load_checkpoint`) and holds what the core reads, each key of the
    kind it should be (`gantrix.checkpoint_structure`); else a `GantrixError` that names
    the file and the key."""
    return check_structure(checkpoint.load_checkpoint(path), Path(path))


def legacy_settings(train: dict[str, Any]) -> dict[str, Any]:
    """What a run folder's config.toml (its ``[train]`` table) leaves out because the run
    was written before the setting was recorded, as that run had it: an image folder's
    non-square images were squashed before ``image_fit`` existed (so a run resumed,
    sampled or evaluated sees its own images)."""
    data = train.get("data")
    if "image_fit" not in train and isinstance(data, str) and Path(data).is_dir():
        return {"image_fit": "squash"}
    return {}


def trick_state(composition: Composition) -> dict:
    """Every trick's checkpoint state (`gantrix_state_dict`), merged; two tricks may not
    use one key."""
    merged: dict = {}
    for part in composition.hook.gantrix_state_dict():
        for key in part or {}:
            if key in merged:
                raise RuntimeError(f"two tricks checkpoint a state under {key!r}")
        merged.update(part or {})
    return merged


def qualname(model: nn.Module) -> str:
    """The module path and name of ``model``'s class, as a checkpoint records it."""
    cls = type(model)
    return f"{cls.__module__}.{cls.__qualname__}"


def custom_models_message(run: Path | None, recorded: dict, absent: dict) -> str:
    """Why a run trained with the user's own modules (``recorded``) needs ``absent`` again."""
    trained = ", ".join(f"{role} {name}" for role, name in recorded.items())
    missing = " and ".join(absent)
    args = ", ".join(f"{role}=..." for role in recorded)
    return (f"the run in {run} was trained with your own modules ({trained}); gantrix cannot "
            f"rebuild them, so the {missing} must be passed again: in Python, "
            f"Trainer.load({str(run)!r}, {args}) (or Trainer.resume to train on) with new "
            f"instances built as for training; their weights are loaded from the checkpoint")


def installed_part(recipe: Recipe, state: dict) -> tuple[Recipe, list[str]]:
    """``recipe`` (a run's config) without the tricks that are not installed and that the
    checkpoint records as not needed to sample; and their names. A missing trick that is
    needed (or any, for a checkpoint that records nothing) is left for the composition to
    report, with the plugin that would provide it."""
    known = catalogue().tricks
    needed = state.get("sampling", {}).get("tricks")
    if needed is None:
        return recipe, []
    dropped = list(dict.fromkeys(s.name for s in recipe.specs
                                 if s.name not in known and s.name not in needed))
    return recipe.without(dropped), dropped


def load_weights(trainer: "Trainer", state: dict[str, Any]) -> None:
    """Load a checkpoint's models, optimizers, loss scalers, data order and latent stream
    into ``trainer`` (only the generator, for a run loaded without its training-only tricks:
    ``trainer.without``); a clear `GantrixError` when they do not fit, or when the run was
    trained with the user's own modules and they were not given again."""
    recorded = state.get("sampling", {}).get("custom_models", {})
    absent = {role: name for role, name in recorded.items()
              if role not in trainer.custom_models}
    if absent and not (trainer.without and set(absent) == {"discriminator"}):
        raise GantrixError(custom_models_message(trainer.out, recorded, absent))
    parts = ["generator"] if trainer.without else ["generator", "discriminator"]
    stepper = trainer.stepper
    try:
        for role in parts:
            trainer.models.by_role(role).load_state_dict(state["models"][role])
        if not trainer.without:
            for role, opt in stepper.optimizers.items():
                opt.load_state_dict(state["optimizers"][role])
            stepper.precision.load_state_dict(state.get("scalers", {}))
        trainer.data.load_state_dict(state["data"])
        load_generator_state(stepper.rng, state["rng"]["z"])  # CUDA <-> CPU too
    except (KeyError, RuntimeError, ValueError) as exc:
        hint = ""
        if not trainer.custom_models and not recorded:
            hint = ("\n(if the run was trained with your own modules, pass them: "
                    "Trainer.load(run, generator=..., discriminator=...))")
        raise GantrixError(f"the checkpoint in {trainer.out} does not fit this run's models, "
                           f"optimizers or data: {str(exc).strip()}{hint}") from None
