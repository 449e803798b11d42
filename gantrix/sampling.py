"""Samples from a composed, trained generator: the latents and conditioning inputs drawn
through the composition's hooks (`gantrix_latent`, `gantrix_condition`), as in training,
without touching any random state outside.

`Sampler` is what `gantrix.Trainer.sample` and evaluation use; it needs the composition,
the models, the model spec and the device, never the training loop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .batch import Batch
from .compose import Composition
from .errors import GantrixError
from .models import ModelSpec, Models
from .step import draw_latent

#: samples generated in one forward pass.
CHUNK = 500


@dataclass
class Sampler:
    """Draws samples from ``models``' generator (an averaged copy when a trick publishes
    one) the way ``composition`` conditions it."""

    composition: Composition
    models: Models
    spec: ModelSpec
    device: torch.device

    @property
    def generator(self) -> nn.Module:
        """The generator to sample from: an averaged copy when a trick publishes one."""
        return self.models.extra.get("generator_ema") or self.models.generator

    def batch(self, z: torch.Tensor, step: int) -> Batch:
        """A generator-phase batch for latents ``z``, as the conditioning hooks see it when
        sampling (no real samples, no labels unless the caller sets ``fake_labels``)."""
        return Batch(real=torch.zeros(len(z), *self.spec.shape, device=self.device),
                     critic=self.models.discriminator, phase="generator", step=step, z=z,
                     hook=self.composition.hook)

    def _forked_rng(self):
        return torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else [])

    def sample(self, n: int, labels: torch.Tensor | None = None, *, seed: int = 0,
               step: int = 0, blocks: range | None = None) -> torch.Tensor:
        """``n`` samples on the CPU, in the generator's range (the generator in eval mode).
        ``labels``: n checked class indices (`check_labels`), or None; ``step`` is the
        generator update the conditioning hooks are told. ``blocks`` (a process's share of
        an evaluation): only these blocks of `CHUNK` samples, by index, go through the
        generator; the others' latents and conditioning are drawn all the same, so the rows
        returned are exactly those rows of the ``n`` (the generator itself draws nothing
        in eval mode)."""
        gen = self.generator
        was_training = gen.training
        gen.eval()
        chunks = []
        rng = torch.Generator(self.device).manual_seed(seed)
        try:
            with torch.no_grad(), self._forked_rng():
                torch.manual_seed(seed)
                for block, lo in enumerate(range(0, n, CHUNK)):
                    m = min(CHUNK, n - lo)
                    z = draw_latent(self.composition.hook, m, self.spec.latent_dim,
                                    device=self.device, generator=rng)
                    batch = self.batch(z, step)
                    if labels is not None:
                        batch.fake_labels = labels[lo:lo + m].to(self.device)
                    self.composition.hook.gantrix_condition(batch=batch)
                    if blocks is not None and block not in blocks:
                        continue
                    chunks.append(gen(z, **batch.generator_inputs).float().cpu())
        finally:
            gen.train(was_training)
        return torch.cat(chunks)

    def takes_labels(self, step: int = 0) -> bool:
        """Whether the generator takes class labels: a trick routes the batch's
        ``fake_labels`` to it as ``generator_inputs["labels"]`` (cgan, acgan, projection)."""
        batch = self.batch(torch.zeros(1, self.spec.latent_dim, device=self.device), step)
        batch.fake_labels = torch.zeros(1, dtype=torch.long, device=self.device)
        with self._forked_rng():
            self.composition.hook.gantrix_condition(batch=batch)  # codes may be drawn
        return "labels" in batch.generator_inputs


def check_labels(labels: torch.Tensor | Sequence[int | str] | str, n: int, classes: int,
                 data_name: str, names: Sequence[str] | None = None) -> torch.Tensor:
    """``labels`` as ``n`` class indices (one label repeated, a list repeated to ``n``),
    each in ``[0, classes)``, or a class's name where the data names them (``names``, by
    index: an image folder's sub-folders; a name wins over the number it looks like);
    `GantrixError` naming the data set, and its classes, otherwise."""
    if not classes:
        raise GantrixError(f"{data_name} has no class labels; sample without labels")
    if isinstance(labels, str):
        labels = [labels]
    if not isinstance(labels, torch.Tensor):
        labels = [_index(v, names, data_name, classes) if isinstance(v, str) else v
                  for v in labels]
    try:
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    except (RuntimeError, OverflowError, TypeError, ValueError):
        raise GantrixError(f"labels must be class indices (or names); {data_name} has "
                           f"{_classes(classes, names)}") from None
    if not len(labels):
        raise GantrixError(f"no labels given; give one or more of {data_name}'s classes "
                           f"({_classes(classes, names)})")
    if len(labels) == 1:
        labels = labels.expand(n)
    if len(labels) != n:
        labels = labels.repeat(math.ceil(n / len(labels)))[:n]
    bad = labels[(labels < 0) | (labels >= classes)]
    if len(bad):
        raise GantrixError(f"label {int(bad[0])} is out of range; {data_name} has "
                           f"{_classes(classes, names)}")
    return labels


#: the most classes an error message lists by name
NAMES_SHOWN = 20


def _classes(classes: int, names: Sequence[str] | None) -> str:
    """The classes, for a message: ``classes 0 to 2 (0: cat, 1: dog, 2: fox)``."""
    text = f"classes 0 to {classes - 1}"
    if names:
        shown = ", ".join(f"{i}: {name}" for i, name in enumerate(names[:NAMES_SHOWN]))
        more = f", ... ({len(names)} in all)" if len(names) > NAMES_SHOWN else ""
        text += f" ({shown}{more})"
    return text


def _index(label: str, names: Sequence[str] | None, data_name: str, classes: int) -> int:
    """A label given as text: a class's name, else a class index."""
    label = label.strip()
    if names and label in names:
        return list(names).index(label)
    try:
        return int(label)
    except ValueError:
        pass
    if names:
        raise GantrixError(f"label {label!r} is not a class of {data_name}, which has "
                           f"{_classes(classes, names)}")
    raise GantrixError(f"label {label!r} is not a class index; {data_name} has "
                       f"{_classes(classes, names)}, without names")
