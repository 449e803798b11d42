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

    [points]                                # optional: only on 2-D (vector) data
    tricks = ["lr-decay"]                   # added after this file's tricks
    train = { latent_dim = 2 }              # over this file's [train]
    # [images] likewise, only on images

    [images.mnist]                          # optional: only on a built-in data set
    train = { batch_size = 64 }             # over [images] (tricks likewise)

A recipe that needs different settings for different data says so in those tables;
`Recipe.for_data(kind, name)` applies them once the data is known (`gantrix train` does).
`Recipe.check()` returns the findings; `Recipe.compose()` returns a ready `Composition` or
raises `CompositionError`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from .compose import CONFIG, USER, Composition, merge_specs, resolve
from .data import IMAGE_SETS, TOYS
from .errors import GantrixError
from .registry import catalogue
from .tomlfile import load_toml

#: the kinds of data a recipe may have a table for (see `Recipe.for_data`).
DATA_KINDS = ("points", "images")
#: the keys of a recipe TOML file, and of one of its data-kind tables.
RECIPE_KEYS = ("recipe", "summary", "paper", "tricks", "train") + DATA_KINDS
DATA_KIND_KEYS = ("tricks", "train")


@dataclass
class TrickSpec:
    """One trick as asked for: its name, its raw parameters, where it came from (``"user"``,
    ``"config:PATH"`` or ``"recipe:NAME"``) and, when written in a recipe or file, which (for
    errors)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    origin: str = USER
    where: str = ""

    @classmethod
    def parse(cls, text: str, origin: str = USER, where: str = "") -> "TrickSpec":
        """Read ``name`` or ``name:key=value,...`` (params stay strings until the class
        is known; see `TrickSpec.resolve`)."""
        name, _, args = text.strip().partition(":")
        if not name:
            raise GantrixError(f"empty trick name in {text!r}")
        return cls(name.strip(), {"__text__": args} if args else {}, origin, where)

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


def specs_from_table(data: Mapping[str, Any], origin: str, where: str) -> list[TrickSpec]:
    tricks = data.get("tricks", [])
    if not isinstance(tricks, list):
        raise GantrixError(f"{where}: 'tricks' must be a list of strings or tables")
    specs = []
    for item in tricks:
        if isinstance(item, str):
            specs.append(TrickSpec.parse(item, origin, where))
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            params = {k: v for k, v in item.items() if k != "name"}
            specs.append(TrickSpec(item["name"], params, origin, where))
        else:
            raise GantrixError(f"{where}: cannot read trick entry {item!r}")
    return specs


def _data_kind_tables(data: Mapping[str, Any], where: str) -> dict[str, Mapping[str, Any]]:
    """The ``[points]`` / ``[images]`` tables of a recipe, checked, with their tables for
    built-in data sets of that kind (``[images.mnist]``) inside them under the set's name."""
    sets = {"points": TOYS, "images": IMAGE_SETS}
    tables = {}
    for kind in DATA_KINDS:
        table = data.get(kind)
        if table is None:
            continue
        _check_table(table, f"[{kind}]", where, sets[kind])
        for name in sets[kind]:
            if name in table:
                _check_table(table[name], f"[{kind}.{name}]", where, ())
        tables[kind] = table
    return tables


def _check_table(table: Any, label: str, where: str, sets: Iterable[str]) -> None:
    if not isinstance(table, Mapping):
        raise GantrixError(f"{where}: {label} must be a table with 'tricks' and/or 'train'")
    unknown = set(table) - set(DATA_KIND_KEYS) - set(sets)
    if unknown:
        subtables = f", or a table for a built-in data set ({', '.join(sets)})" if sets else ""
        raise GantrixError(f"{where}: unknown key(s) in {label}: {', '.join(sorted(unknown))}; "
                           f"allowed: {', '.join(DATA_KIND_KEYS)}{subtables}")
    if not isinstance(table.get("train", {}), Mapping):
        raise GantrixError(f"{where}: {label} train must be a table of settings")


