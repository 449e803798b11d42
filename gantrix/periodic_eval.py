"""Evaluation during training (``--eval-every N``): the data's metric every N steps, on one
fixed set of latent vectors, and the generator that scored best kept in ``best.pt``.

The samples come from one seed (`EVAL_SEED`) drawn the same way at every evaluation, so two
evaluations differ only by what the generator learned; the seed is the run's, so a resumed
run evaluates the same latent set. Evaluation forks every random stream it could touch: a
run with ``--eval-every`` trains exactly the weights of one without.

Under ``--nproc N`` the processes evaluate together: the latent set's blocks are split among
them (`gantrix.distributed.share`), each generates its own and, for FID, KID and
precision/recall, featurizes them; rank 0 gathers the features (or, for `gantrix.metrics`'
scores, the samples: `gantrix.distributed.gather_to_writer`), computes the metric, which
is the one-process evaluation's to the bit (the same samples and features, in the same
order), and writes the row and ``best.pt``.

``best.pt`` holds the generator's weights and those of every module a trick published beside
it (an averaged generator: ``generator_ema``), the step and the score, written atomically;
``gantrix eval RUN --checkpoint best`` scores it. Whether higher or lower is better is a
property of the metric (`BETTER`).
"""
from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import torch

from . import distributed, evaluation
from .checkpoint import load_checkpoint, save_checkpoint
from .errors import GantrixError

if TYPE_CHECKING:
    from .compose import Composition
    from .settings import Settings
    from .trainer import Trainer

BEST = "best.pt"
#: the seed of the evaluation's latent set (and of any draw a conditioning trick makes).
EVAL_SEED = 20_260_612
#: +1 where a higher score is better, -1 where a lower one is.
BETTER = {"fid": -1, "kid": -1, "kl": -1, "fd": -1,
          "precision": 1, "recall": 1, "modes": 1, "high_quality": 1, "classes": 1,
          "confident": 1, "asked_class": 1, "code_mi": 1, "code_accuracy": 1}
#: metrics computed in a feature space (`Trainer.evaluate`'s ``metrics``), by the name
#: `Trainer.evaluate` takes for them.
FEATURE_METRICS = {"fid": "fid", "kid": "kid", "precision": "pr", "recall": "pr"}
#: what `gantrix.metrics.mode_metrics` measures on 2-D points.
POINT_METRICS = ("high_quality", "modes", "kl")
#: the samples scored at each evaluation when ``eval_n`` is not set.
DEFAULT_N = 2500


def default_metric(is_image: bool) -> str:
    """The metric ``--eval-every`` uses unless told: FID for images (in the data's default
    features), the share of high-quality samples for 2-D points."""
    return "fid" if is_image else "high_quality"


def check_metric(name: str, is_image: bool) -> None:
    """``name`` is a metric `PeriodicEvaluation` can rank runs by, for this kind of data."""
    if name not in BETTER:
        import difflib

        close = difflib.get_close_matches(name, BETTER, n=2)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise GantrixError(f"--eval-metric {name!r} is not a metric gantrix can rank by{hint} "
                           f"(known: {', '.join(BETTER)})")
    if name in FEATURE_METRICS and not is_image:
        raise GantrixError(f"--eval-metric {name} needs images (it is computed in image "
                           f"features); on 2-D points use {', '.join(POINT_METRICS)}")
    if not is_image and name not in POINT_METRICS:
        raise GantrixError(f"--eval-metric {name} is not measured on 2-D points; use "
                           f"{', '.join(POINT_METRICS)}")


def gives_code(composition: "Composition") -> bool:
    """Whether ``composition`` gives its generator a categorical latent code (a trick
    answers `gantrix_code_inputs`), which the code metrics measure."""
    answer = composition.hook.gantrix_code_inputs(n=1, device=torch.device("cpu"),
                                                  generator=torch.Generator().manual_seed(0))
    return answer is not None


def check_code_metric(option: str, metric: str, data: str,
                      composition: "Composition | None") -> None:
    """A code metric (``code_mi``, ``code_accuracy``: how well the generator's categorical
    code agrees with the class a built-in classifier sees) given as ``option`` needs data
    that classifier labels and, given ``composition``, a generator with such a code."""
    from .metrics import CLASSIFIED, CODE_METRICS

    if metric not in CODE_METRICS:
        return
    if data not in CLASSIFIED:
        raise GantrixError(f"{option} {metric} measures how well the generator's categorical "
                           f"code agrees with the digit a built-in classifier sees, on "
                           f"{' or '.join(CLASSIFIED)}; {data} has no such classifier: choose "
                           f"another {option}")
    if composition is not None and not gives_code(composition):
        from .registry import tricks

        coded = sorted(name for name, cls in tricks().items()
                       if hasattr(cls, "gantrix_code_inputs"))
        hint = f" (one that does: {', '.join(coded)})" if coded else ""
        raise GantrixError(f"{option} {metric} measures the generator's categorical latent "
                           f"code, and no trick of the composition gives it one; add a trick "
                           f"that does{hint}, or choose another {option}")


