"""A run's settings, declared once: the `Settings` dataclass below is the table.

Each field carries its `Param` (type, range, help) and whether it may change when a run is
resumed. From it come the checks of every source (`check_values`), the Trainer's keyword
arguments, the options of ``gantrix train`` (`gantrix.cli.train`), the ``[train]`` table
of a run's config.toml (`Settings.table`) and the list of what ``--resume`` keeps fixed
(`FIXED_ON_RESUME`).

Settings come, in order of precedence, from the keyword arguments (the command line), the
recipe's ``[train]`` table (a ``--config`` file's, then the named recipe's, each overridden
by its ``[points]``/``[images]`` table for the data at hand: `Recipe.for_data`), and the
defaults for the data (`defaults_for`: `POINT_DEFAULTS`, `IMAGE_DEFAULTS`, and a built-in
data set's own `DATA_DEFAULTS`).
"""
from __future__ import annotations

import difflib
import inspect
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable

from .compose import Composition
from .data import Data
from .errors import CompositionError, GantrixError
from .findings import Finding
from .params import Param
from .precision import MODES

#: defaults for 2-D (vector) data and for images, measured to train the built-in data
#: sets within about three minutes on a 2-core CPU (see docs/results.md). 2-D data gets a
#: 2-D latent, as in the WGAN-GP toy code (gan_toy.py): with 64 latent dimensions the
#: generator needs far longer to fold its input onto a few sharp modes.
POINT_DEFAULTS = dict(steps=12000, batch_size=256, latent_dim=2, width=64,
                      sample_every=1000, checkpoint_every=250, log_every=10)
IMAGE_DEFAULTS = dict(steps=2000, batch_size=64, latent_dim=64, width=64,
                      sample_every=500, checkpoint_every=250, log_every=10)
#: over those, for the built-in 32×32 data: half the width (a quarter of the cost per
#: step: 0.11 s instead of 0.42 s for dcgan at batch 128 on 2 cores) and twice the steps.
#: A recipe may adapt them further for one data set (dcgan's ``[images.mnist]`` table:
#: 8,000 updates of 64, readable MNIST digits in about 11 minutes on two idle CPU cores;
#: docs/results.md).
DATA_DEFAULTS = {
    "mnist": dict(steps=4000, width=32),
    "stacked-mnist": dict(steps=4000, width=32),
}


#: the largest seed: 32 bits, as NumPy's and most tools' seeds (torch's generators take 64,
#: but a run derives other streams from its seed by adding offsets: seed + 1 for the latents,
#: seed + `gantrix.data.MIRROR_STREAM` for the flips, which must stay within torch's range).
SEED_HIGH = 2**32 - 1
#: the most steps a run (or an interval between its pictures, checkpoints, ...) may have.
STEPS_HIGH = 10**9
#: the largest batch, latent size or width: torch's 32-bit sizes (one that fits may still
#: need more memory than there is: `gantrix.step` says how much when it cannot be allocated).
SIZE_HIGH = 2**31 - 1


def defaults_for(data: Data, source: str) -> dict[str, Any]:
    """The default settings for ``data`` read from ``source`` (as `describe_source` records
    it): its kind's, then a built-in data set's own (a user's folder named ``mnist`` is not
    the built-in one)."""
    kind = IMAGE_DEFAULTS if data.is_image else POINT_DEFAULTS
    return {**kind, **DATA_DEFAULTS.get(source, {})}


def _setting(type_: type, help: str, default: Any = None, *, resumable: bool = False,
             **rules: Any):
    """A field of `Settings`: its `Param` (named after the field) and whether ``--resume``
    may change it."""
    return field(metadata={"param": dict(type=type_, default=default, help=help, **rules),
                           "resumable": resumable})


