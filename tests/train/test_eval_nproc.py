"""``--eval-every`` under ``--nproc N``: every process generates and featurizes its share of
the evaluation's latent set, rank 0 gathers them and writes. The score is the one-process
evaluation of the same weights to the bit, training is untouched, and the run says what
evaluation cost. Real ``torchrun`` launches of two gloo processes on the CPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gantrix import Trainer, distributed, evaluation
from gantrix.periodic_eval import BEST, EVAL_SEED

WORKER = Path(__file__).parent / "distributed" / "eval_share.py"
sys.path.insert(0, str(WORKER.parent))
from eval_share import EVAL_N, RUNS, random_space  # noqa: E402



def _env() -> dict:
    """One CPU thread a process, and this session's private cache (`private_cache`), so
    that the processes and this one compare in the same classifier's features."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _eval_rows(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if any(k.startswith("eval/") for k in r)]


def test_one_process_shares_are_the_whole_evaluation():
    """The blocks of any split, put together in order, are the one-process samples and
    features; one process's share is all of them and its gather is the identity."""
    assert distributed.share(5) == range(5)
    x = torch.randn(3, 2)
    assert distributed.gather_to_writer(x) is x
    assert distributed.writer_first(lambda: "made") == "made"
    trainer = Trainer("dcgan", "digits", steps=1, batch_size=16, seed=3, progress=False)
    n = 1700  # chunks of 1,000 and 700 from two seeds: blocks 500, 500 | 500, 200
    assert evaluation.blocks(n) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    space, _ = random_space(trainer.data, "digits")
    whole = evaluation.generated_features(trainer, n, EVAL_SEED, space, None)
    split = [evaluation.generated_features(trainer, n, EVAL_SEED, space, None, share)
             for share in (range(0, 1), range(1, 3), range(3, 4))]
    assert whole.shape == (n, 16) and (torch.from_numpy(whole) != 0).any()
    assert (torch.from_numpy(whole) == torch.cat([torch.from_numpy(p) for p in split])).all()
    samples = trainer.sample(n, seed=EVAL_SEED)
    parts = [evaluation.sample_blocks(trainer, n, None, EVAL_SEED, share)
             for share in (range(0, 2), range(2, 4))]
    assert torch.equal(torch.cat(parts), samples)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """`eval_share.RUNS` trained by two processes, with and without evaluation."""
    out = tmp_path_factory.mktemp("two")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node=2", str(WORKER), str(out)], env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    load = lambda p: torch.load(p, weights_only=False)  # noqa: E731
    return out, load(out / "rank0.pt"), load(out / "rank1.pt")


@pytest.mark.slow
def test_the_collectives_of_uneven_shares(runs):
    _, rank0, rank1 = runs
    assert (rank0["collectives"]["share"], rank1["collectives"]["share"]) == (range(0, 1),
                                                                              range(1, 3))
    assert torch.equal(rank0["collectives"]["only_one"], torch.arange(6.0).reshape(2, 3))
    assert torch.equal(rank0["collectives"]["unequal"], torch.tensor([[0, 0], [1, 1], [1, 1]]))
    assert rank1["collectives"]["only_one"] is None and rank1["collectives"]["unequal"] is None
    # alone, each process draws as one process does (not its rows of the global batch)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        one = torch.randint(0, 100, (4,))
    for rank in (rank0, rank1):
        active, drawn = rank["collectives"]["alone"]
        assert not active and torch.equal(drawn, one) and rank["collectives"]["active"]
    # rank 0's failure reaches the other process instead of leaving it waiting
    assert rank1["collectives"]["writer_first"] == "raised: rank 0's own message"
    assert rank0["collectives"]["writer_first"] == "raised: rank 0's own message"


@pytest.mark.slow
@pytest.mark.parametrize("name", [r[0] for r in RUNS])
def test_two_processes_score_what_one_process_scores(runs, name, monkeypatch):
    """The rows are written once, at steps 2 and 4; the last is the one-process evaluation
    of the final weights, every figure equal to the bit; best.pt holds the best."""
    monkeypatch.setattr(evaluation.feats, "feature_space", random_space)
    out, rank0, rank1 = runs
    run = out / name
    rows = _eval_rows(run)
    assert [r["step"] for r in rows] == [2, 4]
    trainer = Trainer.load(run)
    assert trainer.step == 4
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each process had: the CPU's sums are split by thread
    try:
        if name == "digits":
            alone = evaluation.evaluate(trainer, ["fid"], n=EVAL_N, seed=EVAL_SEED)
            assert (rows[-1]["eval/fid"], rows[-1]["eval/features"]) == (alone["fid"],
                                                                         alone["features"])
            metric = "fid"
        else:
            alone = evaluation.data_metrics(trainer, EVAL_N, EVAL_SEED)
            figures = {f"eval/{k}": v for k, v in alone.items()
                       if isinstance(v, (int, float)) and k != "step"}
            assert {"eval/modes", "eval/high_quality"} <= figures.keys()
            assert {k: rows[-1][k] for k in figures} == figures
            metric = "high_quality"
    finally:
        torch.set_num_threads(threads)
    best = torch.load(run / BEST, weights_only=True)
    assert best["value"] == rank0[name]["best"] == rank1[name]["best"] == rows[-1]["eval/best"]
    assert best["value"] in [r[f"eval/{metric}"] for r in rows]
    # every process evaluated (its share), for about as long as rank 0
    assert rank0[name]["seconds"] > 0 and rank1[name]["seconds"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", [r[0] for r in RUNS])
def test_evaluating_together_leaves_training_untouched(runs, name):
    _, rank0, rank1 = runs
    for rank in (rank0, rank1):
        for role, state in rank[name]["plain"].items():
            for key, value in state.items():
                assert torch.equal(rank[name]["evaluated"][role][key], value), (role, key)


@pytest.mark.slow
def test_the_cli_writes_once_and_says_what_evaluation_cost(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "gantrix", "train", "-t", "nonsaturating",
                           "-d", "ring8", "--steps", "4", "--batch-size", "16",
                           "--eval-every", "2", "--eval-n", str(EVAL_N), "--sample-every", "0",
                           "--nproc", "2", "-q", "--out", str(out)],
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    said = [line for line in done.stderr.splitlines() if line.startswith("evaluation:")]
    assert len(said) == 1 and "% of this session); best high_quality" in said[0], done.stderr
    assert [r["step"] for r in _eval_rows(out)] == [2, 4] and (out / BEST).exists()
