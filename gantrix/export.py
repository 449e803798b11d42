"""A trained generator leaves gantrix: ``gantrix export`` and `load_generator`.

    gantrix export runs/digits --out digits.safetensors          # weights and metadata
    g = gantrix.load_generator("digits.safetensors")              # no trick plugin needed
    x = g.sample(64, labels=[3], seed=0)                          # what gantrix sample gives

Three formats, each with the run's metadata (`metadata`: latent size and prior, labels and
their names, output shape, value range and the map to pixels, tricks, gantrix's version):

- ``safetensors``: the weights, and the architecture as plain data (`gantrix.module_graph`:
  torch.nn layers and the torch calls between them) in the file's metadata.
  `load_generator` rebuilds the module from it with gantrix installed but no trick plugin,
  and its ``sample`` draws the latents (and labels) exactly as ``gantrix sample`` does for
  the same seed, so the samples are equal.
- ``torchscript``: ``torch.jit.load(FILE)`` with nothing of gantrix installed; one call maps
  a latent batch (and labels) to images in [0, 1] or to points in the data's units. The
  metadata is the archive's extra file ``gantrix.json``.
- ``onnx`` (the ``onnx`` extra): the same call as an ONNX graph (inputs ``z`` and
  ``labels``, output ``x``), the metadata in the model's ``metadata_props``.

What a format can hold is decided through the hook contract, never by a trick's name. The
module itself (built, transformed, averaged by tricks: `gantrix_build_model`,
`gantrix_transform_model`, the published ``generator_ema``) is traced, so any trick that
only shapes it exports. What a trick does in Python at sampling time is checked by calling
its hooks on probes: a `gantrix_latent` answer must be a prior the metadata can name (N(0, I),
or U(−b, b) per coordinate: its draws must equal ``randn``'s, or ``(2·rand − 1)·b``'s, from
the same generator), and a `gantrix_condition` may only route class labels to the generator
(``generator_inputs == {"labels": ...}``: the labels given, else uniform ones from the
seeded stream). Anything else (codes drawn for the generator, another prior) is Python-side
sampling logic no format holds: a `GantrixError` naming the trick and the hook. A module
fx cannot describe is an error for safetensors that names the formats that can hold it.
"""
from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import nn

from . import __version__, module_graph, safetensors_io
from .atomic import write_atomic
from .errors import GantrixError
from .hookspecs import call_plugin
from .sampling import CHUNK, check_labels

if TYPE_CHECKING:
    from .trainer import Trainer

FORMATS = ("safetensors", "torchscript", "onnx")
#: what each format's file is called
SUFFIXES = {"safetensors": ".safetensors", "torchscript": ".pt", "onnx": ".onnx"}
#: the metadata key (safetensors), extra file (TorchScript) and property (ONNX)
METADATA_KEY = "gantrix"
EXTRA_FILE = "gantrix.json"
#: rows of the probes that check a trick's sampling hooks
PROBE = 64


def export(run: str | Path, out: str | Path, *, format: str = "safetensors",
           checkpoint: str = "last", ema: bool = True, force: bool = False,
           device: str | None = "cpu") -> dict[str, Any]:
    """Write ``run``'s generator to ``out`` in ``format`` (the averaged one when the run
    has it and ``ema``); returns the metadata written. `GantrixError` for an unknown
    format, an existing ``out`` without ``force``, a run without a checkpoint, or a
    generator the format cannot hold."""
    if format not in FORMATS:
        raise GantrixError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out).expanduser()
    if out.suffix.lower() != SUFFIXES[format]:
        raise GantrixError(f"{out}: a {format} export is named *{SUFFIXES[format]} (the "
                           f"suffix tells load_generator, read_metadata and other tools what "
                           f"the file holds); write {out.with_suffix(SUFFIXES[format]).name}")
    if out.exists() and not force:
        raise GantrixError(f"{out} exists; choose another --out, or pass --force to replace it")
    if not out.parent.is_dir():
        raise GantrixError(f"the folder of --out does not exist: {out.parent}")
    from .trainer import Trainer

    trainer = Trainer.load(run, device=device, checkpoint=checkpoint)
    return export_trainer(trainer, out, format=format, ema=ema)


