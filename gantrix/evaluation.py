"""FID, KID and precision/recall of a run's generator against its real data, in a named
feature space (`gantrix.features`), with the real data's own figures (the floor) beside them.

    trainer = gantrix.Trainer.load("runs/mnist")
    trainer.evaluate(metrics=["fid", "kid", "pr"])   # {"features": "mnist classifier", "fid": ...}

The metrics are the papers' (`gantrix.quality`): FID (Heusel et al. 2017), KID (Bińkowski et
al. 2018: unbiased MMD², cubic kernel, mean ± std over 100 subsets of up to 1,000), improved
precision/recall (Kynkäänniemi et al. 2019, k = 3).

``n`` generated samples are compared with ``min(n, real)`` real ones, drawn once (``seed``)
from the data apart from its training stream. The floor is the same metric between those
real samples and as many other real ones (a separate draw: it needs 2n real images, so the
default ``n`` is 10,000 or half the real set, whichever is smaller): what a generator that
reproduced the data exactly would score at this ``n``.

The real side is computed once: its features (and the floor's, and the floor's values) are
cached in the cache folder (``features/`` beside the prepared image folders), keyed by the
data's key (a folder's prepared-cache key), the feature space (network and weights), ``n``
and ``seed``, written atomically and checked (key and checksum) before use: a damaged file
is recomputed, never trusted. A second evaluation costs the generated side only.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np
import torch

from . import distributed, sampling
from . import features as feats
from .atomic import write_atomic
from .cache import cache_dir
from .data import Toy2D
from .errors import GantrixError, UnknownNameError
from .metrics import CLASSIFIED, SAMPLES, metrics_for, mode_metrics

if TYPE_CHECKING:
    from .trainer import Trainer

#: the metrics `evaluate` computes, and the other names it takes for them.
METRICS = ("fid", "kid", "pr")
ALIASES = {"precision": "pr", "recall": "pr", "precision-recall": "pr",
           "precision_recall": "pr", "prc": "pr"}
#: generated samples by default (fewer when the real set has under twice as many).
DEFAULT_N = 10_000
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
PR_K = 3
#: generated samples per call of the generator (each chunk is featurized, then dropped).
GENERATE_CHUNK = 1000
#: bumped when what a real-side cache file holds changes.
CACHE_VERSION = 1


def check_metrics(names: Iterable[str]) -> list[str]:
    """The metrics' canonical names, in order, without repeats; an unknown name raises
    `UnknownNameError` with the close ones."""
    out: list[str] = []
    for name in names:
        key = str(name).strip().lower()
        key = ALIASES.get(key, key)
        if key not in METRICS:
            raise UnknownNameError("metric", str(name), (*METRICS, *ALIASES),
                                   hint=f" (known: {', '.join(METRICS)})")
        if key not in out:
            out.append(key)
    if not out:
        raise GantrixError(f"no metric asked for; known: {', '.join(METRICS)}")
    return out


# --------------------------------------------------------------------------- the metrics


def _kid_size(n_real: int, n_fake: int) -> int:
    return min(KID_SUBSET_SIZE, n_real, n_fake)


def _spec(metric: str, n_real: int, n_fake: int) -> str:
    """The metric with its parameters: the floor cache's key for its values."""
    if metric == "kid":
        return f"kid-{KID_SUBSETS}x{_kid_size(n_real, n_fake)}"
    if metric == "pr":
        return f"pr-k{PR_K}"
    return metric


def compute(metric: str, real: np.ndarray, fake: np.ndarray) -> dict[str, float]:
    """``metric`` between two feature sets (`gantrix.quality`)."""
    from . import quality

    if metric == "fid":
        return {"fid": float(quality.fid(real, fake))}
    if metric == "kid":
        size = _kid_size(len(real), len(fake))
        if size < 2:
            raise GantrixError(f"KID needs at least 2 samples on each side, got {len(real)} and {len(fake)}")
        mean, std = quality.kid(real, fake, subsets=KID_SUBSETS, subset_size=size, seed=0)
        return {"kid": float(mean), "kid_std": float(std)}
    if metric == "pr":
        if min(len(real), len(fake)) <= PR_K:
            raise GantrixError(f"precision/recall needs more than k = {PR_K} samples on each side, "
                               f"got {len(real)} and {len(fake)}")
        precision, recall = quality.precision_recall(real, fake, k=PR_K)
        return {"precision": float(precision), "recall": float(recall)}
    raise UnknownNameError("metric", metric, METRICS)


# --------------------------------------------------------------------------- the real side


