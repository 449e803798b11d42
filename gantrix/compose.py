"""Composition: check a recipe against the tricks' metadata, then wire the tricks into one
run plugin manager.

The checker knows no trick. It applies, in order:

1. one entry per trick name (a later spec overrides an earlier one's parameters, with a note
   where a value changes: `merge_specs`);
2. exactly one loss (a loss the user names replaces a config file's or a recipe's loss, and
   a config file's replaces a recipe's);
3. ``replaces`` (a trick drops the one it supersedes when that one comes from further away:
   the command line over a config file over a recipe; naming both at one level is an error);
4. ``requires`` and ``conflicts`` between the remaining tricks' tags;
5. the core's defaults (the Adam optimizer when no trick provides ``"optimizer"``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pluggy

from . import hookspecs
from .errors import CompositionError, GantrixError
from .findings import Clash, Finding, Replaces, Requires, as_relation
from .registry import catalogue, unknown_hooks
from .trick import Trick

if TYPE_CHECKING:  # (gantrix.recipe builds on this module: Recipe.check, Recipe.compose)
    from .recipe import Recipe, TrickSpec

#: the origin of the tricks the user names (arguments, --trick); a named recipe's are
#: ``"recipe:NAME"``.
USER = "user"
#: the origin of a config file's tricks (then ``:PATH``).
CONFIG = "config"


def precedence(origin: str) -> int:
    """How a trick's origin ranks when two tricks compete for one place (a loss, a trick
    another replaces): the user's own arguments (2) over a config file (1) over a named
    recipe (0)."""
    return 2 if origin == USER else 1 if origin.startswith(CONFIG) else 0


def whose(origin: str) -> str:
    """``"the recipe's"`` or ``"the config file's"``: the owner of a trick that gives way."""
    return "the config file's" if origin.startswith(CONFIG) else "the recipe's"


DEFAULT_OPTIMIZER = "default Adam(lr=2e-4, betas=(0.5, 0.999))"
#: tags the core's default optimizer contributes when no trick configures one.
DEFAULT_OPTIMIZER_TAGS = frozenset({"optimizer", "momentum-optimizer"})


@dataclass
class _Chosen:
    trick: Trick
    origin: str

    @property
    def name(self) -> str:
        return self.trick.name

    @property
    def rank(self) -> int:
        """`precedence` of its origin: the command line over a config file over a recipe."""
        return precedence(self.origin)


def _owner(origin: str) -> str:
    """Whose a value is, by its origin: ``"your"``, ``"the config file's"``, ``"the recipe's"``."""
    return "your" if origin == USER else whose(origin)


def _shown(value: object) -> str:
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


@dataclass
class Merged:
    """One trick as its specs ask for it (rule 1): its class, the parameters given (a later
    spec's value over an earlier one's), and the nearest origin among its specs."""

    cls: type[Trick]
    values: dict
    origin: str

    def spec(self) -> str:
        """As a trick string with the parameters given: ``gradient-penalty:weight=5.0``."""
        args = ",".join(f"{k}={_shown(v)}" for k, v in self.values.items())
        return f"{self.cls.name}:{args}" if args else self.cls.name


def merge_specs(specs: list[TrickSpec], findings: list[Finding] | None = None) -> list[Merged]:
    """Rule 1: one entry per trick name, in the order first named. A later spec's parameter
    replaces an earlier one's (``Recipe("wgan-gp").extend(["gradient-penalty:weight=5"])``
    trains with weight 5), with a note in ``findings`` where the value changes (from the
    earlier spec's, or from the default it left), so the override is never silent."""
    cat = catalogue()
    merged: dict[str, Merged] = {}
    given: dict[tuple[str, str], str] = {}  # (trick, parameter): the origin of its value
    for spec in specs:
        cls = cat.trick(spec.name, spec.where)
        values = spec.resolve(cls)
        entry = merged.get(spec.name)
        if entry is None:
            merged[spec.name] = Merged(cls, dict(values), spec.origin)
        else:
            defaults = {p.name: p.default for p in cls.params}
            for key, value in values.items():
                before = entry.values.get(key, defaults.get(key))
                earlier = given.get((spec.name, key), entry.origin)
                # a recipe's or a file's own table for the data changing its value is its
                # design, not an override
                if findings is not None and value != before and (
                        earlier != spec.origin or spec.origin == USER):
                    was = _owner(earlier) if (spec.name, key) in given else "the default"
                    findings.append(Finding(
                        "note", f"{_owner(spec.origin)} {key}={_shown(value)} replaces {was} "
                                f"{key}={_shown(before)}", (spec.name,)))
            entry.values.update(values)
            entry.origin = max(entry.origin, spec.origin, key=precedence)
        given.update({(spec.name, key): spec.origin for key in values})
    return list(merged.values())


def _instantiate(specs: list[TrickSpec], findings: list[Finding]) -> list[_Chosen]:
    return [_Chosen(m.cls(**m.values), m.origin) for m in merge_specs(specs, findings)]


def _one_loss(chosen: list[_Chosen], findings: list[Finding]) -> list[_Chosen]:
    losses = [c for c in chosen if c.trick.kind == "loss"]
    nearest = max((c.rank for c in losses), default=0)
    top = [c for c in losses if c.rank == nearest]
    if len(top) == 1 and len(losses) > 1:
        dropped = [c for c in losses if c is not top[0]]
        for c in dropped:
            findings.append(Finding("note", f"{top[0].name} replaces {whose(c.origin)} loss {c.name}",
                                    (top[0].name, c.name)))
        chosen = [c for c in chosen if c not in dropped]
        losses = top
    if not losses:
        names = ", ".join(sorted(n for n, c in catalogue().tricks.items() if c.kind == "loss"))
        findings.append(Finding("error", f"no loss: add exactly one of {names}"))
    elif len(losses) > 1:
        findings.append(Finding(
            "error",
            "more than one loss; a composition trains with exactly one adversarial loss "
            "(remove all but one)",
            tuple(c.name for c in losses)))
    return chosen


def _apply_replaces(chosen: list[_Chosen], findings: list[Finding]) -> list[_Chosen]:
    dropped: set[str] = set()
    for c in chosen:
        for rel in (as_relation(r, Replaces) for r in c.trick.replaces):
            for other in chosen:
                if other is c or rel.target not in other.trick.features() or other.name in dropped:
                    continue
                if other.rank > c.rank:  # the nearer choice stands (user, config, recipe)
                    continue
                why = f": {rel.reason}" if rel.reason else ""
                if other.rank == c.rank > 0:  # both asked for by the user (or one config file)
                    if any(as_relation(x, Clash).target == rel.target for x in c.trick.conflicts):
                        continue  # the clash itself is reported, once
                    findings.append(Finding(
                        "error", f"{c.name} replaces {other.name}{why}; use one of them",
                        (c.name, other.name), rel.paper))
                else:
                    dropped.add(other.name)
                    findings.append(Finding(
                        "note", f"{c.name} replaces {whose(other.origin)} {other.name}{why}",
                        (c.name, other.name), rel.paper))
    return [c for c in chosen if c.name not in dropped]


def _providers(tag: str) -> str:
    names = sorted(n for n, cls in catalogue().tricks.items()
                   if tag == n or tag == cls.kind or tag in cls.provides)
    return ", ".join(names)


def _relations(chosen: list[_Chosen], findings: list[Finding]) -> None:
    tags = {c.name: c.trick.features() for c in chosen}
    if not any("optimizer" in t for t in tags.values()):
        tags[DEFAULT_OPTIMIZER] = set(DEFAULT_OPTIMIZER_TAGS)
        findings.append(Finding("note", f"no optimizer trick: the core uses the {DEFAULT_OPTIMIZER}"))
    seen = set()
    for c in chosen:
        for rel in (as_relation(r, Requires) for r in c.trick.requires):
            if not any(rel.target in t for n, t in tags.items() if n != c.name):
                who = _providers(rel.target)
                hint = f" (add one of: {who})" if who and who != rel.target else ""
                why = f": {rel.reason}" if rel.reason else ""
                findings.append(Finding(rel.severity, f"{c.name} requires {rel.target}{why}{hint}",
                                        (c.name,), rel.paper))
        for clash in c.trick.conflicts:
            assert isinstance(clash, Clash), f"{c.name}.conflicts must hold Clash records"
            for other, other_tags in tags.items():
                if other == c.name or clash.target not in other_tags:
                    continue
                key = (frozenset((c.name, other)), clash.reason)
                if key not in seen:
                    seen.add(key)
                    findings.append(Finding(clash.severity, clash.reason, (c.name, other), clash.paper))


def resolve(recipe: Recipe) -> tuple[list[Trick], list[Finding]]:
    """The configured tricks that survive composition, and every finding on the way."""
    findings: list[Finding] = [Finding("note", text) for text in recipe.notes]
    chosen = _instantiate(recipe.specs, findings)
    chosen = _one_loss(chosen, findings)
    chosen = _apply_replaces(chosen, findings)
    _relations(chosen, findings)
    order = {"error": 0, "warning": 1, "note": 2}
    findings.sort(key=lambda f: order[f.severity])
    return [c.trick for c in chosen], findings


class Composition:
    """Checked tricks registered on one run plugin manager; ``hook`` calls them."""

    def __init__(self, recipe: Recipe, *,
                 resolved: tuple[list[Trick], list[Finding]] | None = None):
        """Compose ``recipe``; ``resolved`` is what `resolve` returned for it, when the
        caller has it already (so the tricks are not instantiated twice)."""
        self.recipe = recipe
        self.tricks, self.findings = resolved or resolve(recipe)
        if any(f.severity == "error" for f in self.findings):
            raise CompositionError(self.findings)
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        # pluggy calls the last registered plugin first: registering in reverse makes every
        # hook run in the recipe's order (and the first trick listed win a firstresult hook).
        try:
            for trick in reversed(self.tricks):
                self.pm.register(trick, name=trick.name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:  # the catalogue refuses such tricks; a
            # class put in it by hand (or a hook's arguments) can still get here
            raise GantrixError("; ".join(
                f"trick {t.name!r} ({type(t).__name__}): {'; '.join(unknown_hooks(t))}"
                for t in self.tricks if unknown_hooks(t))
                or f"a trick's hook does not fit gantrix's hooks: {exc}") from None
        self.hook = self.pm.hook

    def __repr__(self) -> str:
        counts = [f"{n} {severity}{'s' if n > 1 else ''}" for severity in ("warning", "note")
                  if (n := sum(f.severity == severity for f in self.findings))]
        findings = f"; {', '.join(counts)}" if counts else ""
        return f"Composition({', '.join(map(repr, self.specs()))}{findings})"

    def get(self, name: str) -> Trick | None:
        """The configured trick called ``name``, if it is part of this composition."""
        return next((t for t in self.tricks if t.name == name), None)

    @property
    def loss(self) -> Trick:
        return next(t for t in self.tricks if t.kind == "loss")

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def specs(self) -> list[str]:
        """The composition as trick strings, re-runnable: ``["wgan", "n-critic:n=5", ...]``."""
        return [t.spec() for t in self.tricks]

    def check_models(self, models) -> list[Finding]:
        """Findings of every trick's ``gantrix_check_model`` on both built models."""
        found: list[Finding] = []
        for role, model in (("generator", models.generator), ("discriminator", models.discriminator)):
            for result in self.hook.gantrix_check_model(model=model, role=role):
                found.extend(result or ())
        return found
