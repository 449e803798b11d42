"""gantrix: GAN training tricks as composable plugins, with fast kernels for the hot spots.

    import gantrix
    gantrix.tricks()                                  # the catalogue: name -> trick class
    gp = gantrix.make("gradient-penalty", weight=5)   # a configured trick
    recipe = gantrix.Recipe(recipe="wgan-gp").extend(["ema"])
    recipe.check()                                    # findings, before any training
    composition = recipe.compose()                    # tricks wired into one run
    gantrix.Trainer(recipe, "ring8", out="runs/ring").fit()   # train, checkpoint, plot
    gantrix.ablate("wgan-gp", data="ring8", seeds=3, out="runs/ab")  # which trick helps
    g = gantrix.load_generator("g.safetensors")      # an exported generator (gantrix export)

Names are imported lazily: ``import gantrix`` loads no plugin, no torch model and no triton.
A run is planned once by `gantrix.plan.plan_run` (what `Trainer` trains and ``gantrix check``
reports); a plugin imports the declared plugin API, `gantrix.plugin`, and nothing else.
"""
from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "hookimpl": "hookspecs",
    "hookspec": "hookspecs",
    "Trick": "trick",
    "Loss": "trick",
    "Regularizer": "trick",
    "Policy": "trick",
    "Architecture": "trick",
    "KINDS": "trick",
    "Param": "params",
    "Finding": "findings",
    "Requires": "findings",
    "Clash": "findings",
    "Replaces": "findings",
    "GantrixError": "errors",
    "UnknownNameError": "errors",
    "ParamError": "errors",
    "CompositionError": "errors",
    "ModelTransformError": "errors",
    "tricks": "registry",
    "make": "registry",
    "catalogue": "registry",
    "Recipe": "recipe",
    "Composition": "compose",
    "Batch": "batch",
    "ModelSpec": "models",
    "Models": "models",
    "ComposedStep": "step",
    "build_models": "step",
    "Trainer": "trainer",
    "plan_run": "plan",
    "RunPlan": "plan",
    "Settings": "settings",
    "ablate": "ablation_run",
    "load_generator": "export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gantrix' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
