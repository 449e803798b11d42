"""Discovery: the one global plugin manager, and the catalogue of tricks and recipes.

Every plugin, built-in or third-party, is an entry point in group ``gantrix``; gantrix's own
modules in ``gantrix.plugins`` are listed there by gantrix's own distribution, so they load
exactly like anyone else's. Loading happens once, on first use, never at ``import gantrix``.

Environment:

- ``GANTRIX_LOAD_PLUGINS``: comma-separated entry-point or distribution names to load
  besides the built-ins; set and empty means built-ins only; unset means everything.
- ``GANTRIX_DISABLE_PLUGINS``: comma-separated entry-point or distribution names to skip.

A plugin that fails to import, or whose hooks match no spec, is recorded with its error
(``gantrix plugins`` shows it) and the others keep working.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import pluggy

from . import hookspecs
from .errors import GantrixError, UnknownNameError
from .trick import KINDS, Trick

GROUP = "gantrix"
BUILTIN_DIST = "gantrix"


@dataclass
class PluginInfo:
    """One loaded (or failed) plugin, as ``gantrix plugins`` shows it."""

    name: str
    distribution: str
    version: str
    module: str
    hooks: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class RecipeEntry:
    """A named recipe: where it came from and its content (see `gantrix.recipe`)."""

    name: str
    data: Mapping[str, Any]
    plugin: str
    source: str = ""

    @property
    def summary(self) -> str:
        return self.data.get("summary", "")


class Catalogue:
    """Everything the installed plugins registered."""

    def __init__(self, pm: pluggy.PluginManager, plugins: list[PluginInfo]):
        self.pm = pm
        self.plugins = plugins
        self.tricks: dict[str, type[Trick]] = {}
        self.recipes: dict[str, RecipeEntry] = {}
        self._collect()

    def _collect(self) -> None:
        by_name = {p.name: p for p in self.plugins}
        for impl in self.pm.hook.gantrix_register_tricks.get_hookimpls():
            info = by_name[impl.plugin_name]
            self._call(info, impl.function, register=lambda cls, _i=info: self._add_trick(cls, _i))
        for impl in self.pm.hook.gantrix_register_recipes.get_hookimpls():
            info = by_name[impl.plugin_name]
            self._call(info, impl.function, register=lambda n, d, _i=info: self._add_recipe(n, d, _i))

    @staticmethod
    def _call(info: PluginInfo, function, **kwargs) -> None:
        try:
            function(**kwargs)
        except Exception as exc:  # a broken plugin must not take the others down
            info.error = f"{type(exc).__name__}: {exc}"

    def _add_trick(self, cls: type[Trick], info: PluginInfo) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Trick)):
            raise TypeError(f"register() takes a Trick subclass, got {cls!r}")
        if not cls.name or cls.kind not in KINDS:
            raise TypeError(f"{cls.__name__} needs a name and a kind in {KINDS}")
        if cls.name in self.tricks:
            other = self.tricks[cls.name].plugin
            raise ValueError(f"trick {cls.name!r} is already registered by {other}")
        cls.plugin = info.distribution
        self.tricks[cls.name] = cls

    def _add_recipe(self, name: str, data: Any, info: PluginInfo) -> None:
        from .recipe import load_recipe_file

        source = ""
        if isinstance(data, (str, Path)):
            source = str(data)
            data = load_recipe_file(Path(data))
        if name in self.recipes:
            raise ValueError(f"recipe {name!r} is already registered by {self.recipes[name].plugin}")
        self.recipes[name] = RecipeEntry(name, data, info.distribution, source)

    def trick(self, name: str) -> type[Trick]:
        try:
            return self.tricks[name]
        except KeyError:
            raise UnknownNameError("trick", name, self.tricks) from None

    def recipe(self, name: str) -> RecipeEntry:
        try:
            return self.recipes[name]
        except KeyError:
            raise UnknownNameError("recipe", name, self.recipes) from None


def _names(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def _wanted(ep: metadata.EntryPoint, dist: str) -> bool:
    disabled = _names("GANTRIX_DISABLE_PLUGINS") or set()
    if ep.name in disabled or dist in disabled or ep.value in disabled:
        return False
    if dist == BUILTIN_DIST:
        return True
    load = _names("GANTRIX_LOAD_PLUGINS")
    return load is None or ep.name in load or dist in load


def _load(pm: pluggy.PluginManager) -> list[PluginInfo]:
    plugins: list[PluginInfo] = []
    seen = set()
    # gantrix's own plugins first, so a third-party trick named like a built-in one is the
    # one reported as a duplicate, whatever the order of sys.path.
    entry_points = sorted(metadata.entry_points(group=GROUP),
                          key=lambda ep: not (ep.dist and ep.dist.name == BUILTIN_DIST))
    for ep in entry_points:
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        if (dist, ep.name) in seen or not _wanted(ep, dist):
            continue
        seen.add((dist, ep.name))
        info = PluginInfo(ep.name, dist, version, ep.value)
        plugins.append(info)
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as exc:
            info.error = f"{type(exc).__name__}: {exc}"
            continue
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            pm.unregister(name=ep.name)
            info.error = f"hook matches no spec: {exc}"
            continue
        info.hooks = sorted(h.name for h in pm.get_hookcallers(module) or ())
    if not any(p.distribution == BUILTIN_DIST and not p.error for p in plugins):
        raise GantrixError(
            "gantrix's built-in plugins were not found: install the package "
            "(pip install -e .) so its entry points exist"
        )
    return plugins


_lock = threading.Lock()
_catalogue: Catalogue | None = None


def catalogue() -> Catalogue:
    """The catalogue, loading every plugin on first call (once per process)."""
    global _catalogue
    with _lock:
        if _catalogue is None:
            pm = pluggy.PluginManager(hookspecs.PROJECT)
            pm.add_hookspecs(hookspecs)
            plugins = _load(pm)
            _catalogue = Catalogue(pm, plugins)
        return _catalogue


def reset() -> None:
    """Forget the loaded plugins, so the next call re-reads the environment (for tests)."""
    global _catalogue
    with _lock:
        _catalogue = None


def tricks(kind: str | None = None) -> dict[str, type[Trick]]:
    """The trick classes by name, optionally of one kind."""
    if kind is not None and kind not in KINDS:
        raise UnknownNameError("kind", kind, KINDS)
    found = catalogue().tricks
    return {n: c for n, c in sorted(found.items()) if kind is None or c.kind == kind}


def make(name: str, **params: Any) -> Trick:
    """A configured trick: ``make("gradient-penalty", weight=5)``."""
    return catalogue().trick(name)(**params)
