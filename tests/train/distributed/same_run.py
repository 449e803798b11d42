"""Train each of a list of compositions for a few steps, in whatever processes launched
this script (``python -m torch.distributed.run --nproc-per-node N same_run.py OUT``, or
plain ``python same_run.py OUT`` for one process); each process saves its final models
to OUT/rank<r>.pt. The distributed tests compare those of N processes with one process's.
"""
from __future__ import annotations

import sys

import torch

from gantrix import distributed
from gantrix.trainer import Trainer

#: (name, tricks, data, steps, batch[, Trainer keywords]).
COMPOSITIONS = [
    ("wgan-gp", "wgan-gp", "ring8", 4, 32),
    ("r1", ["nonsaturating", "r1"], "ring8", 6, 32),
    ("rasgan", "rasgan", "ring8", 6, 32),
    ("wgan-clip-rmsprop", "wgan", "ring8", 4, 32),
    ("ema", ["nonsaturating", "ema:decay=0.9"], "ring8", 6, 32),
    ("spectral-norm", ["hinge", "spectral-norm"], "ring8", 6, 32),
    ("cgan", ["nonsaturating", "cgan"], "digits", 3, 16),
    ("infogan", ["nonsaturating", "infogan"], "ring8", 6, 32),
    ("feature-matching", ["nonsaturating", "feature-matching"], "ring8", 6, 32),
    ("unrolled", ["nonsaturating", "unrolled:k=2"], "ring8", 3, 32),
    ("instance-noise", ["nonsaturating", "instance-noise"], "ring8", 6, 32),
    ("dragan", ["nonsaturating", "dragan"], "ring8", 6, 32),
    ("wgan-gp-bf16", "wgan-gp", "ring8", 4, 32, {"precision": "bf16"}),
    ("wgan-gp-fp16", "wgan-gp", "ring8", 4, 32, {"precision": "fp16"}),
]


def state(trainer: Trainer) -> dict:
    models = {"generator": trainer.models.generator, "discriminator": trainer.models.discriminator,
              **trainer.models.extra}
    return {role: {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}
            for role, m in models.items() if isinstance(m, torch.nn.Module)}


def main(out: str, names: list[str]) -> None:
    distributed.init_from_environment("cpu")
    results = {}
    for name, tricks, data, steps, batch, *keywords in COMPOSITIONS:
        if names and name not in names:
            continue
        trainer = Trainer(tricks, data, steps=steps, batch_size=batch, seed=3, device="cpu",
                          progress=False, log_every=1, sample_every=0, checkpoint_every=0,
                          **(keywords[0] if keywords else {}))
        start = state(trainer)
        trainer.fit()
        results[name] = {"start": start, "state": state(trainer), "log": trainer.history[-1],
                         "processes": trainer.processes}
    torch.save(results, f"{out}/rank{distributed.rank()}.pt")
    distributed.exit_now(0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
