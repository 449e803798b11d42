"""The declared plugin API: everything a trick plugin imports from gantrix, in one module.

A plugin — gantrix's built-ins in ``plugins/`` and every third-party package alike —
imports ``gantrix.plugin`` (plus torch and the standard library) and nothing else of
gantrix; built-in plugins never import each other. What this module exports (``__all__``)
is stable: a name is not removed and its signature does not change incompatibly within a
major version (semantic versioning; while gantrix is 0.x, only with a deprecation warning
for at least one minor release first). For a plugin, gantrix's other modules — and the
names of ``gantrix.distributed`` beyond the ones ``distributed`` here lists — are internal
and may change in any release. (A command a plugin adds may drive gantrix like any program,
through the user's API: ``gantrix.make``, ``gantrix.Recipe``, ``gantrix.Trainer``.)

What it holds (docs/writing-a-plugin.md says what each is for):

- the trick kinds and their metadata: `Trick`, `Loss`, `Regularizer`, `Policy`,
  `Architecture`, `Param`, `Requires`, `Clash`, `Replaces`, `Finding`, `hookimpl`;
- the errors: `GantrixError`, `ParamError`, `ModelTransformError`, ...;
- the objects hooks receive: `Batch`, `ModelSpec`, `Models`, `ROLES`;
- model helpers for architecture tricks: `find_layers`, `layer_stack`, `widen_input`,
  `widen_first_layer`, `last_widenable`, `last_layer`, `insert_before_last`,
  `output_module`, `FeatureCritic`, `BatchStatistic`, `require_images`, the core's
  `ConvGenerator`/`ConvCritic` and their constants;
- class-label conditioning (`condition_on_labels`, `fake_labels`, `draw_labels`, ...);
- image augmentations (`AUGMENTATIONS`, `parse_policy`, `augment_images`, ...);
- ``distributed``: the data-parallel helpers every random draw and batch statistic of a
  trick goes through (``distributed.rand``, ``distributed.gather_rows``, ...);
- ``kernels``: the accelerated ops (`gantrix.kernels`), and `adam`, the core's default
  optimizer.

Importing it is cheap: it loads no plugin and no training machinery.

Example, a policy that adds noise to the real samples (each process draws its rows of one
draw for the global batch, so a data-parallel run trains as one process would)::

    from gantrix.plugin import Param, Policy, distributed, hookimpl

    class RealNoise(Policy):
        \"\"\"Add N(0, sigma^2) to the real samples before the critic sees them.\"\"\"

        name = "real-noise"
        summary = "add Gaussian noise to the real samples"
        params = (Param("sigma", float, 0.1, "the noise's standard deviation", low=0.0),)

        @hookimpl
        def gantrix_prepare_batch(self, batch):
            x = batch.real
            noise = distributed.randn(x.shape[0], *x.shape[1:], device=x.device, dtype=x.dtype)
            batch.real = x + self.sigma * noise

    @hookimpl
    def gantrix_register_tricks(register):
        register(RealNoise)
"""
from __future__ import annotations

from . import distributed as _distributed
from . import kernels
from .augment import (AUGMENTATIONS, Augmentation, augment_images, color, cutout, flip,
                      parse_policy, policy_name, require_augmentable, translation)
from .batch import Batch
from .conditioning import (ConditionalCritic, ConditionalGenerator, LabelCode,
                           condition_on_labels, draw_labels, fake_labels, label_critic_inputs,
                           takes_keyword)
from .errors import (CompositionError, GantrixError, ModelTransformError, ParamError,
                     UnknownNameError)
from .findings import Clash, Finding, Replaces, Requires
from .hookspecs import hookimpl
from .models import (CONV, KERNELS, ROLES, SMALLEST_SIDES, WIDENABLE, BatchStatistic,
                     ConvCritic, ConvGenerator, FeatureCritic, ModelSpec, Models, find_layers,
                     insert_before_last, last_layer, last_widenable, layer_stack, output_module,
                     require_images, widen_first_layer, widen_input)
from .optim import adam
from .params import Param
from .trick import Architecture, Loss, Policy, Regularizer, Trick


class _Distributed:
    """The data-parallel helpers of the plugin API (`gantrix.distributed`'s functions of
    these names, looked up at each use). Draw every per-sample random number through
    ``rand``/``randn``/``randint`` (drawn for the global batch, this process's rows kept),
    compute a loss that couples the samples of a batch on ``gather_rows(x)``, and tag a
    trick whose statistics are per process with ``PER_RANK_BATCH``."""

    __slots__ = ()
    NAMES = ("rand", "randn", "randint", "gather_rows", "mean_across_ranks",
             "average_gradients", "world_size", "active", "PER_RANK_BATCH")

    def __getattr__(self, name: str):
        if name in _Distributed.NAMES:
            return getattr(_distributed, name)
        raise AttributeError(f"gantrix.plugin.distributed has no {name!r}; the plugin API's "
                             f"data-parallel helpers are {', '.join(_Distributed.NAMES)}")

    def __dir__(self):
        return list(_Distributed.NAMES)

    def __repr__(self) -> str:
        return f"<gantrix.plugin.distributed: {', '.join(_Distributed.NAMES)}>"


#: the data-parallel helpers (`_Distributed`): ``distributed.rand(n, ...)``, ...
distributed = _Distributed()


__all__ = [
    # trick kinds and metadata
    "Trick", "Loss", "Regularizer", "Policy", "Architecture",
    "Param", "Requires", "Clash", "Replaces", "Finding", "hookimpl",
    # errors
    "GantrixError", "ParamError", "ModelTransformError", "CompositionError", "UnknownNameError",
    # what hooks receive
    "Batch", "ModelSpec", "Models", "ROLES",
    # model helpers
    "find_layers", "layer_stack", "widen_input", "widen_first_layer", "last_widenable",
    "last_layer", "insert_before_last", "output_module", "require_images",
    "FeatureCritic", "BatchStatistic", "ConvGenerator", "ConvCritic",
    "WIDENABLE", "CONV", "KERNELS", "SMALLEST_SIDES",
    # class-label conditioning
    "condition_on_labels", "fake_labels", "draw_labels", "label_critic_inputs",
    "takes_keyword", "LabelCode", "ConditionalGenerator", "ConditionalCritic",
    # image augmentations
    "AUGMENTATIONS", "Augmentation", "parse_policy", "augment_images", "require_augmentable",
    "policy_name", "color", "translation", "cutout", "flip",
    # data-parallel helpers, accelerated ops, the default optimizer
    "distributed", "kernels", "adam",
]


def __dir__():
    return sorted(set(globals()) | set(__all__))
