"""Fingerprints of the weights every built-in recipe trains in a few steps on ``ring8``
(2-D points) and ``digits`` (8×8 images), recorded before a refactor and checked after it
(`test_golden_weights.py`): a change that is meant to keep behaviour must keep these bits.

    python tests/train/golden_weights.py     # rewrite golden_weights.json (on purpose only)

One intra-op thread, so that the fingerprints do not depend on the machine's core count.
A recipe that cannot train on a data set (a conditional one on unlabelled points) is
recorded as the error's class name.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

GOLDEN = Path(__file__).with_name("golden_weights.json")
#: data set -> steps trained; a few steps exercise every phase (critic, generator, terms).
CASES = {"ring8": 6, "digits": 3}


def fingerprint(trainer) -> str:
    """sha256 over the generator's and the critic's parameters and buffers, in order."""
    digest = hashlib.sha256()
    for model in (trainer.models.generator, trainer.models.discriminator):
        for name, tensor in model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def train_one(recipe: str, data: str, steps: int) -> str:
    import gantrix

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = gantrix.Trainer(gantrix.Recipe(recipe=recipe), data, steps=steps,
                                  batch_size=32, seed=3, progress=False)
        trainer.fit()
        return fingerprint(trainer)
    except gantrix.GantrixError as exc:
        return f"refused: {type(exc).__name__}"
    finally:
        torch.set_num_threads(threads)


def record() -> dict[str, str]:
    import gantrix

    out = {}
    for recipe in sorted(gantrix.catalogue().recipes):
        for data, steps in CASES.items():
            out[f"{recipe}@{data}"] = train_one(recipe, data, steps)
    return out


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(record(), indent=1, sort_keys=True) + "\n")
    print(GOLDEN.read_text())
