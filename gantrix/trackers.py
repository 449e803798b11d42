"""Trackers: where a run's metrics lines and sample pictures also go (TensorBoard, W&B, ...).

A tracker is a plugin (`gantrix.hookspecs.gantrix_register_trackers`): gantrix's own
``tensorboard`` and ``wandb`` live in ``plugins/trackers.py``, and a third party adds mlflow
or aim the same way. The ``log`` setting (``gantrix train --log tensorboard,wandb``) names
the trackers of a run; this module looks them up and checks them when the run is set up
(`Tracking`: an unknown name suggests close ones, a tracker whose package cannot be imported
names the command that installs it, all before any file is written), opens them for each
`Trainer.fit` in the process that writes the run folder, feeds them every metrics line and
sample picture, and closes them.

A tracker only mirrors: metrics.jsonl stays the run's own record. A tracker that fails
while logging is a warning, after which it gets nothing more in that session; training goes
on.
"""
from __future__ import annotations

import numbers
import warnings
from importlib import import_module
from pathlib import Path
from typing import Any, Mapping, Protocol

from . import registry
from .errors import GantrixError, GantrixWarning
from .registry import TrackerEntry


class Tracker(Protocol):
    """What a tracker's factory returns (`gantrix.hookspecs.gantrix_register_trackers`);
    ``log_image`` and ``close`` are optional."""

    def log_metrics(self, values: Mapping[str, float], step: int) -> None: ...

    def log_image(self, name: str, path: Path, step: int) -> None: ...

    def close(self) -> None: ...


def tracker_names(spec: str | None) -> list[str]:
    """The tracker names of a ``log`` setting: comma-separated, each once, in order."""
    names = (n.strip() for n in (spec or "").split(","))
    return list(dict.fromkeys(n for n in names if n and n.lower() != "none"))


def check_packages(entry: TrackerEntry) -> None:
    """Import the modules ``entry`` needs; one that cannot be imported is a `GantrixError`
    naming it and the command that installs it."""
    for package in entry.packages:
        try:
            import_module(package)
        except Exception as exc:  # ImportError, or a package broken by its own dependencies
            how = entry.install or f"pip install {package.partition('.')[0]}"
            raise GantrixError(
                f"--log {entry.name}: tracker {entry.name!r} needs {package}, which cannot be "
                f"imported here ({type(exc).__name__}: {exc}); install it: {how}") from None


def resolve(spec: str | None, out: Path | None = None) -> list[TrackerEntry]:
    """The trackers a ``log`` setting names, checked: each is known and its packages import,
    and there is a run folder (``out``) for them to write to."""
    entries = [registry.catalogue().tracker(name, where="--log")
               for name in tracker_names(spec)]
    for entry in entries:
        check_packages(entry)
    if entries and out is None:
        raise GantrixError(f"--log {spec}: trackers log a run that has a folder; give it one "
                           f"(--out, or out= for a Trainer)")
    return entries


def numbers_of(row: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a metrics row, as floats, without its step (None, text, booleans and
    nested values stay in metrics.jsonl only)."""
    return {k: float(v) for k, v in row.items()
            if k != "step" and isinstance(v, numbers.Real) and not isinstance(v, bool)}


class Tracking:
    """A run's trackers: checked at construction, open between `open` and `close`.

    ``spec`` is the run's ``log`` setting, ``out`` its folder; only the ``writer`` process
    opens them. ``check=False`` (a run loaded to sample or evaluate, which never opens
    them) skips the checks: such a run loads where its trackers are not installed. Every
    method is a no-op while nothing is open, so the trainer calls them unconditionally.
    """

    def __init__(self, spec: str | None, out: Path | None, *, writer: bool = True,
                 check: bool = True):
        self.spec, self.out, self.writer = spec, out, writer
        self.entries = resolve(spec, out) if check else None
        self._open: list[tuple[TrackerEntry, Any]] = []

    @property
    def names(self) -> list[str]:
        """The trackers open now."""
        return [entry.name for entry, _ in self._open]

    def open(self, config: Mapping[str, Any], step: int) -> "Tracking":
        """Open every tracker for a training session from ``step`` (closing any still open);
        a tracker that fails to open closes the others and raises `GantrixError`. Returns
        self, a context manager that closes them."""
        self.close()
        if not self.writer or self.out is None:
            return self
        entries = self.entries if self.entries is not None else resolve(self.spec, self.out)
        for entry in entries:
            try:
                tracker = entry.factory(run_dir=self.out, config=dict(config), step=step)
            except Exception as exc:
                self.close()
                if isinstance(exc, GantrixError):
                    raise
                raise GantrixError(f"--log {entry.name}: tracker {entry.name!r} ({entry.plugin}) "
                                   f"could not open for {self.out}: {type(exc).__name__}: "
                                   f"{exc}") from exc
            self._open.append((entry, tracker))
        return self

    def log_metrics(self, row: Mapping[str, Any], step: int | None = None) -> None:
        """Send the numbers of a metrics row (a metrics.jsonl line, an evaluation's) at
        ``step`` (by default the row's ``"step"``) to every open tracker."""
        if not self._open:
            return
        values = numbers_of(row)
        step = int(row["step"] if step is None else step)
        if values:
            self._each("log_metrics", values, step)

    def log_image(self, name: str, path: Path, step: int) -> None:
        """Send a picture (a PNG file) to every open tracker that takes images."""
        if self._open and Path(path).is_file():
            self._each("log_image", name, Path(path), step)

    def close(self) -> None:
        """Close every open tracker (a failure is a warning)."""
        opened, self._open = self._open, []
        for entry, tracker in opened:
            closing = getattr(tracker, "close", None)
            if closing is not None:
                try:
                    closing()
                except Exception as exc:  # the run's own files are written: warn only
                    _warn(entry, "close", exc, more=False)

    def _each(self, method: str, *args: Any) -> None:
        for entry, tracker in list(self._open):
            call = getattr(tracker, method, None)
            if call is None:
                continue
            try:
                call(*args)
            except Exception as exc:  # a tracker must not stop the training
                self._open.remove((entry, tracker))
                _warn(entry, method, exc, more=True)
                try:
                    getattr(tracker, "close", lambda: None)()
                except Exception:
                    pass

    def __enter__(self) -> "Tracking":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _warn(entry: TrackerEntry, method: str, exc: Exception, *, more: bool) -> None:
    then = "; it gets nothing more in this session" if more else ""
    warnings.warn(f"tracker {entry.name!r} ({entry.plugin}) failed in {method}: "
                  f"{type(exc).__name__}: {exc}{then} (metrics.jsonl has every line)",
                  GantrixWarning, stacklevel=3)
