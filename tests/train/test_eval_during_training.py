"""``--eval-every``: the data's metric every N steps on one latent set, written beside the
losses, the best generator kept in best.pt, and training itself left exactly as it was."""
import json

import pytest
import torch

from golden_weights import fingerprint

from gantrix import GantrixError, Trainer
from gantrix.periodic_eval import BEST

RUN = dict(steps=6, batch_size=32, seed=1, log_every=3, sample_every=0, checkpoint_every=2,
           progress=False)
EVAL = dict(eval_every=2, eval_n=300)


def _rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _eval_rows(out):
    return [r for r in _rows(out) if "eval/high_quality" in r]


def test_rows_at_every_nth_step_and_the_best_kept(tmp_path):
    trainer = Trainer("nonsaturating", "ring8", out=tmp_path / "run", **RUN, **EVAL).fit()
    rows = _eval_rows(tmp_path / "run")
    assert [r["step"] for r in rows] == [2, 4, 6]
    scores = [r["eval/high_quality"] for r in rows]
    best = max(range(3), key=lambda i: (scores[i], -i))  # the first of equal scores stays
    assert trainer.evaluation.best == scores[best] == rows[-1]["eval/best"]
    saved = torch.load(tmp_path / "run" / BEST, weights_only=True)
    assert (saved["step"], saved["metric"]) == (rows[best]["step"], "high_quality")
    assert all(r["eval/seconds"] >= 0 for r in rows) and trainer.eval_seconds > 0


def test_evaluation_leaves_training_untouched(tmp_path):
    plain = Trainer("nonsaturating", "ring8", **RUN).fit()
    evaluated = Trainer("nonsaturating", "ring8", out=tmp_path / "run", **RUN, **EVAL).fit()
    assert fingerprint(plain) == fingerprint(evaluated)


def test_the_same_latent_set_every_time(tmp_path):
    trainer = Trainer("nonsaturating", "ring8", **RUN, **EVAL)
    first = trainer.evaluation.score(trainer)
    again = trainer.evaluation.score(trainer)
    assert first["eval/high_quality"] == again["eval/high_quality"]


def test_a_resumed_run_keeps_its_latent_set_and_best_score(tmp_path):
    whole = Trainer("nonsaturating", "ring8", out=tmp_path / "whole", **RUN, **EVAL).fit()
    Trainer("nonsaturating", "ring8", out=tmp_path / "half", **{**RUN, "steps": 4}, **EVAL).fit()
    resumed = Trainer.resume(tmp_path / "half", steps=6).fit()
    def scores(out):  # all but the time taken
        return [{k: v for k, v in r.items() if k != "eval/seconds"} for r in _eval_rows(out)]

    assert scores(tmp_path / "half") == scores(tmp_path / "whole")
    assert (resumed.evaluation.best, resumed.evaluation.best_step) == (
        whole.evaluation.best, whole.evaluation.best_step)


def test_load_the_best_generator(tmp_path):
    out = tmp_path / "run"
    Trainer("nonsaturating", "ring8", out=out, **RUN, **EVAL).fit()
    saved = torch.load(out / BEST, weights_only=True)
    best = Trainer.load(out, checkpoint="best")
    assert best.best["step"] == saved["step"]
    for name, value in best.models.generator.state_dict().items():
        assert torch.equal(value, saved["generator"][name])
    with pytest.raises(GantrixError, match="resume the run"):
        best.fit()
    with pytest.raises(GantrixError, match="'last' or 'best'"):
        Trainer.load(out, checkpoint="newest")


def test_a_run_without_evaluation_has_no_best(tmp_path):
    out = tmp_path / "run"
    Trainer("nonsaturating", "ring8", out=out, **RUN).fit()
    with pytest.raises(GantrixError, match="has no best.pt.*--eval-every"):
        Trainer.load(out, checkpoint="best")


@pytest.mark.parametrize("metric, needle", [("hihg_quality", "did you mean high_quality"),
                                            ("fid", "needs images"),
                                            ("fd", "not measured on 2-D points")])
def test_a_metric_that_cannot_rank_this_run_is_refused_before_any_file(tmp_path, metric, needle):
    with pytest.raises(GantrixError, match=needle):
        Trainer("nonsaturating", "ring8", out=tmp_path / "run", eval_metric=metric, **RUN,
                **EVAL)
    assert not (tmp_path / "run").exists()


def test_the_cli_says_what_evaluation_cost(cli, tmp_path):
    out = tmp_path / "run"
    result = cli("train", "--trick", "nonsaturating", "--data", "ring8", "--steps", "4",
                 "--batch-size", "16", "--eval-every", "2", "--eval-n", "200", "--quiet",
                 "--out", out)
    assert result.exit_code == 0, result.output
    assert "evaluation:" in result.output and "best high_quality" in result.output
    assert (out / BEST).exists() and "eval_every = 2" in (out / "config.toml").read_text()


def test_sample_and_eval_the_best_checkpoint_from_the_cli(cli, tmp_path):
    out = tmp_path / "run"
    Trainer("nonsaturating", "ring8", out=out, **RUN, **EVAL).fit()
    best = torch.load(out / BEST, weights_only=True)
    result = cli("eval", out, "--checkpoint", "best", "--n", "300")
    assert result.exit_code == 0, result.output
    assert f"best.pt: step {best['step']}" in result.output
    assert f"step {best['step']}: modes" in result.output
    saved = json.loads((out / "eval.json").read_text())
    assert (saved["step"], saved["checkpoint"]) == (best["step"], "best")
    picture = tmp_path / "best.png"
    assert cli("sample", out, "--checkpoint", "best", "--out", picture).exit_code == 0
    assert picture.exists()
    wrong = cli("eval", out, "--checkpoint", "newest")
    assert wrong.exit_code == 2 and "'last' or 'best'" in wrong.output