def export_trainer(trainer: "Trainer", out: Path, *, format: str = "safetensors",
                   ema: bool = True) -> dict[str, Any]:
    """`export` for a trainer (loaded from a run, or trained in memory)."""
    if format == "onnx":
        _require_onnx()
    averaged = trainer.models.extra.get("generator_ema")
    generator = (averaged if ema and averaged is not None else trainer.models.generator)
    meta = metadata(trainer, averaged=generator is averaged)
    generator = _plain_copy(generator)
    if format == "safetensors":
        try:
            architecture, tensors = module_graph.describe(generator, meta["conditional"])
        except module_graph.NotDescribable as exc:
            raise GantrixError(
                f"safetensors cannot hold this generator ({type(generator).__name__}): {exc}; "
                f"the formats that can hold it: torchscript, onnx (they trace it on an example "
                f"batch: gantrix export --format torchscript)") from None
        _check_rebuilt(generator, architecture, tensors, meta)
        safetensors_io.save(out, tensors, {METADATA_KEY: json.dumps(
            {**meta, "architecture": architecture})})
    else:
        traced = _traced(_Pixels(generator, meta), meta)
        if format == "torchscript":
            buffer = io.BytesIO()
            with _jit_quiet():
                torch.jit.save(traced, buffer, _extra_files={EXTRA_FILE: json.dumps(meta)})
            write_atomic(out, buffer.getvalue())
        else:
            _write_onnx(_Pixels(generator, meta), out, meta)
    return meta


def metadata(trainer: "Trainer", *, averaged: bool) -> dict[str, Any]:
    """What an exported generator says about itself; checks that its sampling can leave
    gantrix (`sampling_contract`)."""
    data = trainer.data
    prior, conditional = sampling_contract(trainer)
    image = data.is_image
    return {
        "gantrix_version": __version__,
        "latent_dim": trainer.spec.latent_dim,
        "prior": prior,
        "conditional": conditional,
        "num_classes": data.num_classes if conditional else None,
        "class_names": list(data.class_names or []) if conditional else None,
        "shape": list(data.shape),
        "kind": "image" if image else "points",
        "range": [-1.0, 1.0] if image else None,
        "scale": float(data.scale),
        "to_pixels": ("x in [-1, 1] (channels first): pixel = round((clamp(x, -1, 1) + 1) * "
                      "127.5); TorchScript and ONNX give (x + 1) / 2 in [0, 1]") if image else
                     ("points in the data's units (the generator's output times scale)"),
        "tricks": trainer.composition.specs(),
        "data": data.name,
        "step": trainer.best["step"] if trainer.best is not None else trainer.step,
        "checkpoint": "best" if trainer.best is not None else "last",
        "averaged": averaged,
        "chunk": CHUNK,
    }


# --------------------------------------------------------------------------- the contract


def sampling_contract(trainer: "Trainer") -> tuple[dict[str, Any], bool]:
    """The prior the run's latents are drawn from and whether the generator takes labels,
    recognised from the tricks' hooks (see the module docstring); a `GantrixError` naming
    the trick whose sampling logic no export format holds."""
    return _prior(trainer), _routes_labels(trainer)


def _hooked(trainer: "Trainer", hook: str) -> list:
    return [t for t in trainer.composition.tricks if callable(getattr(t, hook, None))]


def _no_format(trick, hook: str, what: str) -> GantrixError:
    return GantrixError(
        f"{trick.name} ({trick.plugin or 'plugin'}) {what} in Python at sampling time (its "
        f"{hook}); no export format ({', '.join(FORMATS)}) holds that logic: sample the run "
        f"with gantrix sample or gantrix.Trainer.load instead")


