"""Discovery: the one global plugin manager, and the catalogue of tricks, recipes and
trackers.

gantrix's own plugins are the modules listed in `BUILTIN_PLUGINS` (as pytest, datasette and
llm list theirs); every other plugin is an installed entry point in group ``gantrix``. Both
go through one isolating loader and give the same `PluginInfo` records, built-ins first (so
a third-party trick named like a built-in one is the one reported as a duplicate). A new
module in ``plugins/`` needs one line in `BUILTIN_PLUGINS`, no reinstall, and no installed
metadata. An entry point naming a built-in module is not registered twice. Loading happens
once, on first use, never at ``import gantrix``.

A built-in plugin's name is its module's last part with hyphens (``spectral-norm`` for
``gantrix.plugins.spectral_norm``); its distribution is ``gantrix``, its version gantrix's.

Environment:

- ``GANTRIX_LOAD_PLUGINS``: comma-separated entry-point or distribution names to load
  besides the built-ins; set and empty means built-ins only; unset means everything.
- ``GANTRIX_DISABLE_PLUGINS``: comma-separated plugin names (a built-in's, an entry
  point's), distribution names (``gantrix``: every built-in) or module names to skip.

A plugin that fails to import, whose hooks match no spec, or whose discovery hook raises or
registers something invalid is recorded with every error it met (``gantrix plugins`` shows
them) and contributes nothing; the others keep working. A name in either variable that no
plugin has is a warning (`GantrixWarning`, also kept in `Catalogue.warnings`, which the CLI
prints for every command), and so is a plugin kept out by a hook that matches none of
gantrix's (in the module or in a trick class: most often a misspelt name, said with the hook
it was probably meant to be), which would otherwise go unseen but for its missing tricks.
"""
from __future__ import annotations

import difflib
import os
import re
import threading
import warnings
from dataclasses import dataclass, field
from functools import partial
from importlib import import_module, metadata
from pathlib import Path
from typing import Any, Callable, Mapping

import pluggy

from . import __version__, hookspecs
from .errors import GantrixError, GantrixWarning, UnknownNameError
from .tomlfile import load_toml
from .trick import KINDS, Trick

GROUP = "gantrix"
BUILTIN_DIST = "gantrix"
#: gantrix's own plugin modules, registered before any entry point, in this order (a new
#: module in plugins/ is one more line here: no reinstall, no installed metadata needed).
BUILTIN_PLUGINS: tuple[str, ...] = (
    "gantrix.plugins.adaptive",
    "gantrix.plugins.attention",
    "gantrix.plugins.capacity",
    "gantrix.plugins.conditional",
    "gantrix.plugins.conditional_batchnorm",
    "gantrix.plugins.conditional_critics",
    "gantrix.plugins.critic_terms",
    "gantrix.plugins.dcgan",
    "gantrix.plugins.feature_tricks",
    "gantrix.plugins.generator_terms",
    "gantrix.plugins.infogan",
    "gantrix.plugins.latent",
    "gantrix.plugins.losses",
    "gantrix.plugins.minibatch_stddev",
    "gantrix.plugins.noise",
    "gantrix.plugins.optimizers",
    "gantrix.plugins.pac",
    "gantrix.plugins.penalties",
    "gantrix.plugins.recipes",
    "gantrix.plugins.relativistic",
    "gantrix.plugins.resnet",
    "gantrix.plugins.schedules",
    "gantrix.plugins.selu",
    "gantrix.plugins.spectral_norm",
    "gantrix.plugins.trackers",
    "gantrix.plugins.unrolled",
    "gantrix.plugins.weights",
)
LOAD_VAR, DISABLE_VAR = "GANTRIX_LOAD_PLUGINS", "GANTRIX_DISABLE_PLUGINS"
#: how a hook implementation that matches none of gantrix's hooks is reported
NO_HOOK = "matches no gantrix hook"
#: a trick name: lowercase words of letters and digits joined by single hyphens.
KEBAB_CASE = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")


