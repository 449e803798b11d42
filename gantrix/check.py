"""A composition checked before training: by its tricks' metadata alone, or, given data,
also on the models it would train (built, transformed and checked as `gantrix train` does,
never trained), so that model findings (BatchNorm in a critic under a penalty, a conditional
model on unlabelled data, a generator bigger than its critic) come before any run.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import distributed
from .compose import Composition, resolve
from .errors import CompositionError, GantrixError
from .findings import SEVERITIES, Finding
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
    """Check ``recipe``; with ``data`` (what `gantrix.data.load_data` reads), apply the
    recipe's table for that kind of data and check the models built for it too. Without
    ``data``, the recipe's own ``[train] data`` is used when it names one. ``processes``
    checks it for training in that many processes (`gantrix.distributed.findings`, the
    batch each one gets)."""
    data = recipe.train.get("data") if data is None else data
    if data is None:
        return CheckReport(*resolve(recipe))
    import torch

    from .data import describe_source, load_data
    from .models import ModelSpec
    from .step import build_models
    from .settings import check_settings, defaults_for

    source = load_data(data, image_size=recipe.train.get("image_size"),
                       skip_bad_images=bool(recipe.train.get("skip_bad_images", False)))
    name = describe_source(str(data))
    recipe = recipe.for_data("images" if source.is_image else "points", name)
    tricks, findings = resolve(recipe)
    if any(f.severity == "error" for f in findings):
        return CheckReport(tricks, findings, "not built: the composition has errors")
    composition = Composition(recipe)
    settings = {**defaults_for(source, name), **recipe.train}
    spec = ModelSpec(source.shape, source.num_classes, settings["latent_dim"], settings["width"])
    where = f"{source.name} {tuple(source.shape)}"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            models = build_models(composition, spec)
            built = (f"generator {type(models.generator).__name__}, "
                     f"critic {type(models.discriminator).__name__}")
            composition.findings.extend(
                distributed.findings(composition.tricks, models, processes))
        except CompositionError:  # its findings are in composition.findings
            built = "errors found (above)"
        except (ValueError, TypeError) as exc:
            raise GantrixError(f"cannot build models for {where}: {exc}") from None
    try:
        check_settings(composition, settings["batch_size"], processes)
    except CompositionError:  # its findings are in composition.findings
        pass
    except GantrixError as exc:  # a batch the processes cannot share
        composition.findings.append(Finding("error", str(exc)))
    found = list(dict.fromkeys(composition.findings))  # a rule may find the same in G and D
    found.sort(key=lambda f: SEVERITIES.index(f.severity))
    return CheckReport(composition.tricks, found, f"built for {where} and checked: {built}")
