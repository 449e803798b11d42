"""What a composition check reports, and the metadata tricks use to declare their relations.

A trick declares ``requires``, ``conflicts`` and ``replaces`` with the small records below;
the checker (`gantrix.compose`) turns them into `Finding`s, each naming the tricks involved,
the reason and the paper, before any training happens.

Targets are *tags*: every trick carries its own name, its kind and whatever it ``provides``
(``"optimizer"``, ``"momentum-optimizer"``, ``"critic-batchnorm"``, ...), so a relation can
name one trick or a whole family of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning", "note"]
SEVERITIES = ("error", "warning", "note")


@dataclass(frozen=True)
class Finding:
    """One result of a check: its severity, the tricks involved, why, and the source."""

    severity: Severity
    message: str
    tricks: tuple[str, ...] = ()
    paper: str = ""

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    def __str__(self) -> str:
        who = f"[{' + '.join(self.tricks)}] " if self.tricks else ""
        src = f" ({self.paper})" if self.paper else ""
        return f"{self.severity}: {who}{self.message}{src}"


@dataclass(frozen=True)
class Requires:
    """The trick needs another trick (or tag) in the same composition: without one, an
    error, or a warning where the composition still runs but not as the paper meant."""

    target: str
    reason: str = ""
    paper: str = ""
    severity: Severity = "error"


@dataclass(frozen=True)
class Clash:
    """The trick must not (error) or should not (warning) be combined with ``target``."""

    target: str
    reason: str
    paper: str = ""
    severity: Severity = "error"


@dataclass(frozen=True)
class Replaces:
    """The trick supersedes ``target``: a recipe's ``target`` is dropped (with a note) when
    the user adds this trick; naming both explicitly is an error."""

    target: str
    reason: str = ""
    paper: str = ""


def as_relation(item, cls):
    """Accept a bare tag string wherever a relation record is expected."""
    return cls(item) if isinstance(item, str) and cls is not Clash else item
