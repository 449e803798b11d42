"""Evaluation during training in whatever processes launched this script (``python -m
torch.distributed.run --nproc-per-node N eval_share.py OUT``): each run of `RUNS` is trained
with ``eval_every`` into OUT/<name> and again without; each process saves what the test
compares (the weights of both, its evaluation seconds and best score, and what the
collectives it uses gave) to OUT/rank<r>.pt.

Images are compared in `random_space` (a seeded random convolution), not the digits
classifier, which would be trained first: the same FID code path, in seconds.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from gantrix import GantrixError, distributed
from gantrix import features as feats
from gantrix.trainer import Trainer

#: (name, tricks, data): the default metric of each (FID, from the gathered features; the
#: share of high-quality samples on 2-D points, from the gathered samples).
RUNS = [("digits", "dcgan", "digits"), ("ring8", "nonsaturating", "ring8")]
#: the evaluation's samples: 3 blocks (1,000 from one seed in 2, 200 from the next in 1).
EVAL_N = 1200
SETTINGS = dict(steps=4, batch_size=16, seed=3, device="cpu", progress=False, log_every=2,
                sample_every=0, checkpoint_every=0)


def random_space(data, source, **_) -> tuple[feats.FeatureSpace, list[str]]:
    """`gantrix.features.feature_space` for 8×8 images, in the features of a small
    convolution with seeded random weights (the global random state left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(288, 16))
    extract = feats._through(net, lambda x: x.reshape(-1, 1, 8, 8))
    return feats.FeatureSpace("random convolution", "random-convolution-test-v1", extract,
                              "a seeded random convolution (tests)", {"dim": 16}), []


def weights(trainer: Trainer) -> dict:
    return {role: {k: v.detach().clone() for k, v in model.state_dict().items()}
            for role, model in (("generator", trainer.models.generator),
                                ("discriminator", trainer.models.discriminator))}


def collectives() -> dict:
    """`gather_to_writer` with rows on one process only, then on both in unequal numbers;
    a draw inside `alone`; `writer_first` where rank 0's fails."""
    r = distributed.rank()
    out = {"share": distributed.share(3)}
    only_one = torch.arange(6.0).reshape(2, 3) if r == 1 else torch.zeros(0)
    out["only_one"] = distributed.gather_to_writer(only_one)
    out["unequal"] = distributed.gather_to_writer(torch.full((r + 1, 2), r, dtype=torch.int64))
    with torch.random.fork_rng(), distributed.alone():
        torch.manual_seed(5)
        out["alone"] = (distributed.active(), distributed.randint(0, 100, 4))
    out["active"] = distributed.active()

    def fails_on_rank0():
        if distributed.is_writer():
            raise GantrixError("rank 0's own message")
        return "made"

    try:
        out["writer_first"] = distributed.writer_first(fails_on_rank0)
    except GantrixError as exc:
        out["writer_first"] = f"raised: {exc}"
    return out


def main(out: str) -> None:
    distributed.init_from_environment("cpu")
    feats.feature_space = random_space
    results = {"collectives": collectives()}
    for name, tricks, data in RUNS:
        evaluated = Trainer(tricks, data, out=Path(out) / name, eval_every=2, eval_n=EVAL_N,
                            **SETTINGS).fit()
        plain = Trainer(tricks, data, **SETTINGS).fit()
        results[name] = {"evaluated": weights(evaluated), "plain": weights(plain),
                         "seconds": evaluated.eval_seconds, "best": evaluated.evaluation.best}
    torch.save(results, f"{out}/rank{distributed.rank()}.pt")
    distributed.exit_now(0)


if __name__ == "__main__":
    main(sys.argv[1])
