"""Confidence intervals over seeds, for `gantrix.ablation`: a mean with its Student-t interval,
and the paired difference of two variants trained on the same seeds.

Why t: an ablation has a handful of seeds (3 to 10); the normal interval (±1.96 σ/√n) is far
too narrow there (at 3 seeds the 95 % t quantile is 4.30, not 1.96). Why paired: seed s of
every variant starts from the same weights (where the models are the same) and sees the same
batches, so the seed-to-seed spread that both variants share cancels in the difference; the
paired interval is what says whether a trick changes the result.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

#: the confidence level of every interval gantrix reports.
LEVEL = 0.95


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t distribution with ``df`` degrees of freedom."""
    from scipy.special import stdtrit  # scikit-learn's dependency: always installed

    return float(stdtrit(df, p))


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` values and the half-width of its two-sided `LEVEL` interval
    (None with one value: one seed gives no interval)."""

    mean: float
    half: float | None
    n: int

    @property
    def low(self) -> float | None:
        return None if self.half is None else self.mean - self.half

    @property
    def high(self) -> float | None:
        return None if self.half is None else self.mean + self.half

    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly above or below 0 (a measurable difference)."""
        return self.half is not None and (self.low > 0 or self.high < 0)

    def text(self, digits: int = 1) -> str:
        """``12.3 ± 0.4`` (``12.3`` with one value)."""
        if self.half is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half:.{digits}f}"


def mean_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """The mean of ``values`` and its t interval: mean ± t(1 − (1 − level)/2, n − 1) · s/√n,
    with s the sample standard deviation."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no values to average")
    if any(not math.isfinite(v) for v in values):
        return Interval(math.nan, None, len(values))
    n = len(values)
    mean = statistics.fmean(values)
    if n == 1:
        return Interval(mean, None, 1)
    sem = statistics.stdev(values) / math.sqrt(n)
    return Interval(mean, t_quantile(1 - (1 - level) / 2, n - 1) * sem, n)


def paired_difference(variant: dict[int, float], reference: dict[int, float],
                      level: float = LEVEL) -> Interval | None:
    """The mean of ``variant[s] − reference[s]`` over the seeds both have, with its t
    interval; None when they share no seed."""
    seeds = sorted(set(variant) & set(reference))
    if not seeds:
        return None
    return mean_interval([variant[s] - reference[s] for s in seeds], level)
