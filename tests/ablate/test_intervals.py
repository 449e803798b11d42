"""`gantrix.intervals` and the verdicts, against an independent computation with scipy."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from gantrix.ablation_report import verdict
from gantrix.intervals import Interval, mean_interval, paired_difference


@pytest.mark.parametrize("values", [[94.1, 92.0, 97.3], [0.5, 0.25], [1.0, 2.0, 3.0, 4.0, 10.0],
                                    list(np.random.default_rng(3).normal(5, 2, 9))])
def test_mean_interval_is_scipys_t_interval(values):
    got = mean_interval(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values),
                                 scale=stats.sem(values))
    assert got.mean == pytest.approx(np.mean(values), rel=1e-12)
    assert got.low == pytest.approx(low, rel=1e-9)
    assert got.high == pytest.approx(high, rel=1e-9)
    assert got.n == len(values)


def test_three_seeds_use_the_t_quantile_not_the_normal_one():
    got = mean_interval([0.0, 1.0, 2.0])  # s = 1, s/sqrt(3)
    assert got.half == pytest.approx(4.302652729911275 / math.sqrt(3), rel=1e-9)


def test_one_value_has_no_interval_and_no_verdict():
    one = mean_interval([3.5])
    assert (one.mean, one.half, one.low) == (3.5, None, None)
    assert not one.excludes_zero()
    assert one.text(2) == "3.50"
    assert verdict("without", "pac", one, 1) == "one seed: no interval"


def test_a_non_finite_value_gives_nan_without_an_interval():
    got = mean_interval([1.0, math.inf])
    assert math.isnan(got.mean) and got.half is None


def test_paired_difference_is_the_interval_of_the_seedwise_differences():
    variant = {0: 90.0, 1: 85.5, 2: 88.0, 3: 70.0}  # seed 3 has no partner in the reference
    reference = {0: 93.0, 1: 86.0, 2: 92.5, 4: 10.0}
    got = paired_difference(variant, reference)
    diffs = [-3.0, -0.5, -4.5]
    low, high = stats.t.interval(0.95, 2, loc=np.mean(diffs), scale=stats.sem(diffs))
    assert got.n == 3
    assert (got.mean, got.low, got.high) == pytest.approx((np.mean(diffs), low, high), rel=1e-9)
    # paired, the shared seed-to-seed spread cancels: the unpaired interval is far wider
    unpaired = stats.ttest_ind([90.0, 85.5, 88.0], [93.0, 86.0, 92.5])
    paired = stats.ttest_rel([90.0, 85.5, 88.0], [93.0, 86.0, 92.5])
    assert paired.pvalue < unpaired.pvalue
    assert paired_difference({0: 1.0}, {1: 2.0}) is None


@pytest.mark.parametrize("kind, subject, mean, better, expected", [
    ("without", "gradient-penalty", -5.0, 1, "gradient-penalty helps"),   # removing it lost
    ("without", "gradient-penalty", +5.0, 1, "gradient-penalty hurts"),
    ("without", "gradient-penalty", +5.0, -1, "gradient-penalty helps"),  # FID: lower is better
    ("add", "pac:2", +5.0, 1, "pac:2 helps"),
    ("add", "pac:2", -5.0, 1, "pac:2 hurts"),
    ("swap", "adam=rmsprop", +5.0, 1, "rmsprop beats adam"),
    ("swap", "adam=rmsprop", -5.0, 1, "adam beats rmsprop"),
    ("swap", "adam=rmsprop", +5.0, -1, "adam beats rmsprop"),
])
def test_verdicts_read_the_direction_of_the_metric(kind, subject, mean, better, expected):
    assert verdict(kind, subject, Interval(mean, 1.0, 3), better) == expected


def test_an_interval_across_zero_is_no_measurable_effect():
    assert verdict("without", "ema", Interval(0.5, 1.0, 5), 1) == "no measurable effect at 5 seeds"
    assert verdict("full", "", None, 1) == "reference"
    assert verdict("add", "ema", None, 1) == "not run yet"


def test_a_variant_whose_runs_give_no_value_says_so_not_that_it_did_not_run():
    from gantrix.ablation import Variant
    from gantrix.ablation_report import summarize

    full = Variant("full", "full composition", "full", "", ["wgan"])
    dead = Variant("swap-a-b", "a → b", "swap", "a=b", ["b"])
    scores = {("full", 0): {"seconds": 1.0, "metrics": {"kl": 0.5}},
              ("full", 1): {"seconds": 1.0, "metrics": {"kl": 0.7}},
              ("swap-a-b", 0): {"seconds": 1.0, "metrics": {"kl": None}},
              ("swap-a-b", 1): {"seconds": 1.0, "metrics": {"kl": None}}}
    table = summarize("t", "ring8", [full, dead], scores, 2, "kl", -1)
    assert table.row("swap-a-b").verdict == "no KL to uniform on a seed the full composition has"
    assert table.row("swap-a-b").missing == []


def test_a_diverged_seed_is_named_in_the_verdict():
    from gantrix.ablation import Variant
    from gantrix.ablation_report import summarize

    full = Variant("full", "full composition", "full", "", ["wgan"])
    bare = Variant("without-gp", "− gp", "without", "gp", ["wgan"])
    scores = {("full", s): {"seconds": 1.0, "metrics": {"modes": 8}} for s in range(3)}
    scores.update({("without-gp", 0): {"seconds": 1.0, "metrics": {"modes": 2}},
                   ("without-gp", 1): {"seconds": 0.0, "metrics": {}, "failed": "diverged: nan"},
                   ("without-gp", 2): {"seconds": 1.0, "metrics": {"modes": 2.5}}})
    row = summarize("t", "ring8", [full, bare], scores, 3, "modes", 1).row("without-gp")
    assert row.values == {0: 2.0, 2: 2.5} and row.diverged == [1]
    assert row.verdict == "gp helps; diverged on seed 1"
