"""What ``gantrix sample`` draws beyond plain samples: truncated latents, interpolations,
a grid with one class per row, and numbered PNG files in a folder (for external metric
tools), all from a loaded `gantrix.Trainer` through its `gantrix.sampling.Sampler`, in the
data's units, for a seed."""
from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch

from .atomic import write_atomic
from .errors import GantrixError
from .progress import Progress
from .sampling import CHUNK, check_labels

if TYPE_CHECKING:
    from .trainer import Trainer

#: the most steps of an interpolation row
MAX_STEPS = 256
#: digits of a numbered PNG's name at least (000000.png)
NAME_DIGITS = 6


def _labels(trainer: "Trainer", labels, n: int) -> torch.Tensor | None:
    if labels is None:
        return None
    d = trainer.data
    picked = check_labels(labels, n, d.num_classes, d.name, d.class_names)
    if not trainer.conditional:
        raise GantrixError("this model is not conditional (no trick feeds labels to the "
                           "generator); sample without labels")
    return picked


def draw(trainer: "Trainer", n: int, labels=None, *, seed: int = 0,
         truncation: float = 1.0) -> torch.Tensor:
    """``trainer.sample(n, labels, seed=seed)`` with the latents truncated by ψ =
    ``truncation`` (`gantrix.sampling.truncate`: ψ = 1 is the plain sample)."""
    if n < 1:
        raise GantrixError(f"the number of samples must be at least 1, got {n}")
    picked = _labels(trainer, labels, n)
    x = trainer._sampler.sample(n, picked, seed=seed, step=trainer.stepper.g_steps,
                                truncation=truncation)
    return x * trainer.data.scale


def interpolation(trainer: "Trainer", n: int, steps: int, labels=None, *, seed: int = 0,
                  truncation: float = 1.0) -> torch.Tensor:
    """``n`` rows of ``steps`` samples, shape ``(n, steps, ...)``: row i walks from sample i
    of `draw` for the seed (its first column) to a latent drawn after them
    (`gantrix.sampling.Sampler.interpolate`)."""
    if n < 1:
        raise GantrixError(f"the number of rows must be at least 1, got {n}")
    if not 2 <= steps <= MAX_STEPS:
        raise GantrixError(f"--interpolate takes the steps of each row, 2 to {MAX_STEPS}; "
                           f"got {steps}")
    picked = _labels(trainer, labels, n)
    x = trainer._sampler.interpolate(n, steps, picked, seed=seed, step=trainer.stepper.g_steps,
                                     truncation=truncation)
    return x * trainer.data.scale


def class_grid(trainer: "Trainer", n: int, labels: Sequence | None = None, *, seed: int = 0,
               truncation: float = 1.0) -> torch.Tensor:
    """A row of ``n`` samples per class, shape ``(rows, n, ...)``: the classes ``labels``
    names, in order, else every class of the data."""
    if not trainer.conditional:
        raise GantrixError("--grid puts one class in each row, but this model is not "
                           "conditional; sample a plain grid without --grid")
    k = trainer.data.num_classes
    rows = (torch.arange(k) if labels is None else
            check_labels(labels, len(labels), k, trainer.data.name, trainer.data.class_names))
    x = draw(trainer, n * len(rows), rows.repeat_interleave(n), seed=seed,
             truncation=truncation)
    return x.reshape(len(rows), n, *x.shape[1:])


def png_bytes(image: torch.Tensor) -> bytes:
    """One image (C×H×W in [−1, 1]) as PNG bytes (8 bits per channel)."""
    from PIL import Image

    x = image.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    x = x.permute(1, 2, 0).numpy()
    c = x.shape[2]
    buffer = io.BytesIO()
    Image.fromarray(x[..., 0] if c == 1 else x, {1: "L", 3: "RGB", 4: "RGBA"}[c]).save(
        buffer, format="PNG")
    return buffer.getvalue()


def write_numbered(trainer: "Trainer", folder: Path, n: int, labels=None, *, seed: int = 0,
                   truncation: float = 1.0, progress: bool | None = None) -> tuple[int, int]:
    """Samples 0 to n − 1 of `draw` for the seed as ``folder/000000.png``, ... (for metric
    tools that read a folder), a block of `CHUNK` at a time, each file written atomically.
    Resumable: a file already there is kept, and a block whose files are all there is not
    generated again. Returns (written, skipped)."""
    if not trainer.data.is_image:
        raise GantrixError(f"numbered PNGs need image data; {trainer.data.name} has samples of "
                           f"shape {tuple(trainer.data.shape)}: write a .npy file instead")
    if n < 1:
        raise GantrixError(f"the number of samples must be at least 1, got {n}")
    if folder.exists() and not folder.is_dir():
        raise GantrixError(f"--out {folder} is a file, not a folder")
    if not folder.parent.is_dir():
        raise GantrixError(f"the folder of --out does not exist: {folder.parent}")
    folder.mkdir(exist_ok=True)
    digits = max(NAME_DIGITS, len(str(n - 1)))
    names = [folder / f"{i:0{digits}d}.png" for i in range(n)]
    there = [p.exists() for p in names]
    todo = {b for b in range(0, (n + CHUNK - 1) // CHUNK)
            if not all(there[b * CHUNK:(b + 1) * CHUNK])}
    picked = _labels(trainer, labels, n)
    written, bar = 0, Progress(n, progress, desc="sample", unit="image")
    done = sum(there)
    bar.update(done)
    try:
        for block, x in trainer._sampler.blocks(n, picked, seed=seed, only=todo,
                                                step=trainer.stepper.g_steps,
                                                truncation=truncation):
            for i, image in enumerate(x * trainer.data.scale, start=block * CHUNK):
                if not there[i]:
                    write_atomic(names[i], png_bytes(image))
                    written += 1
                    done += 1
            bar.update(done)
    except OSError as exc:
        raise GantrixError(f"could not write {exc.filename or folder} ({exc.strerror or exc}); "
                           f"the {done} files there are complete: free space or fix the "
                           f"folder and run the same command again to go on") from None
    finally:
        bar.close()
    return written, n - written