def kebab_case(name: str) -> str:
    """``name`` respelt in kebab-case (``Bad_Name`` -> ``bad-name``), for error messages."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name).lower()
    return re.sub(r"[^a-z0-9]+", "-", words).strip("-")


def unknown_hooks(obj: object) -> list[str]:
    """What is wrong with each of ``obj``'s (a plugin module's, a trick class's) attributes
    marked ``@hookimpl`` that matches no hook of `gantrix.hookspecs`, which pluggy would
    reject: its name and, when one is close, the hook it was probably meant to be
    (``gantrix_register_trick ... did you mean gantrix_register_tricks?``)."""
    known = sorted(name for name in dir(hookspecs)
                   if isinstance(getattr(getattr(hookspecs, name), f"{hookspecs.PROJECT}_spec",
                                         None), dict))
    found = []
    for name in dir(obj):
        opts = getattr(getattr(obj, name, None), f"{hookspecs.PROJECT}_impl", None)
        if not isinstance(opts, dict) or opts.get("optionalhook"):
            continue
        target = opts.get("specname") or name
        if target in known:
            continue
        # compared without the prefix every hook shares, which would make any name close
        prefix = f"{hookspecs.PROJECT}_"
        close = difflib.get_close_matches(target.removeprefix(prefix),
                                          [k.removeprefix(prefix) for k in known], n=1)
        hint = (f"; did you mean {prefix}{close[0]}?" if close else
                " (gantrix.hookspecs lists them)")
        found.append(f"{name} {NO_HOOK}{hint}")
    return found


@dataclass
class PluginInfo:
    """One loaded (or failed) plugin, as ``gantrix plugins`` shows it: every error it met,
    and the names of the tricks, recipes and trackers it contributed (none once it
    failed)."""

    name: str
    distribution: str
    version: str
    module: str
    hooks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    tricks: list[str] = field(default_factory=list)
    recipes: list[str] = field(default_factory=list)
    trackers: list[str] = field(default_factory=list)

    @property
    def error(self) -> str | None:
        """The errors on one line, or None when the plugin loaded."""
        return "; ".join(self.errors) or None


@dataclass(frozen=True)
class Skipped:
    """An installed plugin the environment kept from loading, and which variable did."""

    name: str
    distribution: str
    version: str
    why: str


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


@dataclass(frozen=True)
class TrackerEntry:
    """A tracker (`gantrix.hookspecs.gantrix_register_trackers`): its factory, which plugin
    registered it, the modules it needs and the command that installs them."""

    name: str
    factory: Callable[..., Any]
    plugin: str
    packages: tuple[str, ...] = ()
    install: str = ""
    summary: str = ""


class Catalogue:
    """Everything the loaded plugins registered, what the environment skipped, and the
    warnings about the environment itself."""

    def __init__(self, pm: pluggy.PluginManager, plugins: list[PluginInfo],
                 skipped: list[Skipped] = (), warnings: list[str] = ()):
        self.pm = pm
        self.plugins = plugins
        self.skipped = list(skipped)
        self.warnings = list(warnings)
        self.tricks: dict[str, type[Trick]] = {}
        self.recipes: dict[str, RecipeEntry] = {}
        self.trackers: dict[str, TrackerEntry] = {}
        for info in plugins:
            if not info.errors:
                self._collect(info)

    def _collect(self, info: PluginInfo) -> None:
        """Call the plugin's discovery hooks; keep what it registered only if all of them
        went well (a failed plugin contributes nothing), and record every error."""
        tricks: dict[str, type[Trick]] = {}
        recipes: dict[str, RecipeEntry] = {}
        trackers: dict[str, TrackerEntry] = {}
        plugin = self.pm.get_plugin(info.name)
        calls = (("gantrix_register_tricks", lambda cls: self._add_trick(cls, tricks)),
                 ("gantrix_register_recipes",
                  lambda name, data: self._add_recipe(name, data, recipes, info)),
                 ("gantrix_register_trackers",
                  lambda name, factory, **more: self._add_tracker(name, factory, more,
                                                                  trackers, info)))
        for hook, register in calls:
            try:
                hookspecs.call_plugin(self.pm, hook, plugin, register=register)
            except Exception as exc:  # a broken plugin must not take the others down
                info.errors.append(f"{type(exc).__name__}: {exc}")
        if info.errors:
            self.pm.unregister(name=info.name)
            return
        for cls in tricks.values():
            cls.plugin = info.distribution
        self.tricks.update(tricks)
        self.recipes.update(recipes)
        self.trackers.update(trackers)
        info.tricks, info.recipes, info.trackers = list(tricks), list(recipes), list(trackers)

    def _add_trick(self, cls: type[Trick], staged: dict[str, type[Trick]]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Trick)):
            raise TypeError(f"register() takes a Trick subclass, got {cls!r}")
        if not cls.name or cls.kind not in KINDS:
            raise TypeError(f"{cls.__name__} needs a name and a kind in {KINDS}")
        wrong = unknown_hooks(cls)
        if wrong:
            raise ValueError(f"trick {cls.name!r} ({cls.__name__}): {'; '.join(wrong)}")
        if not isinstance(cls.name, str) or not KEBAB_CASE.fullmatch(cls.name):
            raise ValueError(f"trick name {cls.name!r} ({cls.__name__}) is not kebab-case: "
                             f"lowercase letters and digits, words joined by single hyphens, "
                             f"e.g. {kebab_case(str(cls.name))!r}")
        if cls.name in self.tricks or cls.name in staged:
            other = self.tricks[cls.name].plugin if cls.name in self.tricks else "this plugin"
            raise ValueError(f"trick {cls.name!r} is already registered by {other}")
        staged[cls.name] = cls

    def _add_recipe(self, name: str, data: Any, staged: dict[str, RecipeEntry],
                    info: PluginInfo) -> None:
        source = ""
        if isinstance(data, (str, Path)):
            source = str(data)
            data = load_toml(Path(data))
        if not isinstance(data, Mapping):
            raise TypeError(f"register() of recipe {name!r} takes a table (a dict shaped like "
                            f"a recipe TOML file) or a TOML file's path, got {data!r}")
        if name in self.recipes or name in staged:
            other = self.recipes[name].plugin if name in self.recipes else "this plugin"
            raise ValueError(f"recipe {name!r} is already registered by {other}")
        staged[name] = RecipeEntry(name, data, info.distribution, source)

    def _add_tracker(self, name: str, factory: Any, more: dict[str, Any],
                     staged: dict[str, TrackerEntry], info: PluginInfo) -> None:
        unknown = sorted(set(more) - {"packages", "install", "summary"})
        if unknown:
            raise TypeError(f"register() of tracker {name!r} got unknown keyword(s) "
                            f"{', '.join(unknown)}; it takes packages, install and summary")
        if not isinstance(name, str) or not KEBAB_CASE.fullmatch(name):
            raise ValueError(f"tracker name {name!r} is not kebab-case: lowercase letters and "
                             f"digits, words joined by single hyphens, e.g. "
                             f"{kebab_case(str(name))!r}")
        if not callable(factory):
            raise TypeError(f"register() of tracker {name!r} takes a factory (a class or "
                            f"function that opens the tracker for a run), got {factory!r}")
        packages = more.get("packages", ())
        packages = (packages,) if isinstance(packages, str) else tuple(packages)
        if not all(isinstance(p, str) and p for p in packages):
            raise TypeError(f"tracker {name!r}: packages must be module names, got {packages!r}")
        if name in self.trackers or name in staged:
            other = self.trackers[name].plugin if name in self.trackers else "this plugin"
            raise ValueError(f"tracker {name!r} is already registered by {other}")
        summary = more.get("summary") or (getattr(factory, "__doc__", None) or "").strip()
        staged[name] = TrackerEntry(name, factory, info.distribution, packages,
                                    str(more.get("install") or ""),
                                    summary.splitlines()[0] if summary else "")

    def withdraw(self, name: str, error: str) -> None:
        """Record ``error`` on plugin ``name`` and take back all it contributed (for a
        failure found after loading, such as a CLI command that clashes)."""
        info = next(p for p in self.plugins if p.name == name)
        info.errors.append(error)
        for trick in info.tricks:
            del self.tricks[trick]
        for recipe in info.recipes:
            del self.recipes[recipe]
        for tracker in info.trackers:
            del self.trackers[tracker]
        info.tricks, info.recipes, info.trackers = [], [], []
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)

    def trick(self, name: str, where: str = "") -> type[Trick]:
        """The trick class called ``name``; ``where`` (a recipe or file that asks for it)
        prefixes the error when there is none."""
        try:
            return self.tricks[name]
        except KeyError:
            pass
        if name in self.recipes:
            raise UnknownNameError("trick", name, (), where=where, hint=(
                f": {name!r} is a recipe; start from it with --recipe {name} "
                f"(Recipe(recipe={name!r}) in Python)"))
        raise self._unknown("trick", name, self.tricks, where)

    def recipe(self, name: str, where: str = "") -> RecipeEntry:
        """The recipe called ``name`` (``where``: as for `trick`)."""
        try:
            return self.recipes[name]
        except KeyError:
            raise self._unknown("recipe", name, self.recipes, where) from None

    def tracker(self, name: str, where: str = "") -> TrackerEntry:
        """The tracker called ``name`` (``where``: as for `trick`)."""
        try:
            return self.trackers[name]
        except KeyError:
            raise self._unknown("tracker", name, self.trackers, where) from None

    def _unknown(self, what: str, name: str, known, where: str) -> UnknownNameError:
        """The error for a name no loaded plugin provides: which installed plugins the
        environment skipped or failed to load (it may be theirs), else, when no known name
        is close, that no installed plugin provides it."""
        missing = [f"plugin {s.name!r} ({s.distribution} {s.version}), {s.why}"
                   for s in self.skipped]
        missing += [f"plugin {p.name!r} ({p.distribution} {p.version}), which failed to load "
                    f"(gantrix plugins shows why)" for p in self.plugins if p.errors]
        if missing:
            hint = f": no loaded plugin provides it; not loaded: {'; '.join(missing)}"
            return UnknownNameError(what, name, known, where=where, hint=hint)
        error = UnknownNameError(what, name, known, where=where)
        if error.suggestions:
            return error
        listing = {"trick": "gantrix list", "recipe": "gantrix recipes"}.get(what)
        shows = (f"{listing} shows what is" if listing else
                 f"the {what}s there are: {', '.join(sorted(known)) or 'none'}")
        return UnknownNameError(what, name, known, where=where, hint=(
            f": no installed plugin provides it (is its plugin installed? {shows})"))


def _names(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


@dataclass(frozen=True)
class _Candidate:
    """A plugin to load: a built-in module or an installed entry point."""

    name: str
    distribution: str
    version: str
    module: str
    load: Callable[[], Any]

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DIST


def builtin_name(module: str) -> str:
    """A built-in plugin's name: its module's last part, with hyphens (``spectral-norm``)."""
    return module.rpartition(".")[2].replace("_", "-")


def _candidates() -> list[_Candidate]:
    """The built-ins in `BUILTIN_PLUGINS` order, then each installed entry point once.

    Entry points of gantrix's own distribution (left in the metadata of an install made
    before the built-ins moved to `BUILTIN_PLUGINS`) and entry points naming a built-in
    module are passed over: that module is registered once, as a built-in."""
    found = [_Candidate(builtin_name(module), BUILTIN_DIST, __version__, module,
                        partial(import_module, module))
             for module in BUILTIN_PLUGINS]
    seen = set()
    for ep in metadata.entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist else "?"
        if dist == BUILTIN_DIST or ep.value in BUILTIN_PLUGINS or (dist, ep.name) in seen:
            continue
        seen.add((dist, ep.name))
        found.append(_Candidate(ep.name, dist, ep.dist.version if ep.dist else "?", ep.value,
                                ep.load))
    return found


def _skipped_by(candidate: _Candidate) -> str | None:
    """Why the environment keeps this plugin from loading, or None when it loads."""
    disabled = _names(DISABLE_VAR) or set()
    if {candidate.name, candidate.distribution, candidate.module} & disabled:
        return f"disabled by {DISABLE_VAR}"
    if candidate.builtin:
        return None
    load = _names(LOAD_VAR)
    if load is None or candidate.name in load or candidate.distribution in load:
        return None
    return f"not named in {LOAD_VAR}"


def _unknown_env_names(candidates: list[_Candidate]) -> list[str]:
    """A warning for each name in the plugin variables that no plugin has (a plugin or
    distribution name; to disable, a module name too: see `_skipped_by`)."""
    names = {n for c in candidates for n in (c.name, c.distribution)}
    found = []
    for var, known in ((LOAD_VAR, names), (DISABLE_VAR, names | {c.module for c in candidates})):
        for name in sorted((_names(var) or set()) - known):
            close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            found.append(f"{var} names {name!r}, which is no installed plugin's entry point "
                         f"or distribution{hint} (gantrix plugins lists them)")
    return found


def _register(pm: pluggy.PluginManager, candidate: _Candidate) -> PluginInfo:
    """Import ``candidate`` and register it; every failure is recorded on its `PluginInfo`,
    and a plugin that failed is not left registered."""
    info = PluginInfo(candidate.name, candidate.distribution, candidate.version,
                      candidate.module)
    try:
        module = candidate.load()
        pm.register(module, name=candidate.name)
    except Exception as exc:  # a broken plugin must not take the others down
        info.errors.append(f"{type(exc).__name__}: {exc}")
        return info
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(name=candidate.name)
        info.errors.append(f"hook matches no spec: {'; '.join(unknown_hooks(module)) or exc}")
        return info
    info.hooks = sorted(h.name for h in pm.get_hookcallers(module) or ())
    return info


def _no_builtins(plugins: list[PluginInfo]) -> GantrixError:
    """The error when not one built-in plugin loaded: why."""
    failed = [p for p in plugins if p.distribution == BUILTIN_DIST]
    if not failed:
        return GantrixError(f"gantrix's built-in plugins were not found: every one is "
                            f"disabled by {DISABLE_VAR}; gantrix needs them (its losses, "
                            f"optimizers and recipes)")
    first = failed[0]
    return GantrixError(
        f"gantrix's built-in plugins were not found: none of them loaded (the first, "
        f"{first.module}: {first.error}); is gantrix installed (pip install -e .)? It maps "
        f"the plugins/ folder to gantrix.plugins")


def _load(pm: pluggy.PluginManager) -> tuple[list[PluginInfo], list[Skipped], list[str]]:
    plugins: list[PluginInfo] = []
    skipped: list[Skipped] = []
    candidates = _candidates()
    for candidate in candidates:  # the built-ins first: see the module's docstring
        why = _skipped_by(candidate)
        if why:
            skipped.append(Skipped(candidate.name, candidate.distribution, candidate.version,
                                   why))
        else:
            plugins.append(_register(pm, candidate))
    if not any(p.distribution == BUILTIN_DIST and not p.errors for p in plugins):
        raise _no_builtins(plugins)
    return plugins, skipped, _unknown_env_names(candidates)


_lock = threading.Lock()
_catalogue: Catalogue | None = None


def catalogue() -> Catalogue:
    """The catalogue, loading every plugin on first call (once per process)."""
    global _catalogue
    with _lock:
        if _catalogue is None:
            pm = pluggy.PluginManager(hookspecs.PROJECT)
            pm.add_hookspecs(hookspecs)
            plugins, skipped, notices = _load(pm)
            _catalogue = Catalogue(pm, plugins, skipped, notices)
            _catalogue.warnings += _misspelt(plugins)
            for notice in _catalogue.warnings:
                warnings.warn(notice, GantrixWarning, stacklevel=3)
        return _catalogue


def _misspelt(plugins: list[PluginInfo]) -> list[str]:
    """A warning for each plugin kept out by a hook that matches none of gantrix's (most
    often a misspelt name, which would otherwise go unseen: the plugin's tricks are simply
    missing), with the hook meant; said wherever plugins load, not only by ``gantrix
    plugins``."""
    return [f"plugin {p.name!r} ({p.distribution} {p.version}) is not loaded: "
            f"{error.removeprefix('hook matches no spec: ')}"
            for p in plugins for error in p.errors if NO_HOOK in error]


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


def trackers() -> dict[str, TrackerEntry]:
    """The trackers (``--log`` names) by name."""
    return dict(sorted(catalogue().trackers.items()))


def make(name: str, **params: Any) -> Trick:
    """A configured trick: ``make("gradient-penalty", weight=5)``."""
    return catalogue().trick(name)(**params)