@dataclass
class Settings:
    """A run's resolved settings: what ``[train]`` of its config.toml records."""

    data: str = _setting(str, "built-in data name, image folder or tensor file")
    steps: int = _setting(int, "generator updates in total", low=1, high=STEPS_HIGH,
                       resumable=True)
    batch_size: int = _setting(int, "samples per batch (the global batch: all processes')",
                               low=1, high=SIZE_HIGH)
    seed: int = _setting(int, "seed of the models' initialisation, the latents and the "
                         "batches (a 32-bit number)", 0, low=0, high=SEED_HIGH)
    device: str = _setting(str, "where to train", "auto", choices=("auto", "cpu", "cuda"),
                           resumable=True)
    threads: int | None = _setting(int, "CPU threads of this run (default: the cores this "
                                   "process may use, shared among the runs gantrix starts side "
                                   "by side; OMP_NUM_THREADS when set: gantrix.threads)", low=1,
                                   high=4096, optional=True, resumable=True)
    precision: str = _setting(str, "fp32, or autocast to bf16, or fp16 with a loss scaler",
                              "fp32", choices=MODES)
    compile: bool = _setting(bool, "compile the models' forward passes in training steps "
                             "with torch.compile, where the composition allows "
                             "(gantrix.compiling)", False, resumable=True)
    latent_dim: int = _setting(int, "size of the latent vector z", low=1,
                               high=SIZE_HIGH)
    width: int = _setting(int, "base channel count of the core's convolutional models",
                          low=1, high=SIZE_HIGH)
    lr: float | None = _setting(float, "learning rate of the core's default Adam (optimizer "
                                "tricks set their own)", low=0.0, low_open=True, high=1.0,
                                optional=True)
    image_size: int | None = _setting(int, "images are resized to this (a power of two, 8 to "
                                      "256)", low=8, high=256, optional=True)
    image_fit: str = _setting(str, "how an image folder's non-square images become square: "
                              "crop (the centre square, as DCGAN's CelebA preparation), pad "
                              "(the whole image, black borders) or squash", "crop",
                              choices=("crop", "pad", "squash"))
    mirror: bool = _setting(bool, "flip each image left to right with probability 1/2 (for "
                            "data where a mirror image means the same)", False)
    skip_bad_images: bool = _setting(bool, "train an image folder without its unreadable "
                                     "files (counted) instead of stopping at the first", False)
    sample_every: int = _setting(int, "steps between sample pictures (0: only at the end)",
                                 low=0, high=STEPS_HIGH)
    checkpoint_every: int = _setting(int, "steps between checkpoints (0: only at the end)",
                                     low=0, high=STEPS_HIGH)
    log_every: int = _setting(int, "steps between lines of metrics.jsonl", low=1,
                               high=STEPS_HIGH)
    log: str | None = _setting(str, "trackers that also get every metrics line and sample "
                               "picture, comma-separated: tensorboard, wandb, or a plugin's "
                               "(metrics.jsonl is always written)", optional=True)
    eval_every: int = _setting(int, "steps between evaluations of the data's metric during "
                               "training, keeping the best generator in best.pt (0: none)", 0,
                               low=0, high=STEPS_HIGH, resumable=True)
    eval_metric: str | None = _setting(str, "the metric --eval-every ranks by (default: fid "
                                       "on images, high_quality on 2-D points)", optional=True)
    eval_n: int | None = _setting(int, "samples scored at each evaluation (default 2,500)",
                                  low=2, high=10**7, optional=True)

    def table(self) -> dict[str, Any]:
        """For TOML (which has no null): the settings that are set."""
        return {k: v for k, v in asdict(self).items() if v is not None}


#: every setting's `Param`, by name, in the order of `Settings`.
SETTINGS = {f.name: Param(f.name, **f.metadata["param"]) for f in fields(Settings)}
SETTINGS_DEFAULTS = {name: p.default for name, p in SETTINGS.items()}
#: what a resumed run keeps as it was configured (the others, steps and device, may change).
FIXED_ON_RESUME = tuple(f.name for f in fields(Settings) if not f.metadata["resumable"])
#: what a resumed run may change (steps, device, ...): the rest of `SETTINGS`.
RESUMABLE = tuple(name for name in SETTINGS if name not in FIXED_ON_RESUME)


def with_setting_parameters(function: Callable,
                            parameter: Callable[[str, Param], inspect.Parameter]) -> Callable:
    """``function`` (which takes ``**settings``) with a signature that lists one keyword
    parameter per setting, made by ``parameter(name, param)``, in place of ``**settings``:
    what help(), notebooks and typer (the CLI's options) read. Settings already named in the
    signature are left as they are."""
    signature = inspect.signature(function)
    params = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    params += [parameter(name, p) for name, p in SETTINGS.items()
               if name not in signature.parameters]
    function.__signature__ = signature.replace(parameters=params)
    function.__annotations__ = {p.name: p.annotation for p in params
                                if p.annotation is not inspect.Parameter.empty}
    return function


def check_values(values: dict[str, Any], where: str) -> dict[str, Any]:
    """``values`` checked against `SETTINGS` (``where`` names their source in errors),
    without the ones that are None."""
    unknown = sorted(set(values) - set(SETTINGS))
    if unknown:
        close = [c for name in unknown for c in difflib.get_close_matches(name, SETTINGS, n=1)]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise GantrixError(f"{where}: unknown setting(s) {', '.join(unknown)}{hint}; "
                           f"allowed: {', '.join(SETTINGS)}")
    return {k: SETTINGS[k].validate(v, where) for k, v in values.items() if v is not None}


def resolve_settings(given: dict[str, Any], from_recipe: dict[str, Any],
                     for_data: dict[str, Any]) -> Settings:
    """The settings of a run: ``given`` (checked keyword arguments) over ``from_recipe``
    (its checked ``[train]`` table) over ``for_data`` (`defaults_for`) over the table's
    own defaults."""
    merged = {**SETTINGS_DEFAULTS, **for_data, **from_recipe, **given}
    return Settings(**{name: merged.get(name) for name in SETTINGS})


def check_shared_batch(batch_size: int, processes: int) -> None:
    """``batch_size`` (the global batch) splits evenly over ``processes``, else
    `GantrixError`."""
    if batch_size % processes:
        raise GantrixError(f"--batch-size {batch_size} is the global batch, shared by "
                           f"{processes} processes: it must be a multiple of {processes}")


def settings_findings(composition: Composition, batch_size: int,
                      processes: int = 1) -> list[Finding]:
    """What the tricks find about the run's settings (`gantrix_check_settings`)."""
    return [f for answer in composition.hook.gantrix_check_settings(
        batch_size=batch_size, processes=processes) for f in answer or ()]


def check_settings(composition: Composition, batch_size: int, processes: int = 1) -> list[Finding]:
    """`settings_findings`, raising `CompositionError` when one is an error; a batch that
    ``processes`` cannot share evenly is a `GantrixError`. Returns the findings."""
    check_shared_batch(batch_size, processes)
    findings = settings_findings(composition, batch_size, processes)
    if any(f.severity == "error" for f in findings):
        raise CompositionError(findings)
    return findings
