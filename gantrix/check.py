"""A composition checked before training: by its tricks' metadata alone, or, given data,
as `gantrix train` would plan the run (`gantrix.plan.plan_run`: settings checked, models
built, transformed and checked, never trained), so that model findings (BatchNorm in a
critic under a penalty, a conditional model on unlabelled data, a generator bigger than its
critic) and settings that train would refuse come before any run.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .findings import Finding
from .plan import plan_run
from .recipe import Recipe
from .trick import Trick


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
        return CheckReport(plan.tricks, plan.findings)
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
