"""The losses of the steps since the last log line, summed where they are computed.

Reading a loss back to the host (``.item()``, ``.tolist()``) waits for the device to finish
the step; doing it every step keeps a GPU from running ahead of Python. `LossTally` adds
each step's detached losses and terms on their device, and notes there the first step whose
value was not finite; the host reads them only when asked (`LossTally.read`): at a log line,
before a checkpoint is written, when the progress line redraws. A divergence is still
reported with the exact step and term where it began, and is found before any checkpoint
could save a diverged model.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class _Group:
    """Steps that returned the same names (a lazy regularizer's term comes and goes)."""

    total: torch.Tensor       # (k,) sums
    count: int | torch.Tensor  # steps added (a 0-d device count once a step came with ``keep``)
    bad_step: torch.Tensor    # (k,) first step with a non-finite value, or -1
    bad_value: torch.Tensor   # (k,) that value


@dataclass(frozen=True)
class NotFinite:
    """The first non-finite value seen: its name, value and step."""

    name: str
    value: float
    step: int


class LossTally:
    """Sums per name over the steps since the last `reset`, kept on the device until read."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._groups: dict[tuple[str, ...], _Group] = {}

    def add(self, out: dict[str, torch.Tensor], step: int, keep: torch.Tensor | None = None) -> None:
        """Add one step's values (scalars on any device); no host synchronisation. ``keep``, a
        0-d bool tensor on the device, says whether the step counts (an fp16 step whose update
        the scaler skipped does not): decided on the device, not read back."""
        names = tuple(out)
        if not names:
            return
        # float64 sums of float32 losses do not round (for any realistic spread of their
        # magnitudes), so a run resumed mid-interval logs the numbers of an uninterrupted one
        values = torch.stack([out[k].detach().float().reshape(()) for k in names]).double()
        added = values if keep is None else torch.where(keep, values, 0.0)
        one = 1 if keep is None else keep.to(torch.float64)
        group = self._groups.get(names)
        if group is None:
            none = torch.full_like(values, -1)
            self._groups[names] = _Group(added.clone(), one, none, torch.zeros_like(values))
            group = self._groups[names]
        else:
            group.total += added
            group.count = group.count + one
        new = ~torch.isfinite(values) & (group.bad_step < 0)
        if keep is not None:
            new &= keep
        group.bad_step = torch.where(new, float(step), group.bad_step)
        group.bad_value = torch.where(new, values, group.bad_value)

    def read(self) -> NotFinite | None:
        """Bring the sums to the host (one read per group of names); the earliest
        non-finite value, if any (then the sums are left as they were)."""
        first: NotFinite | None = None
        read = {}
        for names, group in self._groups.items():
            rows = [group.total, group.bad_step, group.bad_value]
            if isinstance(group.count, torch.Tensor):  # read in the same transfer
                rows.append(group.count.expand_as(group.total))
            rows = torch.stack(rows).tolist()
            total, bad_step, bad_value = rows[:3]
            count = int(rows[3][0]) if len(rows) == 4 else group.count
            if not count:
                continue
            read[names] = (total, count)
            for name, step, value in zip(names, bad_step, bad_value):
                if step >= 0 and (first is None or step < first.step):
                    first = NotFinite(name, value, int(step))
        if first is not None:
            return first
        for names, (total, count) in read.items():
            for name, value in zip(names, total):
                self.sums[name] = self.sums.get(name, 0.0) + value
                self.counts[name] = self.counts.get(name, 0) + count
        self._groups.clear()
        return None

    def means(self) -> dict[str, float]:
        """The mean of each name over the steps read so far."""
        return {k: self.sums[k] / self.counts[k] for k in self.sums}

    def reset(self) -> None:
        self.sums, self.counts = {}, {}
        self._groups.clear()

    def state_dict(self) -> dict:
        """The read sums (call `read` first: unread values are not in it)."""
        return {"sums": dict(self.sums), "counts": dict(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        self.sums, self.counts = dict(state["sums"]), dict(state["counts"])
        self._groups.clear()
