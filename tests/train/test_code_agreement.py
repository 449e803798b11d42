"""How well a generator's categorical latent code agrees with the classified digit
(`gantrix.metrics.code_agreement`, the `gantrix_code_inputs` hook, InfoGAN's answer to it):
the normalised mutual information and the matched accuracy against independent
computations, the hook's draws, the figures in `gantrix eval` (and only where the generator
has a code), InfoGAN's weights of 0, and ``gantrix ablate --metric code_mi``."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import gantrix
from gantrix import Trainer, evaluation, metrics
from gantrix.ablation import Arguments, check_metric, has_code
from gantrix.ablation_report import NO_CODE, summarize
from gantrix.errors import GantrixError


# --------------------------------------------------------------------------- the formula


def _expected(table: np.ndarray) -> tuple[float, float]:
    """(I(c; y)/H(c), best matched accuracy) of a contingency table, computed another way:
    the MI as H(c) + H(y) − H(c, y), the matching by trying every injective map."""
    p = table / table.sum()

    def entropy(q):
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    hc, hy, hcy = entropy(p.sum(1)), entropy(p.sum(0)), entropy(p.ravel())
    k, c = table.shape
    if k <= c:
        best = max(sum(table[i, m[i]] for i in range(k)) for m in itertools.permutations(range(c), k))
    else:
        best = max(sum(table[m[j], j] for j in range(c)) for m in itertools.permutations(range(k), c))
    return (hc + hy - hcy) / hc, best / table.sum()


def _pairs(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Samples (code, class) whose contingency table is ``table``, shuffled."""
    codes, classes = np.nonzero(table)
    counts = table[codes, classes].astype(int)
    c, y = np.repeat(codes, counts), np.repeat(classes, counts)
    order = np.random.default_rng(0).permutation(len(c))
    return c[order], y[order]


def test_a_code_that_is_the_class_up_to_a_permutation_agrees_perfectly():
    codes = torch.arange(1000) % 10
    perm = torch.tensor([3, 7, 0, 9, 1, 4, 8, 2, 6, 5])
    got = metrics.code_agreement(codes, perm[codes])
    assert got["code_mi"] == pytest.approx(1.0, abs=1e-12)
    assert got["code_accuracy"] == 1.0