@dataclass
class RealSide:
    """The real samples' features (and the floor's: as many other real samples, or None),
    whether they came from the cache, the seconds spent on them, and the cache file."""

    features: np.ndarray
    floor: np.ndarray | None
    cached: bool
    seconds: float
    path: Path | None
    checksum: str
    key: str
    notes: list[str] = field(default_factory=list)


def _checksum(real: np.ndarray, floor: np.ndarray | None) -> str:
    h = hashlib.sha256()
    for a in (real, floor if floor is not None else np.zeros((0, real.shape[1]))):
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    return h.hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def cache_path(space: feats.FeatureSpace, data_key: str, n_real: int, seed: int) -> tuple[Path, str]:
    """Where the real side of ``data_key`` at ``n_real``/``seed`` in ``space`` is cached, and
    the full key the file must hold."""
    key = f"gantrix-real-features-v{CACHE_VERSION}|{data_key}|{space.key}|n{n_real}|seed{seed}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return cache_dir() / "features" / f"{_slug(space.name)}-n{n_real}-s{seed}-{digest}.npz", key


def _load(path: Path, key: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The cached features; raises (ValueError, OSError, ...) when the file is not exactly
    what was written for ``key``."""
    with np.load(path, allow_pickle=False) as f:
        if str(f["key"]) != key:
            raise ValueError("it was written for other data, features, n or seed")
        real, floor, checksum = f["real"], f["floor"], str(f["checksum"])
    floor = floor if len(floor) else None
    if real.ndim != 2 or (floor is not None and floor.shape != real.shape):
        raise ValueError(f"its arrays have the wrong shapes {real.shape}")
    if _checksum(real, floor) != checksum:
        raise ValueError("its features do not match their checksum")
    return real, floor, checksum


def _save(path: Path, key: str, real: np.ndarray, floor: np.ndarray | None, checksum: str) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, key=np.array(key), checksum=np.array(checksum), real=real,
             floor=floor if floor is not None else np.zeros((0, real.shape[1])))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buffer.getvalue())


def real_side(data, source: str, space: feats.FeatureSpace, n_real: int, seed: int, *,
              floor: bool, report: Callable[[str], None] | None = None) -> RealSide:
    """The real side's features: from the cache when it holds them intact, else computed
    (in chunks) and cached atomically. ``floor``: also as many other real samples'."""
    start = time.perf_counter()
    data_key = feats.data_key(data, source)
    notes: list[str] = []
    path, key = (None, "") if data_key is None else cache_path(space, data_key, n_real, seed)
    if path is not None and path.exists():
        try:
            real, kept_floor, checksum = _load(path, key)
            if kept_floor is not None or not floor:
                return RealSide(real, kept_floor, True, time.perf_counter() - start, path,
                                checksum, key)
        except Exception as exc:  # truncated, foreign, tampered: computed again
            notes.append(f"the cached real features in {path} were damaged ({exc}); recomputed")
    if report is not None:
        report(f"computing the features of {n_real * (2 if floor else 1):,} real samples in "
               f"{space.label}, once" + (f" (kept in {path.parent})" if path else ""))
    parts = [space.extract(x) for x in feats.real_batches(data, n_real * (2 if floor else 1), seed)]
    both = np.concatenate(parts).astype(np.float64, copy=False)
    real, other = both[:n_real], (both[n_real:] if floor else None)
    checksum = _checksum(real, other)
    if path is not None:
        try:
            _save(path, key, real, other, checksum)
        except OSError as exc:
            notes.append(f"cannot cache the real features in {path.parent} "
                         f"({exc.strerror or exc}); they are computed again next time")
            path = None
    else:
        notes.append("the real side is not cached (the data has no stable name: pass it as "
                     "a built-in name, a folder or a file)")
    return RealSide(real, other, False, time.perf_counter() - start, path, checksum, key, notes)


def _floor_file(path: Path) -> Path:
    return path.with_name(path.stem + ".floor.json")


def floor_values(side: RealSide, metrics: Sequence[str], n_fake: int) -> dict[str, float]:
    """The floor (real vs real) of each metric, from the cache where it was computed
    before (keyed by the metric's parameters), else computed and added to it."""
    if side.floor is None:
        return {}
    saved: dict[str, Any] = {}
    if side.path is not None:
        try:
            kept = json.loads(_floor_file(side.path).read_text())
            if kept.get("key") == side.key and kept.get("checksum") == side.checksum:
                saved = dict(kept["values"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            saved = {}
    out: dict[str, float] = {}
    changed = False
    n = len(side.features)
    for metric in metrics:
        spec = _spec(metric, n, n)
        values = saved.get(spec)
        if not isinstance(values, dict) or not all(isinstance(v, (int, float)) for v in values.values()):
            values = compute(metric, side.features, side.floor)
            saved[spec] = values
            changed = True
        out.update({f"{k}_real": float(v) for k, v in values.items()})
    if changed and side.path is not None:
        try:
            write_atomic(_floor_file(side.path), json.dumps(
                {"key": side.key, "checksum": side.checksum, "values": saved}, indent=1).encode())
        except OSError:
            pass  # reported with the features
    return out


# --------------------------------------------------------------------------- the generated side


def chunk_seed(seed: int, i: int) -> int:
    """The latent seed of the ``i``-th chunk of generated samples (the first is ``seed``
    itself: up to `GENERATE_CHUNK` samples are exactly ``sample(n, seed=seed)``)."""
    return seed + i * 0x9E3779B1


def blocks(n: int) -> list[tuple[int, int]]:
    """The blocks of ``n`` generated samples, in order, as (chunk, block of the chunk): the
    samples come in chunks of `GENERATE_CHUNK`, each from a seed of its own (`chunk_seed`),
    which the sampler draws in blocks of `sampling.CHUNK`, each one call of the generator.
    A block is the unit of a process's share (`distributed.share`): it is generated, and
    featurized on its own, by the same computation in any process, so the blocks of N
    processes put together are the one-process samples (and features) to the bit."""
    out: list[tuple[int, int]] = []
    for i, lo in enumerate(range(0, n, GENERATE_CHUNK)):
        m = min(GENERATE_CHUNK, n - lo)
        out += [(i, j) for j in range(math.ceil(m / sampling.CHUNK))]
    return out


def sample_blocks(trainer: "Trainer", n: int, labels: torch.Tensor | None, seed: int,
                  share: range | None = None,
                  inputs: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """The rows of ``trainer.sample(n, labels, seed=seed)`` in the sampler's blocks
    ``share`` (all of them when None), with the generator ``inputs`` given (n rows each:
    `code_inputs`) in place of those the tricks draw. The tricks' draws (codes, labels)
    are those of the one-process sampler in every process (`distributed.alone`)."""
    if n < 1:
        raise GantrixError(f"the number of samples must be at least 1, got {n}")
    with distributed.alone():
        x = trainer._sampler.sample(n, labels, seed=seed, step=trainer.stepper.g_steps,
                                    blocks=share, inputs=inputs)
    return x * trainer.data.scale


def generated_features(trainer: "Trainer", n: int, seed: int, space: feats.FeatureSpace,
                       num_classes: int | None, share: range | None = None) -> np.ndarray:
    """Features of the generated samples in the blocks ``share`` of `blocks(n)` (all when
    None), made and featurized a block at a time. ``num_classes`` (a conditional model's)
    asks for every class in turn."""
    every = blocks(n)
    mine = [every[k] for k in (range(len(every)) if share is None else share)]
    parts = []
    for i, lo in enumerate(range(0, n, GENERATE_CHUNK)):
        kept = [j for chunk, j in mine if chunk == i]
        if not kept:
            continue
        m = min(GENERATE_CHUNK, n - lo)
        labels = None if not num_classes else torch.arange(lo, lo + m) % num_classes
        x = sample_blocks(trainer, m, labels, chunk_seed(seed, i), range(kept[0], kept[-1] + 1))
        parts += [space.extract(x[a:a + sampling.CHUNK]) for a in range(0, len(x), sampling.CHUNK)]
    if not parts:
        return np.zeros((0, 0))
    return np.concatenate(parts).astype(np.float64, copy=False)


def shared_samples(trainer: "Trainer", n: int, labels: torch.Tensor | None, seed: int,
                   shared: bool, inputs: dict[str, torch.Tensor] | None = None
                   ) -> torch.Tensor | None:
    """``trainer.sample(n, labels, seed=seed)`` (with the generator ``inputs`` given:
    `sample_blocks`); ``shared`` (every process of a distributed run calls it): each
    process generates its share of the blocks, gathered on rank 0, which gets all ``n``
    (the others None)."""
    if not shared:
        return sample_blocks(trainer, n, labels, seed, inputs=inputs)
    share = distributed.share(math.ceil(n / sampling.CHUNK))
    with distributed.writer_state(trainer.sampler):
        mine = (sample_blocks(trainer, n, labels, seed, share, inputs) if len(share)
                else torch.zeros(0))
    return distributed.gather_to_writer(mine)


# --------------------------------------------------------------------------- evaluating


def default_n(total: int | None) -> int:
    """`DEFAULT_N`, or half a smaller real set (so that a floor of as many other real
    samples exists)."""
    return DEFAULT_N if total is None else max(2, min(DEFAULT_N, total // 2))


def scored_step(trainer: "Trainer") -> dict[str, Any]:
    """The step whose generator is scored: the last, or best.pt's (``"checkpoint": "best"``)."""
    if trainer.best is not None:
        return {"step": trainer.best["step"], "checkpoint": "best"}
    return {"step": trainer.step}


#: added to an evaluation's seed for the draws of `code_inputs` (the continuous codes), so
#: that they are not the latents' own stream
CODE_SEED = 0x5EED


def code_inputs(trainer: "Trainer", n: int, seed: int
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | None:
    """The composition's answer to `gantrix_code_inputs` for ``n`` samples: each sample's
    categorical code value (cycling 0 … K − 1) and the generator inputs that give it, drawn
    from ``seed`` (the same in every process); None when no trick gives the generator a
    categorical code."""
    device = trainer.device
    rng = torch.Generator(device).manual_seed(seed + CODE_SEED)
    with torch.no_grad():
        answer = trainer.composition.hook.gantrix_code_inputs(n=n, device=device, generator=rng)
    if answer is None:
        return None
    codes, inputs = answer
    return codes.cpu().long(), dict(inputs)


def data_metrics(trainer: "Trainer", n: int | None, seed: int, *,
                 shared: bool = False) -> dict[str, Any] | None:
    """`gantrix.metrics`' figures for the run's data: modes on 2-D data and stacked-mnist,
    classes and Fréchet distance on digits and mnist (a conditional model asked for each
    class in turn), on ``n`` samples (by default the papers' count); only the step for a
    user's own data. On digits and mnist, where a trick gives the generator a categorical
    code (`code_inputs`), the samples cycle through its values and the result adds how
    well the code agrees with the predicted class (``code_mi``, ``code_accuracy``:
    `gantrix.metrics.code_agreement`); a conditional model's classes then cycle once per
    full cycle of the code, so that class and code are independent. ``shared``: every
    process of a distributed run calls it, each generates its share of the samples
    (`shared_samples`) and rank 0 scores them all and returns the result; the others
    return None."""
    result = scored_step(trainer)
    data = trainer.data
    if isinstance(data, Toy2D):
        samples = shared_samples(trainer, n or SAMPLES, None, seed, shared)
        if samples is not None:
            result.update(mode_metrics(samples, data.target))
    elif (scorer := metrics_for(trainer.settings.data)) is not None:
        score, default_n = scorer
        n = n or default_n
        coded = code_inputs(trainer, n, seed) if trainer.settings.data in CLASSIFIED else None
        codes, inputs = coded or (None, None)
        # digits, mnist: a conditional model is asked for each class in turn
        labels = None
        if data.num_classes == 10 and trainer.conditional:
            cycle = 1 if codes is None else int(codes.max()) + 1
            labels = torch.arange(n) // cycle % 10
        samples = shared_samples(trainer, n, labels, seed, shared, inputs)
        if samples is not None:
            given = {k: v for k, v in (("labels", labels), ("codes", codes)) if v is not None}
            result.update(score(samples, **given))
    return result if not shared or distributed.is_writer() else None


def evaluate(trainer: "Trainer", metrics: Iterable[str], *, n: int | None = None, seed: int = 0,
             features: str | None = None, inception_weights: Path | None = None,
             report: Callable[[str], None] | None = None,
             shared: bool = False) -> dict[str, Any] | None:
    """``metrics`` of ``trainer``'s generator against its data (see the module docstring);
    the result names its feature space (``features``) and holds the floor (``*_real``).

    ``shared``: every process of a distributed run calls it together; rank 0 settles the
    feature space first (a classifier trained and cached once, which the others load), each
    process generates and featurizes its share of the samples' blocks (`blocks`), and rank
    0 gathers the features, computes the real side and the metrics, and returns the result
    (the others return None). It is the one-process result to the bit: the same blocks,
    the same computation, put together in order, every process with rank 0's generator
    (`distributed.writer_state`: BatchNorm's statistics are each process's own in training)."""
    names = check_metrics(metrics)
    data, source = trainer.data, str(trainer.settings.data)
    if not feats.source_of(data, source).is_image:
        raise feats.not_images(data)
    total = feats.real_count(data)
    if n is None:
        n = default_n(total)
    if n < 2:
        raise GantrixError(f"the number of samples must be at least 2, got {n}")
    notes: list[str] = []
    n_real = n if total is None else min(n, total)
    if n_real < n:
        notes.append(f"--n {n:,} is more than the {total:,} real images: the real side is all "
                     f"{total:,} of them, the generated side {n:,}")
    with_floor = total is None or 2 * n_real <= total
    if not with_floor:
        notes.append(f"no real-vs-real floor: it needs two separate sets of {n_real:,} real "
                     f"images and there are {total:,} (--n {total // 2:,} or fewer gives one)")
    def space_of_data() -> tuple[feats.FeatureSpace, list[str]]:
        return feats.feature_space(data, source, features=features,
                                   inception_weights=inception_weights,
                                   device=trainer.device, report=report)

    space, found = distributed.writer_first(space_of_data) if shared else space_of_data()
    notes += found
    start = time.perf_counter()
    num_classes = data.num_classes if trainer.conditional else None
    if shared:
        share = distributed.share(len(blocks(n)))
        with distributed.writer_state(trainer.sampler):
            mine = generated_features(trainer, n, seed, space, num_classes, share)
        gathered = distributed.gather_to_writer(torch.from_numpy(mine))
        if gathered is None:
            return None
        fake = gathered.numpy()
    else:
        fake = generated_features(trainer, n, seed, space, num_classes)
    generated = time.perf_counter() - start
    side = real_side(data, source, space, n_real, seed, floor=with_floor, report=report)
    notes += side.notes
    start = time.perf_counter()
    result: dict[str, Any] = {**scored_step(trainer), "features": space.name,
                              "feature_space": {"name": space.name, "key": space.key,
                                                "description": space.description, **space.info},
                              "samples": n, "real_samples": n_real, "seed": seed}
    for metric in names:
        result.update(compute(metric, side.features, fake))
    if "kid" in names:
        result["kid_subset_size"] = _kid_size(n_real, n)
    result.update(floor_values(side, names, n))
    if side.floor is not None:
        result["floor_samples"] = len(side.floor)
    result["real_cached"] = side.cached
    result["seconds"] = {"real": side.seconds, "generated": generated,
                         "metrics": time.perf_counter() - start}
    result["notes"] = notes
    return result


# --------------------------------------------------------------------------- output


def _pm(mean: float, std: float, places: int) -> str:
    """mean ± std to ``places`` decimals: 5 for Inception's KID (about 0.001 to 0.1), 2 for
    the large values of a classifier's unnormalised features."""
    return f"{mean:.{places}f} ± {std:.{places}f}"


def _real(result: dict, text: str) -> str:
    return f"   (real vs real: {text})" if text else ""


def format_result(result: dict) -> list[str]:
    """Lines for people: a head naming the feature space and the sample counts, then one
    line per metric, each naming its space again, with the floor beside it."""
    label = f"{result['features']} features"
    head = (f"{result['samples']:,} generated vs {result['real_samples']:,} real samples "
            f"(seed {result['seed']}), in {label}: {result['feature_space']['description']}")
    if "floor_samples" in result:
        head += f"; the floor is real vs {result['floor_samples']:,} other real samples"
    lines = [head]
    if "fid" in result:
        floor = f"{result['fid_real']:.3f}" if "fid_real" in result else ""
        lines.append(f"  FID ({label}) {result['fid']:.3f}{_real(result, floor)}")
    if "kid" in result:
        places = 2 if abs(result["kid"]) >= 10 else 5
        floor = (_pm(result["kid_real"], result["kid_std_real"], places)
                 if "kid_real" in result else "")
        lines.append(f"  KID ({label}) {_pm(result['kid'], result['kid_std'], places)}"
                     f"{_real(result, floor)}")
    if "precision" in result:
        floor = (f"{result['precision_real']:.3f}, {result['recall_real']:.3f}"
                 if "precision_real" in result else "")
        lines.append(f"  precision, recall ({label}, k = {PR_K}) {result['precision']:.3f}, "
                     f"{result['recall']:.3f}{_real(result, floor)}")
    return lines


def save_result(run: Path, result: dict, name: str) -> Path:
    """``result`` as ``run/name`` (JSON), written atomically; a folder that cannot be
    written is a `GantrixError` saying so (the run folder is left as it was)."""
    path = Path(run) / name
    try:
        write_atomic(path, (json.dumps(result, indent=2) + "\n").encode())
    except OSError as exc:
        raise GantrixError(f"could not write {path} ({exc.strerror or exc}); the results "
                           f"above are not saved") from None
    return path