class PeriodicEvaluation:
    """The evaluations of one run: when they are due, the best score so far, ``best.pt``."""

    @classmethod
    def for_run(cls, settings: "Settings", is_image: bool,
                composition: "Composition | None" = None) -> "PeriodicEvaluation | None":
        """The evaluation a run's settings ask for (``eval_every``, ``eval_metric``,
        ``eval_n``), its metric checked (a code metric against the run's data and
        ``composition``); None without ``eval_every``."""
        if not settings.eval_every:
            return None
        metric = settings.eval_metric or default_metric(is_image)
        check_metric(metric, is_image)
        check_code_metric("--eval-metric", metric, settings.data, composition)
        return cls(metric, settings.eval_n)

    def __init__(self, metric: str, n: int | None):
        self.metric = metric
        self.n = n or DEFAULT_N
        self.best: float | None = None
        self.best_step: int | None = None
        #: seconds spent evaluating (for the share of the run's time): the evaluations'
        #: wall time (about the same in every process of a distributed run: they evaluate
        #: together)
        self.seconds = 0.0

    def score(self, trainer: "Trainer") -> dict[str, Any] | None:
        """Evaluate ``trainer``'s generator now; returns the metrics row (``eval/`` keys) and
        keeps ``best.pt`` when the score improved. Every random stream is left as it was.

        In a distributed run every process calls it at the same step: each generates and
        featurizes its share of the latent set (`gantrix.evaluation`'s ``shared``), rank 0
        computes the metric from all of them (the one-process value, to the bit), tells
        the others the score (so that every process keeps the same best, and stops on the
        same error), writes ``best.pt`` and gets the row; the others get None."""
        start = time.perf_counter()
        devices = [trainer.device] if trainer.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            feature_metric = FEATURE_METRICS.get(self.metric)
            if feature_metric:
                result = evaluation.evaluate(trainer, [feature_metric], n=self.n,
                                             seed=EVAL_SEED, shared=True)
            else:
                result = evaluation.data_metrics(trainer, self.n, EVAL_SEED, shared=True)
        value = distributed.broadcast(None if result is None else result.get(self.metric))
        if value is None or not math.isfinite(float(value)):
            raise GantrixError(f"the evaluation gave no finite {self.metric} at step "
                               f"{trainer.step} (got {value!r}); choose another --eval-metric")
        value = float(value)
        improved = self.best is None or BETTER[self.metric] * (value - self.best) > 0
        if improved:
            self.best, self.best_step = value, trainer.step
            if trainer.out is not None and trainer.writer:
                save_checkpoint(trainer.out / BEST, best_state(trainer, self.metric, value))
        seconds = time.perf_counter() - start
        self.seconds += seconds
        if result is None:
            return None
        row = {f"eval/{k}": v for k, v in result.items()
               if isinstance(v, (int, float)) and k != "step"}
        row.update({"step": trainer.step, f"eval/{self.metric}": value,
                    "eval/best": self.best, "eval/seconds": seconds})
        if "features" in result:
            row["eval/features"] = result["features"]
        return row

    def state_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "n": self.n, "best": self.best,
                "best_step": self.best_step, "seconds": self.seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The best score so far of a resumed run (a run evaluated by another metric, or
        never, starts afresh)."""
        if state.get("metric") == self.metric and state.get("n") == self.n:
            self.best, self.best_step = state.get("best"), state.get("best_step")
            self.seconds = float(state.get("seconds", 0.0))


def best_state(trainer: "Trainer", metric: str, value: float) -> dict[str, Any]:
    """What ``best.pt`` holds: the generator's weights, the published modules' beside it, the
    step and the score."""
    extra = {name: module.state_dict() for name, module in trainer.models.extra.items()
             if isinstance(module, torch.nn.Module)}
    return {"step": trainer.step, "metric": metric, "value": value,
            "generator": trainer.models.generator.state_dict(), "extra": extra}


def load_best(trainer: "Trainer") -> dict[str, Any]:
    """Put ``best.pt``'s weights into ``trainer``'s generator (and published modules);
    returns its step, metric and score."""
    if trainer.out is None or not (trainer.out / BEST).exists():
        raise GantrixError(f"{trainer.out} has no {BEST}: it is written by a run trained with "
                           f"--eval-every N")
    state = load_checkpoint(trainer.out / BEST)
    try:
        trainer.models.generator.load_state_dict(state["generator"])
        for name, weights in state.get("extra", {}).items():
            trainer.models.extra[name].load_state_dict(weights)
        return {"step": int(state["step"]), "metric": str(state["metric"]),
                "value": float(state["value"])}
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise GantrixError(f"{trainer.out / BEST} does not fit this run's generator: "
                           f"{str(exc).strip()}") from None
