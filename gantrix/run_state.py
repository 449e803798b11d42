"""What loading a run needs beyond its weights: the tricks' merged checkpoint state, which
of a run's tricks this installation lacks and sampling does not need, and the message for a
run trained with the user's own modules (which gantrix cannot rebuild)."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from .compose import Composition
from .recipe import Recipe
from .registry import catalogue


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
