"""Recipes: what the user asked for, before it is checked and composed.

A recipe is an ordered list of trick specs. It can come from

- trick strings: ``Recipe("wgan", "gradient-penalty:weight=5", "n-critic:5")``;
- a built-in (or plugin) recipe name: ``Recipe(recipe="wgan-gp")``, ``Recipe.named("wgan-gp")``;
- a TOML file: ``Recipe(config="my.toml")``, ``Recipe.from_toml("my.toml")``;

and any mix: the tricks given explicitly are added to (or override the parameters of, or
replace) the recipe's. TOML files look like this::

    recipe = "wgan-gp"                      # optional: start from a named recipe
    summary = "WGAN-GP with a lighter penalty"
    tricks = ["gradient-penalty:weight=5", { name = "adam", lr = 1e-4 }]

    [train]                                 # optional: settings for `gantrix train`
    steps = 2000

`Recipe.check()` returns the findings; `Recipe.compose()` returns a ready `Composition` or
raises `CompositionError`.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import GantrixError

USER = "user"


@dataclass
class TrickSpec:
    """One trick as asked for: its name, its raw parameters, and where it came from
    (``"user"`` or ``"recipe:NAME"``)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    origin: str = USER

    @classmethod
    def parse(cls, text: str, origin: str = USER) -> "TrickSpec":
        """Read ``name`` or ``name:key=value,...`` (params stay strings until the class
        is known; see `TrickSpec.resolve`)."""
        name, _, args = text.strip().partition(":")
        if not name:
            raise GantrixError(f"empty trick name in {text!r}")
        return cls(name.strip(), {"__text__": args} if args else {}, origin)

    def resolve(self, cls) -> dict[str, Any]:
        """The checked parameter values for trick class ``cls``."""
        params = dict(self.params)
        text = params.pop("__text__", None)
        values = cls.parse_params(text) if text else {}
        for key, value in params.items():
            values[key.replace("-", "_")] = value
        return values

    def __str__(self) -> str:
        text = self.params.get("__text__")
        rest = ",".join(f"{k}={v}" for k, v in self.params.items() if k != "__text__")
        args = ",".join(a for a in (text, rest) if a)
        return f"{self.name}:{args}" if args else self.name


def load_recipe_file(path: Path) -> dict[str, Any]:
    """Read a recipe TOML file, with errors that name the file."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise GantrixError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise GantrixError(f"{path} is not valid TOML: {exc}") from None


def _specs_from_table(data: Mapping[str, Any], origin: str, where: str) -> list[TrickSpec]:
    tricks = data.get("tricks", [])
    if not isinstance(tricks, list):
        raise GantrixError(f"{where}: 'tricks' must be a list of strings or tables")
    specs = []
    for item in tricks:
        if isinstance(item, str):
            specs.append(TrickSpec.parse(item, origin))
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            params = {k: v for k, v in item.items() if k != "name"}
            specs.append(TrickSpec(item["name"], params, origin))
        else:
            raise GantrixError(f"{where}: cannot read trick entry {item!r}")
    return specs


class Recipe:
    """An ordered, not yet checked, set of trick specs (and optional train settings)."""

    def __init__(self, *tricks: str | TrickSpec, recipe: str | None = None,
                 config: str | Path | None = None):
        self.specs: list[TrickSpec] = []
        self.train: dict[str, Any] = {}
        self.names: list[str] = []  # the named recipes this one builds on
        if len(tricks) == 1 and isinstance(tricks[0], str) and recipe is None and config is None:
            recipe, config, tricks = self._guess_single(tricks[0], recipe, config, tricks)
        if config is not None:
            self._add_config(Path(config))
        if recipe is not None:
            self._add_named(recipe)
        for item in tricks:
            self.specs.append(item if isinstance(item, TrickSpec) else TrickSpec.parse(item))

    @staticmethod
    def _guess_single(text, recipe, config, tricks):
        """``Recipe("wgan-gp")`` or ``Recipe("my.toml")``: a lone string that is a file or
        names a recipe but no trick is read as such."""
        from .registry import catalogue

        if text.endswith(".toml") or Path(text).is_file():
            return None, text, ()
        cat = catalogue()
        if ":" not in text and text not in cat.tricks and text in cat.recipes:
            return text, None, ()
        return recipe, config, tricks

    @classmethod
    def named(cls, name: str) -> "Recipe":
        return cls(recipe=name)

    @classmethod
    def from_toml(cls, path: str | Path) -> "Recipe":
        return cls(config=path)

    def _add_named(self, name: str, seen: tuple[str, ...] = ()) -> None:
        from .registry import catalogue

        if name in seen:
            raise GantrixError(f"recipe {name!r} includes itself: {' -> '.join(seen + (name,))}")
        entry = catalogue().recipe(name)
        base = entry.data.get("recipe")
        if base:
            self._add_named(base, seen + (name,))
        self.names.append(name)
        self.specs.extend(_specs_from_table(entry.data, f"recipe:{name}", f"recipe {name!r}"))
        self.train.update(entry.data.get("train", {}))

    def _add_config(self, path: Path) -> None:
        data = load_recipe_file(path)
        unknown = set(data) - {"recipe", "summary", "paper", "tricks", "train"}
        if unknown:
            raise GantrixError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; "
                               "allowed: recipe, summary, paper, tricks, train")
        if data.get("recipe"):
            self._add_named(data["recipe"])
        self.specs.extend(_specs_from_table(data, USER, str(path)))
        self.train.update(data.get("train", {}))

    def extend(self, tricks: Iterable[str | TrickSpec]) -> "Recipe":
        """Add user tricks (as ``--trick`` does); returns self."""
        for item in tricks:
            self.specs.append(item if isinstance(item, TrickSpec) else TrickSpec.parse(item))
        return self

    def check(self):
        """All findings (errors, warnings, notes) without raising on composition errors.

        Unknown names and bad parameter values raise at once (`UnknownNameError`,
        `ParamError`): there is nothing sensible to check past them.
        """
        from .compose import resolve

        return resolve(self)[1]

    def compose(self):
        """The checked `Composition`; raises `CompositionError` when any finding is an error."""
        from .compose import Composition

        return Composition(self)

    def __repr__(self) -> str:
        return f"Recipe({', '.join(repr(str(s)) for s in self.specs)})"
