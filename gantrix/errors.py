"""Errors meant for people: a user mistake raises one of these, and the CLI prints its
message (never a traceback) and exits with status 2."""
from __future__ import annotations

import difflib
from typing import Iterable


class GantrixError(Exception):
    """A mistake in what the user asked for (a name, a value, a composition, a file)."""


class UnknownNameError(GantrixError, KeyError):
    """An unknown trick, recipe or parameter name; the message suggests close matches.

    ``hint`` follows the name (why it may be missing: ``": 'wgan-gp' is a recipe; ..."``),
    and ``where`` (the recipe or file that asked for the name) precedes the message.
    """

    def __init__(self, what: str, name: str, known: Iterable[str], *, hint: str = "",
                 where: str = ""):
        self.what, self.name = what, name
        self.suggestions = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
        close = f"; did you mean {', '.join(repr(s) for s in self.suggestions)}?" if self.suggestions else ""
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}unknown {what} {name!r}{hint}{close}")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


class GantrixWarning(UserWarning):
    """Something the user set that gantrix can work around but should hear about (a plugin
    variable naming no installed plugin)."""


class ParamError(GantrixError, ValueError):
    """A parameter value of the wrong type or outside its allowed range."""


class ModelTransformError(GantrixError):
    """Raised by a ``gantrix_transform_model`` implementation that cannot transform the model
    it was given (unlabelled data for a conditional model, a layout it cannot edit). The core
    turns it into an error `Finding` naming the trick and its paper, checks the rest, and
    stops the build before training with every finding at once."""


class CompositionError(GantrixError):
    """A composition with error findings; ``findings`` holds all of them (warnings too)."""

    def __init__(self, findings):
        self.findings = list(findings)
        errors = [f for f in self.findings if f.severity == "error"]
        lines = "\n".join(f"  {f}" for f in errors)
        super().__init__(f"the composition has {len(errors)} error(s):\n{lines}")
