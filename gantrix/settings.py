"""A run's settings: what they are, where their defaults come from, how they are checked.

Settings come, in order of precedence, from the keyword arguments (the command line), the
recipe's ``[train]`` table (a ``--config`` file's, then the named recipe's, each overridden
by its ``[points]``/``[images]`` table for the data at hand: `Recipe.for_data`), and the
defaults for the data (`defaults_for`: `POINT_DEFAULTS`, `IMAGE_DEFAULTS`, and a built-in
data set's own `DATA_DEFAULTS`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .compose import Composition
from .data import Data
from .errors import CompositionError, GantrixError
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


def defaults_for(data: Data, source: str) -> dict[str, Any]:
    """The default settings for ``data`` read from ``source`` (as `describe_source` records
    it): its kind's, then a built-in data set's own (a user's folder named ``mnist`` is not
    the built-in one)."""
    kind = IMAGE_DEFAULTS if data.is_image else POINT_DEFAULTS
    return {**kind, **DATA_DEFAULTS.get(source, {})}

#: the settings a ``[train]`` table (or the keyword arguments) may hold.
SETTINGS = {p.name: p for p in (
    Param("data", str, None, "built-in data name, image folder or tensor file"),
    Param("steps", int, None, "generator updates in total", low=1),
    Param("batch_size", int, None, "samples per batch", low=1),
    Param("seed", int, 0, "seed of the models' initialisation, the latents and the batches", low=0),
    Param("device", str, "auto", "where to train", choices=("auto", "cpu", "cuda")),
    Param("precision", str, "fp32", "fp32, or autocast to bf16, or fp16 with a loss scaler",
          choices=MODES),
    Param("latent_dim", int, None, "size of the latent vector z", low=1),
    Param("width", int, None, "base channel count of the core's convolutional models", low=1),
    Param("lr", float, None, "learning rate of the core's default Adam (optimizer tricks "
          "set their own)", low=0.0, low_open=True, optional=True),
    Param("image_size", int, None, "images are resized to this (a power of two, 8 to 256)",
          low=8, high=256, optional=True),
    Param("mirror", bool, False, "flip each image left to right with probability 1/2 (for "
          "data where a mirror image means the same)"),
    Param("skip_bad_images", bool, False, "train an image folder without its unreadable "
          "files (counted) instead of stopping at the first"),
    Param("sample_every", int, None, "steps between sample pictures (0: only at the end)", low=0),
    Param("checkpoint_every", int, None, "steps between checkpoints (0: only at the end)", low=0),
    Param("log_every", int, None, "steps between lines of metrics.jsonl", low=1),
)}


@dataclass
class Settings:
    """A run's resolved settings: what ``[train]`` of its config.toml records."""

    data: str
    steps: int
    batch_size: int
    seed: int
    device: str
    precision: str
    latent_dim: int
    width: int
    lr: float | None
    image_size: int | None
    mirror: bool
    skip_bad_images: bool
    sample_every: int
    checkpoint_every: int
    log_every: int

    def table(self) -> dict[str, Any]:
        """For TOML (which has no null): the settings that are set."""
        return {k: v for k, v in asdict(self).items() if v is not None}



def check_values(values: dict[str, Any], where: str) -> dict[str, Any]:
    """``values`` checked against `SETTINGS` (``where`` names their source in errors),
    without the ones that are None."""
    unknown = set(values) - set(SETTINGS)
    if unknown:
        raise GantrixError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}; "
                           f"allowed: {', '.join(SETTINGS)}")
    return {k: SETTINGS[k].validate(v, where) for k, v in values.items() if v is not None}


def check_shared_batch(batch_size: int, processes: int) -> None:
    """``batch_size`` (the global batch) splits evenly over ``processes``, else
    `GantrixError`."""
    if batch_size % processes:
        raise GantrixError(f"--batch-size {batch_size} is the global batch, shared by "
                           f"{processes} processes: it must be a multiple of {processes}")


def check_settings(composition: Composition, batch_size: int, processes: int = 1) -> None:
    """Ask the tricks about the run's settings (`gantrix_check_settings`); their findings
    join the composition's, and errors raise `CompositionError` before any work. A batch
    that ``processes`` cannot share evenly is a `GantrixError`."""
    check_shared_batch(batch_size, processes)
    findings = [f for answer in composition.hook.gantrix_check_settings(
        batch_size=batch_size, processes=processes) for f in answer or ()]
    composition.findings.extend(findings)
    if any(f.severity == "error" for f in findings):
        raise CompositionError(findings)


SETTINGS_DEFAULTS = {name: p.default for name, p in SETTINGS.items()}
