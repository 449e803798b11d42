"""A composition checked before training: by its tricks' metadata alone, or, given data,
as `gantrix train` would plan the run (`gantrix.plan.plan_run`: settings checked, models
built, transformed and checked, never trained), so that model findings (BatchNorm in a
critic under a penalty, a conditional model on unlabelled data, a generator bigger than its
critic) and settings that train would refuse come before any run. Without data, the recipe's
settings are still checked for every kind of data and built-in set it has tables for (what
train would refuse on any of them), and a learning rate beside an optimizer trick is the
error train makes of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .data import IMAGE_SETS, TOYS
from .findings import SEVERITIES, Finding
from .plan import plan_run
from .recipe import Recipe
from .settings import check_values
from .trick import Trick

#: the built-in data sets of each kind of data a recipe may have tables for
_SETS = {"points": TOYS, "images": IMAGE_SETS}


@dataclass
class CheckReport:
    """What `check` found: the composed tricks, every finding (errors first), and what was
    built for the model checks (None when no data was given)."""

    tricks: list[Trick]
    findings: list[Finding]
    models: str | None = None

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)


def check(recipe: Recipe, data: str | Path | None = None, processes: int = 1) -> CheckReport:
    """Check ``recipe``; with ``data`` (what `gantrix.data.load_data` reads), plan the run
    on it as ``gantrix train`` does and check the models built for it too. Without ``data``,
    the recipe's own ``[train] data`` is used when it names one. ``processes`` checks it for
    training in that many processes (`gantrix.distributed.findings`, the batch each one
    gets)."""
    plan = plan_run(recipe, data, processes=processes, strict=False)
    if plan.data is None:
        found = plan.findings + _settings_for_any_data(recipe, plan.tricks)
        return CheckReport(plan.tricks, sorted(found, key=lambda f: SEVERITIES.index(f.severity)))
    where = f"{plan.data.name} {tuple(plan.data.shape)}"
    if plan.models is not None:
        built = (f"built for {where} and checked: generator "
                 f"{type(plan.models.generator).__name__}, critic "
                 f"{type(plan.models.discriminator).__name__}")
    elif plan.composition is None:
        built = "not built: the composition has errors"
    else:
        built = f"built for {where} and checked: {plan.stopped}"
    return CheckReport(plan.tricks, plan.findings, built)


def _settings_for_any_data(recipe: Recipe, tricks: list[Trick]) -> list[Finding]:
    """What ``gantrix train`` would refuse in ``recipe``'s settings on some data, found
    without the data: each ``[train]`` table as it applies to each kind of data and each
    built-in set (an unknown key, a bad value: `GantrixError`, as train raises it), and
    ``lr`` where an optimizer trick replaces the core's Adam (an error finding)."""
    lr = False
    for kind, sets in _SETS.items():
        for name in (None, *sets):
            train = check_values(dict(recipe.for_data(kind, name).train),
                                 "the recipe's [train] table")
            lr = lr or train.get("lr") is not None
    if lr and any("optimizer" in t.features() for t in tricks):
        return [Finding("error", "lr sets the core's default Adam, but this composition has "
                                 "an optimizer trick: set its lr instead (e.g. --trick "
                                 "adam:lr=1e-4)")]
    return []
