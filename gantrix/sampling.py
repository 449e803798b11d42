"""Samples from a composed, trained generator: the latents and conditioning inputs drawn
through the composition's hooks (`gantrix_latent`, `gantrix_condition`), as in training,
without touching any random state outside.

`Sampler` is what `gantrix.Trainer.sample` and evaluation use; it needs the composition,
the models, the model spec and the device, never the training loop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import torch
from torch import nn

from .batch import Batch
from .compose import Composition
from .errors import GantrixError
from .models import ModelSpec, Models
from .step import draw_latent

#: samples generated in one forward pass.
CHUNK = 500
#: latents drawn to estimate the mean of a prior a trick sets (truncation)
MEAN_DRAWS = 10_000


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
               step: int = 0, blocks: range | None = None,
               truncation: float = 1.0,
               inputs: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """``n`` samples on the CPU, in the generator's range (the generator in eval mode).
        ``labels``: n checked class indices (`check_labels`), or None; ``step`` is the
        generator update the conditioning hooks are told. ``blocks`` (a process's share of
        an evaluation): only these blocks of `CHUNK` samples, by index, go through the
        generator; the others' latents and conditioning are drawn all the same, so the rows
        returned are exactly those rows of the ``n`` (the generator itself draws nothing
        in eval mode). ``truncation`` ψ pulls each latent toward the prior's mean
        (`truncate`). ``inputs``: generator keyword inputs of n rows each (chosen code
        values: `gantrix_code_inputs`) that replace those the conditioning hooks draw."""
        return torch.cat([x for _, x in self.blocks(n, labels, seed=seed, step=step,
                                                    only=blocks, truncation=truncation,
                                                    inputs=inputs)])

    def blocks(self, n: int, labels: torch.Tensor | None = None, *, seed: int = 0,
               step: int = 0, only: range | set | None = None,
               truncation: float = 1.0,
               inputs: Mapping[str, torch.Tensor] | None = None
               ) -> Iterator[tuple[int, torch.Tensor]]:
        """`sample`'s blocks of `CHUNK` rows, one at a time, as (index, samples): every
        block's latents and conditioning are drawn first (cheap), then those in ``only``
        (all by default) go through the generator as they are asked for, so a caller may
        write each block as it comes."""
        drawn = self._draw(n, labels, seed, step, truncation, chosen=inputs)
        for block, (z, given, _) in enumerate(drawn):
            if only is None or block in only:
                yield block, self._generate(z, given)

    def interpolate(self, n: int, steps: int, labels: torch.Tensor | None = None, *,
                    seed: int = 0, step: int = 0, truncation: float = 1.0) -> torch.Tensor:
        """``n`` rows of ``steps`` samples (shape ``(n, steps, ...)``) walking from the
        latents `sample` draws for ``seed`` (the first column: exactly its samples) to ``n``
        latents drawn after them (the last column), each row with its first sample's
        conditioning (its class). Spherical steps (slerp: Shoemake 1985; White 2016,
        Sampling Generative Networks) for the default N(0, I) prior, whose mass lies near a
        sphere; straight ones where a trick sets the prior (a uniform cube holds its
        chords)."""
        spherical = self._default_prior()
        rows = []
        for z, inputs, end in self._draw(n, labels, seed, step, truncation, ends=True):
            path = [self._generate(_between(z, end, t, spherical), inputs)
                    for t in torch.linspace(0, 1, steps).tolist()]
            rows.append(torch.stack(path, 1))
        return torch.cat(rows)

    def prior_mean(self) -> torch.Tensor:
        """The mean of the latents' prior: 0 for the default N(0, I); where a trick sets
        the prior, the mean of `MEAN_DRAWS` of its latents (seeded)."""
        dim = self.spec.latent_dim
        if self._default_prior():
            return torch.zeros(dim, device=self.device)
        with self._forked_rng():
            return draw_latent(self.composition.hook, MEAN_DRAWS, dim, device=self.device,
                               generator=torch.Generator(self.device).manual_seed(0)).mean(0)

    def _default_prior(self) -> bool:
        """Whether the latents come from the core's N(0, I) (no trick answers
        `gantrix_latent`)."""
        with self._forked_rng():
            return self.composition.hook.gantrix_latent(
                n=1, dim=self.spec.latent_dim, device=self.device,
                generator=torch.Generator(self.device).manual_seed(0)) is None

    def _draw(self, n: int, labels: torch.Tensor | None, seed: int, step: int,
              truncation: float, ends: bool = False,
              chosen: Mapping[str, torch.Tensor] | None = None) -> list[tuple]:
        """Each block's latents and generator inputs, drawn as training draws them (with
        ``ends``: latents to walk to as well, drawn after all of them; ``chosen``: the
        block's rows of these inputs replace the drawn ones), the random streams outside
        untouched."""
        mean = self.prior_mean() if truncation != 1.0 else None
        rng = torch.Generator(self.device).manual_seed(seed)
        drawn = []
        with torch.no_grad(), self._forked_rng():
            torch.manual_seed(seed)
            for lo in range(0, n, CHUNK):
                m = min(CHUNK, n - lo)
                z = draw_latent(self.composition.hook, m, self.spec.latent_dim,
                                device=self.device, generator=rng)
                z = z if mean is None else truncate(z, mean, truncation)
                batch = self.batch(z, step)
                if labels is not None:
                    batch.fake_labels = labels[lo:lo + m].to(self.device)
                self.composition.hook.gantrix_condition(batch=batch)
                for key, value in (chosen or {}).items():
                    batch.generator_inputs[key] = value[lo:lo + m].to(self.device)
                drawn.append((z, batch.generator_inputs))
            ended = []
            for z, inputs in drawn:
                end = None
                if ends:
                    end = draw_latent(self.composition.hook, len(z), self.spec.latent_dim,
                                      device=self.device, generator=rng)
                    end = end if mean is None else truncate(end, mean, truncation)
                ended.append((z, inputs, end))
        return ended

    def _generate(self, z: torch.Tensor, inputs: dict) -> torch.Tensor:
        """The generator's samples for ``z`` and ``inputs``, in eval mode, on the CPU (the
        random streams outside untouched)."""
        gen = self.generator
        was_training = gen.training
        gen.eval()
        try:
            with torch.no_grad(), self._forked_rng():
                return gen(z, **inputs).float().cpu()
        finally:
            gen.train(was_training)

    def takes_labels(self, step: int = 0) -> bool:
        """Whether the generator takes class labels: a trick routes the batch's
        ``fake_labels`` to it as ``generator_inputs["labels"]`` (cgan, acgan, projection)."""
        batch = self.batch(torch.zeros(1, self.spec.latent_dim, device=self.device), step)
        batch.fake_labels = torch.zeros(1, dtype=torch.long, device=self.device)
        with self._forked_rng():
            self.composition.hook.gantrix_condition(batch=batch)  # codes may be drawn
        return "labels" in batch.generator_inputs


def truncate(z: torch.Tensor, mean: torch.Tensor, psi: float) -> torch.Tensor:
    """The truncation trick as a pull toward the prior's mean: ``mean + ψ·(z − mean)``, ψ in
    [0, 1] (ψ = 1: ``z`` itself; ψ = 0: the mean, so every sample is the mean image). This
    is StyleGAN's form (Karras, Laine & Aila 2019, §2.1, eq. 3, there in W), applied to the
    latents so it works for any prior; BigGAN's form (Brock, Donahue & Simonyan 2019, §3.1:
    resample the N(0, I) components beyond a threshold) is not what this does."""
    check_truncation(psi)
    if psi == 1.0:
        return z
    return mean + psi * (z - mean)


def check_truncation(psi: float) -> None:
    """`GantrixError` unless ψ is in [0, 1]."""
    if not 0.0 <= psi <= 1.0:  # NaN too
        raise GantrixError(f"truncation psi must be in [0, 1], got {psi}; 1 leaves the latents "
                           f"as drawn, 0 gives the prior's mean")


def _between(a: torch.Tensor, b: torch.Tensor, t: float, spherical: bool) -> torch.Tensor:
    """The point a fraction ``t`` of the way from each row of ``a`` to ``b``: on the great
    circle through them scaled between their norms (``spherical``), else on the chord; the
    ends exactly ``a`` and ``b``."""
    if t == 0.0:
        return a
    if t == 1.0:
        return b
    if spherical:
        na, nb = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
        cos = ((a / na.clamp_min(1e-12)) * (b / nb.clamp_min(1e-12))).sum(1, keepdim=True)
        omega = cos.clamp(-1.0, 1.0).acos()
        sin = omega.sin()
        wide = sin > 1e-6  # nearly parallel rows: the chord
        safe = sin.clamp_min(1e-6)
        wa = torch.where(wide, ((1 - t) * omega).sin() / safe, torch.full_like(sin, 1 - t))
        wb = torch.where(wide, (t * omega).sin() / safe, torch.full_like(sin, t))
        return wa * a + wb * b
    return a + t * (b - a)


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