def test_a_code_independent_of_the_class_tells_nothing():
    i = torch.arange(1000)
    got = metrics.code_agreement(i % 10, i // 10 % 10)  # every (code, class) pair 10 times
    assert got["code_mi"] == pytest.approx(0.0, abs=1e-12)
    assert got["code_accuracy"] == pytest.approx(0.1)
    # drawn at random, the plug-in MI is near its bias (K−1)(C−1)/(2n) nats, not 0
    rng = np.random.default_rng(1)
    n = 2500
    noisy = metrics.code_agreement(rng.integers(0, 10, n), rng.integers(0, 10, n))
    assert 0 <= noisy["code_mi"] < 3 * 81 / (2 * n) / np.log(10)
    assert noisy["code_accuracy"] < 0.2


@pytest.mark.parametrize("table", [
    np.array([[40, 10], [20, 30]]),                 # by hand: accuracy (40 + 30) / 100
    np.array([[5, 0, 25], [0, 30, 0], [10, 10, 20]]),
    np.array([[9, 1], [2, 8], [7, 3]]),             # more code values than classes
    np.array([[3, 0, 4, 1, 0], [0, 6, 0, 2, 2], [1, 1, 1, 1, 1], [0, 0, 9, 0, 4]]),
])
def test_partial_agreement_matches_an_independent_computation(table):
    codes, classes = _pairs(table)
    got = metrics.code_agreement(torch.from_numpy(codes), torch.from_numpy(classes))
    mi, accuracy = _expected(table.astype(float))
    assert got["code_mi"] == pytest.approx(mi, rel=1e-9)
    assert got["code_accuracy"] == pytest.approx(accuracy, rel=1e-12)
    assert 0 < got["code_mi"] < 1


def test_the_hand_worked_two_by_two_case():
    # p = [[.4, .1], [.2, .3]]: p(c) = (.5, .5), p(y) = (.6, .4)
    got = metrics.code_agreement(*_pairs(np.array([[40, 10], [20, 30]])))
    mi = (.4 * np.log(.4 / .3) + .1 * np.log(.1 / .2) + .2 * np.log(.2 / .3)
          + .3 * np.log(.3 / .2))
    assert got["code_mi"] == pytest.approx(mi / np.log(2), rel=1e-12)
    assert got["code_accuracy"] == pytest.approx(0.7)


def test_one_code_value_has_no_mutual_information_to_normalise():
    got = metrics.code_agreement(torch.zeros(5, dtype=torch.long), torch.arange(5))
    assert got["code_mi"] is None and got["code_accuracy"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="equally long"):
        metrics.code_agreement(torch.zeros(5, dtype=torch.long), torch.zeros(4, dtype=torch.long))


# --------------------------------------------------------------------------- the hook


def test_infogan_draws_chosen_code_values_reproducibly():
    trick = gantrix.make("infogan", categorical=4, continuous=3)
    codes, inputs = trick.gantrix_code_inputs(n=10, device="cpu",
                                              generator=torch.Generator().manual_seed(5))
    assert codes.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    vector = inputs["codes"]
    assert vector.shape == (10, 7)
    assert torch.equal(vector[:, :4].argmax(1), codes) and torch.equal(vector[:, :4].sum(1),
                                                                        torch.ones(10))
    assert vector[:, 4:].abs().max() <= 1 and vector[:, 4:].std() > 0.1
    again = trick.gantrix_code_inputs(n=10, device="cpu",
                                      generator=torch.Generator().manual_seed(5))[1]["codes"]
    assert torch.equal(vector, again)
    assert gantrix.make("infogan", categorical=0).gantrix_code_inputs(
        n=4, device="cpu", generator=None) is None


# --------------------------------------------------------------------------- evaluation


class Pixels(nn.Module):
    """A stand-in for the trained digit classifier (the plumbing does not need a good one):
    a seeded random linear map of the pixels, so that different images get different
    classes."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(64, 10)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(10, 64, generator=torch.Generator().manual_seed(0)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@pytest.fixture
def digit_stand_in(monkeypatch):
    clf = Pixels().eval()
    monkeypatch.setattr(metrics, "digit_classifier", lambda: clf)
    return clf


def _digits(tricks, tmp_path, **settings) -> Trainer:
    return Trainer(["nonsaturating", *tricks], "digits", out=tmp_path / "run", progress=False,
                   **{"steps": 2, "batch_size": 16, "sample_every": 0, **settings}).fit()


def test_eval_scores_the_code_of_a_generator_driven_by_it_alone(tmp_path, digit_stand_in):
    """With the generator's first layer reading the one-hot code only, each code value is one
    image and so one predicted class f(k): the evaluation must find exactly the agreement of
    c with f(c), which it can only do if each sample carries the code it is scored with."""
    trainer = _digits(["infogan"], tmp_path)
    first = trainer.models.generator.wrapped.net[0]  # ConvTranspose2d: (in, out, k, k)
    latent, k = trainer.spec.latent_dim, 10
    with torch.no_grad():
        first.weight.zero_()
        first.weight[latent:latent + k] = 3 * torch.randn(k, *first.weight.shape[1:],
                                                          generator=torch.Generator().manual_seed(1))
        images = trainer.models.generator(torch.zeros(k, latent),
                                          codes=torch.cat([torch.eye(k), torch.zeros(k, 2)], 1))
        f = digit_stand_in(images.reshape(k, 1, 8, 8) * trainer.data.scale).argmax(1)
    result = trainer.evaluate(n=200, save=False)
    codes = torch.arange(200) % k
    mi, accuracy = _expected(np.histogram2d(codes.numpy(), f[codes].numpy(),
                                            bins=(range(k + 1), range(11)))[0])
    assert result["code_mi"] == pytest.approx(mi, abs=1e-9)
    assert result["code_accuracy"] == pytest.approx(len(set(f.tolist())) / k)
    assert result["code_accuracy"] == pytest.approx(accuracy)
    assert len(set(f.tolist())) > 2  # a test with something to find


def test_eval_reports_the_code_only_where_the_generator_has_one(tmp_path, digit_stand_in, cli):
    info = _digits(["infogan"], tmp_path / "info")
    result = info.evaluate(n=100)
    assert 0 <= result["code_mi"] <= 1 and 0 <= result["code_accuracy"] <= 1
    again = info.evaluate(n=100, save=False)
    assert (again["code_mi"], again["code_accuracy"]) == (result["code_mi"],
                                                          result["code_accuracy"])
    shown = cli("eval", tmp_path / "info" / "run", "--n", "100")
    assert shown.exit_code == 0, shown.output
    assert "categorical code vs class: MI/H(code) " in shown.stdout
    saved = json.loads((tmp_path / "info" / "run" / "eval.json").read_text())
    assert saved["code_mi"] == pytest.approx(result["code_mi"])

    plain = _digits([], tmp_path / "plain").evaluate(n=100, save=False)
    assert "code_mi" not in plain and "code_accuracy" not in plain and "classes" in plain
    no_category = _digits(["infogan:categorical=0"], tmp_path / "cont").evaluate(n=100, save=False)
    assert "code_mi" not in no_category


def test_a_conditional_model_with_a_code_sees_class_and_code_independently(tmp_path,
                                                                           digit_stand_in,
                                                                           monkeypatch):
    trainer = _digits(["cgan", "infogan"], tmp_path)
    seen = {}
    real = evaluation.shared_samples

    def spy(trainer, n, labels, seed, shared, inputs=None):
        seen["labels"], seen["codes"] = labels, inputs["codes"][:, :10].argmax(1)
        return real(trainer, n, labels, seed, shared, inputs)

    monkeypatch.setattr(evaluation, "shared_samples", spy)
    result = trainer.evaluate(n=200, save=False)
    pairs = set(zip(seen["labels"].tolist(), seen["codes"].tolist()))
    assert len(pairs) == 100  # every (class, code) pair, twice
    assert "asked_class" in result and "code_mi" in result


# --------------------------------------------------------------------------- InfoGAN's weights


def test_weights_of_zero_keep_the_codes_but_drop_the_term():
    spec = gantrix.ModelSpec((2,), latent_dim=4, width=8)
    composition = gantrix.Recipe("nonsaturating",
                                 "infogan:weight=0,continuous_weight=0").compose()
    models = gantrix.build_models(composition, spec)
    q = {k: v.clone() for k, v in models.discriminator.q.state_dict().items()}
    step = gantrix.ComposedStep(composition, models, spec, total_steps=3)
    torch.manual_seed(0)
    for _ in range(3):
        losses = step.step(lambda: (torch.randn(16, 2), None))
    assert not any(key.startswith(("d/infogan", "g/infogan", "infogan")) for key in losses)
    assert all(torch.equal(q[k], v) for k, v in models.discriminator.q.state_dict().items())
    assert models.generator.categorical == 10  # G still takes the codes
    only_cat = gantrix.make("infogan", continuous_weight=0)
    assert only_cat.weight == 1.0  # a weight of 0 is a legal value of either
    assert gantrix.make("infogan", weight=0).continuous_weight == 0.1


# --------------------------------------------------------------------------- ablate


def _args(*tricks: str, data: str = "digits") -> Arguments:
    return Arguments(data=data, tricks=tuple(tricks))


def test_ablate_takes_a_code_metric_only_for_a_composition_with_a_code():
    check_metric("code_mi", "digits", args=_args("nonsaturating", "infogan"))
    check_metric("code_accuracy", "digits", args=_args("nonsaturating", "infogan"))
    assert has_code(_args("nonsaturating", "infogan")) is True
    with pytest.raises(GantrixError, match="no trick of the composition gives it one.*infogan"):
        check_metric("code_mi", "digits", args=_args("nonsaturating"))
    with pytest.raises(GantrixError, match="no trick of the composition"):
        check_metric("code_mi", "digits", args=_args("nonsaturating", "infogan:categorical=0"))
    with pytest.raises(GantrixError, match="ring8 has no such classifier|not measured on 2-D"):
        check_metric("code_mi", "ring8", args=_args("nonsaturating", "infogan"))


def test_training_ranked_by_a_code_metric_without_a_code_is_refused_before_it_starts(
        tmp_path):
    from gantrix import Trainer

    with pytest.raises(GantrixError) as info:
        Trainer(["nonsaturating"], "digits", out=tmp_path / "run", steps=2, eval_every=1,
                eval_metric="code_mi")
    assert str(info.value).startswith("--eval-metric code_mi measures the generator's "
                                      "categorical latent code, and no trick of the "
                                      "composition gives it one; add a trick that does "
                                      "(one that does: infogan)")
    assert not (tmp_path / "run").exists()
    coded = Trainer(["nonsaturating", "infogan"], "digits", steps=2, eval_every=2,
                    eval_metric="code_accuracy", batch_size=16, sample_every=0)
    assert coded.evaluation.metric == "code_accuracy"


def test_the_table_says_a_variant_without_a_code_has_none():
    class V:
        def __init__(self, name, kind, subject, tricks):
            self.name, self.label, self.kind, self.subject = name, name, kind, subject
            self.tricks, self.refused, self.notes = tricks, None, []

    variants = [V("full", "full", "", ["nonsaturating", "infogan"]),
                V("without-infogan", "without", "infogan", ["nonsaturating"])]
    scores = {("full", s): {"seconds": 1.0, "metrics": {"code_mi": 0.5 + s / 10, "fd": 3.0}}
              for s in range(2)}
    scores.update({("without-infogan", s): {"seconds": 1.0, "metrics": {"fd": 2.0}}
                   for s in range(2)})
    table = summarize("t", "digits", variants, scores, 2, "code_mi", 1)
    assert table.rows[0].verdict == "reference"
    assert table.rows[1].verdict == NO_CODE and table.rows[1].metric is None
    assert NO_CODE in table.markdown()


def test_ablate_judged_by_the_code_runs_and_says_which_variant_has_none(tmp_path,
                                                                        digit_stand_in):
    from gantrix.cli.app import create_app

    def gantrix_cli(*args):
        return CliRunner().invoke(create_app(), [str(a) for a in args])

    refused = gantrix_cli("ablate", "-t", "nonsaturating", "--data", "digits", "--metric",
                          "code_mi", "--out", tmp_path / "none")
    assert refused.exit_code == 2 and refused.stdout == "", refused.output
    assert refused.stderr.startswith("error: --metric code_mi measures the generator's "
                                     "categorical latent code, and no trick")
    assert not (tmp_path / "none").exists()
    elsewhere = gantrix_cli("ablate", "-t", "nonsaturating", "-t", "infogan", "--data",
                            "ring8", "--metric", "code_accuracy", "--out", tmp_path / "ring")
    assert elsewhere.exit_code == 2 and "not measured on 2-D points" in elsewhere.stderr

    out = tmp_path / "ab"
    done = gantrix_cli("ablate", "-t", "nonsaturating", "-t", "infogan", "--data", "digits",
                       "--seeds", "1", "--steps", "2", "--jobs", "1", "--metric", "code_mi",
                       "--out", out)
    assert done.exit_code == 0, done.output
    rows = {(r["kind"], r["subject"]): r
            for r in json.loads((out / "ablation.json").read_text())["variants"]}
    assert 0 <= rows[("full", "")]["metric"]["mean"] <= 1
    assert rows[("without", "infogan")]["verdict"] == NO_CODE
    assert rows[("without", "nonsaturating")]["refused"]  # no loss: the checker's row
    assert NO_CODE in done.stdout