def _prior(trainer: "Trainer") -> dict[str, Any]:
    dim = trainer.spec.latent_dim
    tricks = _hooked(trainer, "gantrix_latent")
    z = trainer.composition.hook.gantrix_latent(
        n=PROBE, dim=dim, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
    if z is None:
        return {"name": "normal", "mean": 0.0, "std": 1.0}
    u = 2.0 * torch.rand(PROBE, dim, generator=torch.Generator().manual_seed(0)) - 1.0
    bound = round(float((z.double() / u.double()).median()), 6)
    if bound > 0 and torch.equal(z.cpu(), u * bound):
        return {"name": "uniform", "bound": bound}
    if torch.equal(z.cpu(), torch.randn(PROBE, dim, generator=torch.Generator().manual_seed(0))):
        return {"name": "normal", "mean": 0.0, "std": 1.0}
    raise _no_format(tricks[0] if tricks else trainer.composition.tricks[0], "gantrix_latent",
                     "draws the latents from a prior other than N(0, I) or U(-b, b)")


def _routes_labels(trainer: "Trainer") -> bool:
    """Whether the generator takes labels; every `gantrix_condition` checked to route only
    the labels (given ones kept, else uniform ones from the seeded global stream)."""
    sampler, pm = trainer._sampler, trainer.composition.pm
    k = trainer.data.num_classes
    conditional = False
    for trick in _hooked(trainer, "gantrix_condition"):
        for given in (True, False):
            if given and not k:
                continue
            batch = sampler.batch(torch.zeros(PROBE, trainer.spec.latent_dim,
                                              device=trainer.device), trainer.stepper.g_steps)
            asked = torch.arange(PROBE, device=trainer.device) % k if given and k else None
            batch.fake_labels = asked
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                expected = torch.randint(0, k, (PROBE,), device=trainer.device) if k else None
                torch.manual_seed(0)
                call_plugin(pm, "gantrix_condition", trick, batch=batch)
            inputs = batch.generator_inputs
            others = sorted(set(inputs) - {"labels"})
            if others:
                raise _no_format(trick, "gantrix_condition",
                                 f"draws the generator's {', '.join(others)}")
            if "labels" not in inputs:
                continue
            want = asked if given else expected
            if want is None or not torch.equal(inputs["labels"].long().cpu(), want.long().cpu()):
                raise _no_format(trick, "gantrix_condition",
                                 "chooses the generator's class labels another way than "
                                 "keeping the given ones or drawing them uniformly")
            conditional = True
    return conditional


# --------------------------------------------------------------------------- modules


def _plain_copy(generator: nn.Module) -> nn.Module:
    """A copy of ``generator`` in eval mode with its weights' parametrizations (spectral
    normalisation) folded into plain weights: what a sample in eval mode computes."""
    import copy

    from torch.nn.utils import parametrize

    g = copy.deepcopy(generator).cpu().eval()
    for module in list(g.modules()):
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    for p in g.parameters():
        p.requires_grad_(False)
    return g


def _check_rebuilt(generator: nn.Module, architecture: dict, tensors: dict, meta: dict) -> None:
    """The module rebuilt from the description computes what ``generator`` computes."""
    rebuilt = module_graph.rebuild(json.loads(json.dumps(architecture)), tensors)
    z, labels = _example(meta)
    kwargs = {"labels": labels} if labels is not None else {}
    with torch.no_grad():
        if not torch.equal(generator(z, **kwargs), rebuilt(z, **kwargs)):
            raise GantrixError(f"safetensors cannot hold this generator "
                               f"({type(generator).__name__}): rebuilt from its description, it "
                               f"computes other values; the formats that can: torchscript, onnx")


def _example(meta: dict, n: int = 4) -> tuple[torch.Tensor, torch.Tensor | None]:
    z = torch.randn(n, meta["latent_dim"], generator=torch.Generator().manual_seed(0))
    labels = torch.arange(n) % meta["num_classes"] if meta["conditional"] else None
    return z, labels


class _Pixels(nn.Module):
    """The exported call: latents (and labels) to images in [0, 1], or points in the data's
    units."""

    def __init__(self, generator: nn.Module, meta: dict):
        super().__init__()
        self.generator = generator
        self.image = meta["kind"] == "image"
        self.scale = float(meta["scale"])
        self.conditional = meta["conditional"]

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = (self.generator(z, labels=labels) if self.conditional else self.generator(z)).float()
        return (x.clamp(-1, 1) + 1) / 2 if self.image else x * self.scale


def _traced(module: _Pixels, meta: dict):
    """``module`` traced by TorchScript on an example batch, checked on a batch of another
    size (a trace keeps one path through Python: one that depended on the batch is an
    error, not a file that computes something else)."""
    z, labels = _example(meta)
    args = (z, labels) if labels is not None else (z,)
    other = _example(meta, n=len(z) + 3)
    other = other if labels is not None else other[:1]
    try:
        with _jit_quiet():
            traced = torch.jit.trace(module, args, check_trace=False)
        with torch.no_grad():
            same = torch.allclose(traced(*other), module(*other), rtol=1e-5, atol=1e-6)
    except Exception as exc:  # tracing raises many kinds
        raise GantrixError(f"TorchScript cannot trace this generator "
                           f"({type(module.generator).__name__}): {exc}") from None
    if not same:
        raise GantrixError(f"TorchScript's trace of this generator "
                           f"({type(module.generator).__name__}) computes other values on "
                           f"another batch (its forward takes a path the trace cannot keep)")
    return traced


@contextlib.contextmanager
def _jit_quiet():
    """Torch's deprecation notes on TorchScript silenced (the user asked for the format: it
    is what loads with torch alone), and its tracer's warnings (`_traced` checks the trace on
    another batch instead)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


def _require_onnx():
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise GantrixError("the onnx format needs the onnx package: pip install 'gantrix[onnx]'"
                           "; the formats without it: safetensors, torchscript") from None


def _write_onnx(module: _Pixels, out: Path, meta: dict) -> None:
    import onnx

    z, labels = _example(meta)
    args = (z, labels) if labels is not None else (z,)
    names = ["z", "labels"][:len(args)]
    buffer = io.BytesIO()
    try:
        with _jit_quiet():
            torch.onnx.export(module, args, buffer, input_names=names, output_names=["x"],
                              dynamic_axes={name: {0: "n"} for name in [*names, "x"]},
                              dynamo=False)  # the TorchScript-based exporter: no onnxscript
    except Exception as exc:  # the exporter raises many kinds
        raise GantrixError(f"ONNX cannot hold this generator ({type(module.generator).__name__}"
                           f"): {exc}; export it as safetensors or torchscript instead") from None
    model = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(meta)})
    write_atomic(out, model.SerializeToString())


# --------------------------------------------------------------------------- loading


class ExportedGenerator(nn.Module):
    """A generator loaded from a safetensors export (`load_generator`): ``g(z, labels)``
    gives samples in the data's units, ``g.sample(n, labels, seed)`` what ``gantrix sample``
    gives for the seed, ``g.metadata`` what the export recorded."""

    def __init__(self, module: nn.Module, meta: dict):
        super().__init__()
        self.module = module
        self.metadata = meta

    @property
    def conditional(self) -> bool:
        """Whether the generator takes class labels."""
        return bool(self.metadata["conditional"])

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.conditional:
            if labels is None:
                raise GantrixError("this generator is conditional: pass labels (class indices)")
            x = self.module(z, labels.long())
        else:
            x = self.module(z)
        return x.float() * self.metadata["scale"]

    def latents(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` latents from the prior the generator was trained on, drawn from ``generator``."""
        prior, dim = self.metadata["prior"], self.metadata["latent_dim"]
        if prior["name"] == "uniform":
            return (2.0 * torch.rand(n, dim, generator=generator) - 1.0) * prior["bound"]
        return torch.randn(n, dim, generator=generator)

    def sample(self, n: int, labels: Sequence[int | str] | torch.Tensor | None = None, *,
               seed: int = 0) -> torch.Tensor:
        """``n`` samples for ``seed``, equal to ``gantrix sample``'s (the latents drawn in
        the same blocks from the same streams; labels, when not given, uniform from the
        global stream seeded with ``seed``, which is restored afterwards)."""
        if n < 1:
            raise GantrixError(f"the number of samples must be at least 1, got {n}")
        meta = self.metadata
        if labels is not None:
            if not self.conditional:
                raise GantrixError("this generator is not conditional; sample without labels")
            labels = check_labels(labels, n, meta["num_classes"], meta["data"],
                                  meta["class_names"])
        rng = torch.Generator().manual_seed(seed)
        chunks = []
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for lo in range(0, n, meta["chunk"]):
                m = min(meta["chunk"], n - lo)
                z = self.latents(m, rng)
                y = None
                if self.conditional:
                    y = (labels[lo:lo + m] if labels is not None
                         else torch.randint(0, meta["num_classes"], (m,)))
                chunks.append(self(z, y))
        return torch.cat(chunks)


def load_generator(path: str | Path) -> ExportedGenerator:
    """The generator of a safetensors export (``gantrix export``), rebuilt without any
    trick plugin, in eval mode on the CPU."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise GantrixError(f"no exported generator at {path}")
    if path.suffix.lower() != ".safetensors":
        raise GantrixError(f"{path} is not a safetensors export; load a TorchScript export "
                           f"with torch.jit.load and an ONNX one with onnxruntime")
    tensors, raw = safetensors_io.load(path)
    try:
        meta = json.loads(raw[METADATA_KEY])
        architecture = meta.pop("architecture")
        module = module_graph.rebuild(architecture, tensors)
    except (KeyError, ValueError, TypeError, RuntimeError, module_graph.NotDescribable) as exc:
        raise GantrixError(f"{path} is not a generator gantrix exported ({exc}); export it "
                           f"again with gantrix export") from None
    return ExportedGenerator(module, meta).eval()


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of an export in any of the formats (ONNX needs the onnx package)."""
    path = Path(path).expanduser()
    if path.suffix.lower() == ".safetensors":
        meta = json.loads(safetensors_io.load(path)[1][METADATA_KEY])
        meta.pop("architecture", None)
        return meta
    if path.suffix.lower() == ".onnx":
        _require_onnx()
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        return json.loads(props[METADATA_KEY])
    files = {EXTRA_FILE: ""}
    with _jit_quiet():
        torch.jit.load(str(path), _extra_files=files)
    return json.loads(files[EXTRA_FILE])