#: what each top-level key of a recipe holds, where it is not a list or table of its own
#: (``tricks``, ``[points]``, ``[images]``: checked where they are read).
_KEY_TYPES = {"recipe": (str, "a recipe's name (a string)"),
              "summary": (str, "a string"), "paper": (str, "a string"),
              "train": (Mapping, "a table of settings ([train] with key = value lines)")}


def _check_types(data: Mapping[str, Any], where: str) -> None:
    """A recipe's (a TOML file's, a plugin's) top-level keys of the kind they must be:
    ``train = 5`` or ``recipe = 5`` said by name, not a crash later."""
    for key, (kind, what) in _KEY_TYPES.items():
        if key in data and not isinstance(data[key], kind):
            raise GantrixError(f"{where}: {key!r} must be {what}, got {data[key]!r}")


def data_set_tables(table: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The tables for built-in data sets inside a checked ``[points]``/``[images]`` table,
    by the set's name (every key but its own ``tricks`` and ``train``)."""
    return {k: v for k, v in table.items() if k not in DATA_KIND_KEYS}


def _tables_for(layer: "_Layer", kind: str, name: str | None) -> list[tuple[str, Mapping[str, Any]]]:
    """``(label, table)``: a layer's table for ``kind`` of data, then its table for the data
    set ``name`` within it, those it has."""
    table = layer.kinds.get(kind)
    if table is None:
        return []
    found = [(f"[{kind}]", table)]
    if name in data_set_tables(table):
        found.append((f"[{kind}.{name}]", table[name]))
    return found


@dataclass
class _Layer:
    """One named recipe or config file inside a recipe: where its tricks end, and its
    per-data-kind tables."""

    end: int
    origin: str
    where: str
    train: Mapping[str, Any]
    kinds: dict[str, Mapping[str, Any]]


def read_lone_name(text: str) -> tuple[str | None, str | None, tuple[str, ...], list[str]]:
    """The one rule for a lone name, wherever gantrix takes one (``Recipe("wgan")``,
    ``Trainer("wgan", ...)``, ``gantrix bench quality -r wgan``): a TOML file is a config;
    a name with parameters (``wgan:...``) is a trick; a name of a recipe is that recipe — the
    paper's whole setup, which is what a lone name asks for — with a note when a trick has the
    name too (``wgan``, ``dcgan``, the relativistic losses), saying how to get the bare trick;
    any other name is a trick. Returns ``(recipe, config, tricks, notes)`` to build from."""
    if text.endswith(".toml") or Path(text).is_file():
        return None, text, (), []
    cat = catalogue()
    if ":" in text or text not in cat.recipes:
        return None, None, (text,), []
    if text not in cat.tricks:
        return text, None, (), []
    return text, None, (), [
        f"{text!r} names both a recipe and a trick; alone, it is read as the recipe (the "
        f"trick with its paper's optimizer, schedule and settings). For the bare trick write "
        f"Recipe().extend([{text!r}]), or --trick {text} on the command line."]


class Recipe:
    """An ordered, not yet checked, set of trick specs (and optional train settings)."""

    def __init__(self, *tricks: str | TrickSpec, recipe: str | None = None,
                 config: str | Path | None = None):
        self.specs: list[TrickSpec] = []
        self.train: dict[str, Any] = {}
        self.names: list[str] = []  # the named recipes this one builds on
        self._layers: list[_Layer] = []
        self.notes: list[str] = []  # how the arguments were read, when that could surprise
        if len(tricks) == 1 and isinstance(tricks[0], str) and recipe is None and config is None:
            recipe, config, tricks, self.notes = read_lone_name(tricks[0])
        if config is not None:
            self._add_config(Path(config))
        if recipe is not None:
            self._add_named(recipe)
        for item in tricks:
            self.specs.append(item if isinstance(item, TrickSpec) else TrickSpec.parse(item))

    @classmethod
    def named(cls, name: str) -> "Recipe":
        return cls(recipe=name)

    @classmethod
    def from_toml(cls, path: str | Path) -> "Recipe":
        return cls(config=path)

    def _add_named(self, name: str, seen: tuple[str, ...] = (), where: str = "") -> None:
        """Add recipe ``name`` (after the recipe it builds on); ``where`` names what asked
        for it, for the error when no loaded plugin has it."""
        if name in seen:
            raise GantrixError(f"recipe {name!r} includes itself: {' -> '.join(seen + (name,))}")
        entry = catalogue().recipe(name, where)
        _check_types(entry.data, f"recipe {name!r}")
        base = entry.data.get("recipe")
        if base:
            self._add_named(base, seen + (name,), f"recipe {name!r}")
        self.names.append(name)
        self._add_layer(entry.data, f"recipe:{name}", f"recipe {name!r}")

    def _add_config(self, path: Path) -> None:
        data = load_toml(path)
        unknown = set(data) - set(RECIPE_KEYS)
        if unknown:
            raise GantrixError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; "
                               f"allowed: {', '.join(RECIPE_KEYS)}")
        _check_types(data, str(path))
        if data.get("recipe"):
            self._add_named(data["recipe"], where=str(path))
        self._add_layer(data, f"{CONFIG}:{path}", str(path))

    def _add_layer(self, data: Mapping[str, Any], origin: str, where: str) -> None:
        self.specs.extend(specs_from_table(data, origin, where))
        train = data.get("train", {})
        self.train.update(train)
        kinds = _data_kind_tables(data, where)
        self._layers.append(_Layer(len(self.specs), origin, where, train, kinds))

    def data_kind_tables(self, kind: str) -> list[tuple[str, Mapping[str, Any]]]:
        """``(where, table)`` for each part of this recipe with a table for ``kind``."""
        return [(layer.where, layer.kinds[kind]) for layer in self._layers if kind in layer.kinds]

    def for_data(self, kind: str, name: str | None = None) -> "Recipe":
        """This recipe as it applies to ``kind`` of data (``"points"`` or ``"images"``), and
        to the built-in data set ``name`` (``"mnist"``; None for a user's data).

        Each named recipe's or config file's ``[points]``/``[images]`` table adds its tricks
        right after that part's own tricks (so tricks given later, the user's, still win),
        and its ``train`` settings over that part's ``[train]`` (a later config file's
        ``[train]`` still wins); its table for the data set (``[images.mnist]``) adds its
        tricks and settings after those. A new recipe; this one is unchanged.
        """
        if kind not in DATA_KINDS:
            raise GantrixError(f"unknown kind of data {kind!r}; allowed: {', '.join(DATA_KINDS)}")
        out = Recipe()
        out.specs, out.names = list(self.specs), list(self.names)
        for layer in reversed(self._layers):  # from the end, so earlier positions hold
            out.specs[layer.end:layer.end] = [
                spec for label, table in _tables_for(layer, kind, name)
                for spec in specs_from_table(table, layer.origin, f"{layer.where} {label}")]
        for layer in self._layers:
            out.train.update(layer.train)
            for _, table in _tables_for(layer, kind, name):
                out.train.update(table.get("train", {}))
        return out

    def without(self, names: Iterable[str]) -> "Recipe":
        """A copy of this recipe without the tricks called ``names`` (every spec of them)."""
        names = set(names)
        out = copy.copy(self)
        out.specs = [s for s in self.specs if s.name not in names]
        out._layers = [replace(layer, end=sum(
            s.name not in names for s in self.specs[:layer.end])) for layer in self._layers]
        out.train, out.names, out.notes = dict(self.train), list(self.names), list(self.notes)
        return out

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
        return resolve(self)[1]

    def compose(self):
        """The checked `Composition`; raises `CompositionError` when any finding is an error."""
        return Composition(self)

    def __repr__(self) -> str:
        """The tricks once each, in the order first named, with the parameters that hold (a
        later spec's over an earlier one's, as composing takes them: `merge_specs`); the
        specs as given while a name or a value in them is unknown."""
        try:
            shown = [m.spec() for m in merge_specs(self.specs)]
        except GantrixError:
            shown = [str(s) for s in self.specs]
        return f"Recipe({', '.join(map(repr, shown))})"
