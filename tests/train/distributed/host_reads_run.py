"""Count the host reads of a few training steps of each of `CASES` in whatever processes
launched this script (``python -m torch.distributed.run --nproc-per-node 2
host_reads_run.py OUT``); each process writes its counts to OUT/rank<r>.json. The two-process
half of `test_no_host_sync.py`: the gradient all-reduce, the shared latent draws and the
rank-summed tallies must not read the device between log lines either."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from gantrix import distributed  # noqa: E402
from gantrix.trainer import Trainer  # noqa: E402
from gantrix.models import grad_norm  # noqa: E402
from host_reads import HostReads, steps_without_log_lines  # noqa: E402

#: (recipe, data, precision): a penalty's double backward, a relativistic loss, labels, fp16's
#: scaler and bf16's autocast.
CASES = [("wgan-gp", "ring8", "fp32"), ("rasgan", "ring8", "bf16"), ("dcgan", "ring8", "fp16"),
         ("cgan", "digits", "fp32")]


def main(out: str) -> None:
    distributed.init_from_environment("cpu")
    counts = {}
    for recipe, data, precision in CASES:
        trainer = Trainer(recipe, data, steps=1, batch_size=8, log_every=10_000, sample_every=0,
                          checkpoint_every=0, progress=False, device="cpu", precision=precision)
        counts[f"{recipe}@{data}/{precision}"] = dict(steps_without_log_lines(trainer, setattr))
    canary = HostReads(setattr)  # a read the count must see: a log line's gradient norm
    canary.on = True
    grad_norm(trainer.models.generator)
    counts["canary"] = dict(canary.calls)
    Path(out, f"rank{distributed.rank()}.json").write_text(json.dumps(counts))
    distributed.exit_now(0)


if __name__ == "__main__":
    main(sys.argv[1])
