"""Trick parameters: declared once with type, default and allowed range, then parsed from
the command line (``gradient-penalty:weight=5``), a TOML file or Python keywords, and
validated with errors that name the parameter, the value and the allowed range."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import ParamError

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class Param:
    """One parameter of a trick.

    ``type`` is one of ``int``, ``float``, ``bool``, ``str``. Numbers may be bounded by
    ``low``/``high`` (inclusive unless ``low_open``/``high_open``); strings may be limited
    to ``choices``. ``optional`` admits ``None`` (written ``none`` on the command line).
    A float is always finite: ``inf`` and ``nan`` are refused whatever the bounds (no
    setting or trick means anything by them, and they pass range checks silently or fail
    deep inside training). Give every number a ``high`` too: a value the code can take but
    not run (``n-critic:100000000``) is a mistake best said at once.
    """

    name: str
    type: type
    default: Any
    help: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | None = None
    optional: bool = False

    def __post_init__(self):
        if self.type not in (int, float, bool, str):
            raise TypeError(f"Param {self.name!r}: type must be int, float, bool or str")

    @property
    def allowed(self) -> str:
        """The allowed values, in words: ``[0, inf)``, ``one of 'sgan', 'lsgan'``, ..."""
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.type is bool:
            text = "true or false"
        elif self.low is None and self.high is None:
            text = f"any {'finite ' if self.type is float else ''}{self.type.__name__}"
        else:
            lo = "-inf" if self.low is None else _num(self.low)
            hi = "inf" if self.high is None else _num(self.high)
            left = "(" if self.low is None or self.low_open else "["
            right = ")" if self.high is None or self.high_open else "]"
            finite = "finite " if self.type is float else ""
            text = f"{finite}{self.type.__name__} in {left}{lo}, {hi}{right}"
        return text + (" or none" if self.optional else "")

    def parse(self, raw: str, trick: str) -> Any:
        """Turn a command-line string into a checked value."""
        text = raw.strip()
        if self.optional and text.lower() in ("none", "null", ""):
            return None
        try:
            if self.type is bool:
                low = text.lower()
                if low not in _TRUE | _FALSE:
                    raise ValueError
                value: Any = low in _TRUE
            elif self.type is int:
                value = int(text)
            elif self.type is float:
                value = float(text)
            else:
                value = text
        except ValueError:
            raise self._error(trick, raw) from None
        return self.validate(value, trick)

    def validate(self, value: Any, trick: str) -> Any:
        """Check (and gently coerce: an int where a float is expected) a Python value."""
        if value is None:
            if self.optional:
                return None
            raise self._error(trick, value)
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.type is bool and not isinstance(value, bool):
            raise self._error(trick, value)
        if self.type is int and (isinstance(value, bool) or not isinstance(value, int)):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise self._error(trick, value)
        if self.type in (float, str) and not isinstance(value, self.type):
            raise self._error(trick, value)
        if self.type is float and not math.isfinite(value):
            raise self._error(trick, value)
        if self.choices is not None and value not in self.choices:
            raise self._error(trick, value)
        if self.type in (int, float) and not self._in_range(value):
            raise self._error(trick, value)
        return value

    def _in_range(self, v) -> bool:
        if self.low is not None and (v < self.low or (self.low_open and v == self.low)):
            return False
        if self.high is not None and (v > self.high or (self.high_open and v == self.high)):
            return False
        return True

    def _error(self, trick: str, value: Any) -> ParamError:
        return ParamError(
            f"{trick}: parameter {self.name!r} got {value!r}; allowed: {self.allowed}"
        )


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def normalize_key(key: str) -> str:
    """Parameter names are snake_case in Python; the CLI accepts kebab-case too."""
    return key.strip().replace("-", "_")
