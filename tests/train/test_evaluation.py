"""FID, KID and precision/recall of a run (`gantrix.evaluation`) in named feature spaces
(`gantrix.features`): the features of each kind of data, the real side cached once (a hit
costs the generated side only; a damaged cache is recomputed), a labelled folder's
classifier trained once and cached, and every mistake a clear message through the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gantrix import Trainer, evaluation, metrics
from gantrix import features as feats
from gantrix.data import StackedMNIST, load_data
from gantrix.errors import GantrixError
from gantrix.quality import fid


@pytest.fixture
def mnist_stand_in(monkeypatch):
    """An untrained (seeded) MNIST classifier instead of the 45-second trained one: the
    plumbing of the features does not need a good classifier."""
    torch.manual_seed(0)
    clf = metrics.MnistClassifier().eval()
    monkeypatch.setattr(metrics, "mnist_classifier", lambda: clf)
    return clf


def _run(tmp_path_factory, name: str, data, **settings) -> Trainer:
    out = tmp_path_factory.mktemp(name) / "run"
    trainer = Trainer(settings.pop("recipe", "dcgan"), data, out=out, progress=False,
                      **{"steps": 2, "batch_size": 16, **settings})
    return trainer.fit()


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """dcgan on the 8×8 digits, trained for 2 steps: far from the data."""
    return _run(tmp_path_factory, "digits", "digits")


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory):
    return _run(tmp_path_factory, "ring", "ring8", recipe="wgan-gp")


def _png_folder(root, *, labelled: bool, per_class: int = 24, side: int = 12):
    """Two kinds of small grey images, stripes across or down (each with its own noise),
    in a sub-folder per kind when ``labelled``."""
    rng = np.random.default_rng(0)
    for k, kind in enumerate(("across", "down")):
        for i in range(per_class):
            a = rng.integers(0, 60, (side, side))
            a[::3] += 180 if k == 0 else 0
            a[:, ::3] += 180 if k == 1 else 0
            folder = root / kind if labelled else root
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(a.clip(0, 255).astype(np.uint8), "L").save(folder / f"{kind}{i}.png")
    return root


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    folder = _png_folder(tmp_path_factory.mktemp("labelled") / "stripes", labelled=True)
    return _run(tmp_path_factory, "folder", str(folder), recipe="nonsaturating", width=8,
                image_size=16, batch_size=8)


@pytest.fixture
def few_epochs(monkeypatch):
    monkeypatch.setattr(metrics, "FOLDER_EPOCHS", 3)


# --------------------------------------------------------------------------- features


def test_features_of_each_kind_of_data(mnist_stand_in, few_epochs, tmp_path):
    digits = load_data("digits")
    space = feats.classifier_space(digits, "digits")
    assert space.name == "digits classifier"
    assert space.extract(digits.reference(7)).shape == (7, 64)

    mnist = load_data("mnist")
    space = feats.classifier_space(mnist, "mnist")
    x = mnist.reference(5)
    f = space.extract(x)
    assert f.shape == (5, 128) and f.dtype == np.float64
    assert space.extract(x[..., 2:-2, 2:-2]).tolist() == f.tolist()  # 28×28 or padded 32×32

    stacked = StackedMNIST()
    space = feats.classifier_space(stacked, "stacked-mnist")
    x = stacked.reference(4)
    f = space.extract(x)
    assert f.shape == (4, 384) and space.name == "mnist classifier per-channel"
    with torch.no_grad():  # the three channels' features, side by side, in order
        second = mnist_stand_in.features(x[:, 1:2, 2:-2, 2:-2]).double().numpy()
    np.testing.assert_allclose(f[:, 128:256], second, rtol=1e-6)

    folder = _png_folder(tmp_path / "stripes", labelled=True, per_class=10)
    data = load_data(str(folder), image_size=16)
    space = feats.classifier_space(data, str(folder))
    assert space.name == "stripes classifier" and space.info["classes"] == 2
    assert space.extract(data.reference(6)).shape == (6, 128)


def test_the_real_side_is_drawn_in_chunks_without_repeats():
    digits = load_data("digits")
    chunks = list(feats.real_batches(digits, 1797, seed=3, chunk=500))
    assert [len(c) for c in chunks] == [500, 500, 500, 297]
    drawn = sorted(map(tuple, torch.cat(chunks).reshape(1797, -1).tolist()))
    assert drawn == sorted(map(tuple, digits.get().reshape(1797, -1).tolist()))  # each once
    again = torch.cat(list(feats.real_batches(digits, 1797, seed=3, chunk=700)))
    assert torch.equal(torch.cat(chunks), again)  # the draw does not depend on the chunk size


def test_metric_names_aliases_and_suggestions():
    assert evaluation.check_metrics(["FID", "kid", "precision", "recall", "fid"]) == ["fid", "kid", "pr"]
    with pytest.raises(GantrixError, match="did you mean 'fid'"):
        evaluation.check_metrics(["fdi"])
    assert evaluation.default_n(1797) == 898 and evaluation.default_n(None) == 10_000
    assert evaluation.default_n(50_000) == 10_000


# --------------------------------------------------------------------------- the metrics


def test_fid_of_real_data_is_small_and_of_a_two_step_generator_large(digits_run):
    r = digits_run.evaluate(n=300, seed=1, metrics=["fid", "kid", "pr"], features="classifier",
                            save=False)
    assert r["features"] == "digits classifier" and r["feature_space"]["dim"] == 64
    assert r["samples"] == r["real_samples"] == r["floor_samples"] == 300
    # the floor: 300 real digits against 300 others
    assert 0 < r["fid_real"] < 20 and r["precision_real"] > 0.7 and r["recall_real"] > 0.7
    assert r["fid"] > 20 * r["fid_real"] and r["kid"] > 10 * abs(r["kid_real"])
    assert r["precision"] < r["precision_real"]
    # the same real draw against itself: 0
    real = np.concatenate([feats.classifier_space(digits_run.data, "digits").extract(x)
                           for x in feats.real_batches(digits_run.data, 300, seed=1)])
    assert fid(real, real) == pytest.approx(0.0, abs=1e-6)


def test_second_eval_costs_only_the_generated_side(digits_run, monkeypatch):
    metrics.digit_classifier()  # trained (and cached) before counting
    seen = []
    features = metrics.DigitClassifier.features

    def counted(self, x):
        seen.append(len(x))
        return features(self, x)

    monkeypatch.setattr(metrics.DigitClassifier, "features", counted)
    first = digits_run.evaluate(n=200, seed=11, metrics=["fid", "kid"], features="classifier",
                                save=False)
    assert sum(seen) == 3 * 200 and not first["real_cached"]  # real, floor, generated
    seen.clear()
    second = digits_run.evaluate(n=200, seed=11, metrics=["fid", "kid"], features="classifier",
                                 save=False)
    assert sum(seen) == 200 and second["real_cached"]  # the generated side only
    for key in ("fid", "fid_real", "kid", "kid_real"):
        assert second[key] == pytest.approx(first[key], rel=1e-12)
    path, _ = evaluation.cache_path(feats.classifier_space(digits_run.data, "digits"),
                                    "digits", 200, 11)
    assert path.is_file() and path.parent.name == "features"
    assert path.parent.parent == feats.cache_dir()  # beside folders/, the prepared images
    seen.clear()  # another seed or n is another real draw
    digits_run.evaluate(n=200, seed=12, metrics=["fid"], features="classifier", save=False)
    assert sum(seen) == 3 * 200


@pytest.mark.parametrize("damage", ["truncate", "tamper", "garbage"])
def test_a_damaged_cache_is_recomputed(digits_run, damage):
    seed = {"truncate": 21, "tamper": 22, "garbage": 23}[damage]
    ask = dict(n=150, seed=seed, metrics=["fid"], features="classifier", save=False)
    first = digits_run.evaluate(**ask)
    path, _ = evaluation.cache_path(feats.classifier_space(digits_run.data, "digits"),
                                    "digits", 150, seed)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "garbage":
        path.write_bytes(b"not a cache")
    else:  # a valid archive whose features no longer match their checksum
        with np.load(path) as f:
            kept = {k: f[k] for k in f.files}
        kept["real"] = kept["real"] + 1.0
        np.savez(path.with_suffix(""), **kept)
    again = digits_run.evaluate(**ask)
    assert not again["real_cached"] and any("damaged" in note for note in again["notes"])
    assert again["fid"] == pytest.approx(first["fid"], rel=1e-12)
    assert again["fid_real"] == pytest.approx(first["fid_real"], rel=1e-12)
    assert digits_run.evaluate(**ask)["real_cached"]  # rewritten whole


def test_n_larger_than_the_real_set_uses_all_of_it(digits_run):
    r = digits_run.evaluate(n=1900, metrics=["fid"], features="classifier", save=False)
    assert r["samples"] == 1900 and r["real_samples"] == 1797 and "fid_real" not in r
    assert any("more than the 1,797 real images" in note for note in r["notes"])
    assert any("no real-vs-real floor" in note for note in r["notes"])


def test_a_labelled_folder_gets_its_classifier_trained_once(folder_run, few_epochs, monkeypatch):
    trained = []
    fit = metrics._fit
    monkeypatch.setattr(metrics, "_fit", lambda *a, **k: trained.append(1) or fit(*a, **k))
    r = folder_run.evaluate(n=20, metrics=["fid", "pr"], features="classifier", save=False)
    assert trained == [1]
    assert r["features"] == "stripes classifier" and r["real_samples"] == 20
    space = r["feature_space"]
    assert space["classes"] == 2 and space["held_out"] == 4 and 0 <= space["classifier_accuracy"] <= 100
    assert f"-e3-folder-" in space["key"]  # keyed by the folder's own key and the classifier's
    again = folder_run.evaluate(n=20, metrics=["fid", "pr"], features="classifier", save=False)
    assert trained == [1] and again["real_cached"] and again["fid"] == pytest.approx(r["fid"])
    cached = feats.cache_dir() / "classifiers" / f"{space['key']}.pt"
    assert cached.is_file()
    cached.write_bytes(b"damaged")  # a classifier that does not load is trained again
    folder_run.evaluate(n=20, metrics=["fid"], features="classifier", save=False)
    assert trained == [1, 1]


def test_eval_json_records_the_feature_space(digits_run):
    r = digits_run.evaluate(n=120, metrics=["fid"], features="classifier")
    saved = json.loads((digits_run.out / "eval.json").read_text())
    assert saved["features"] == "digits classifier" and saved["fid"] == pytest.approx(r["fid"])
    lines = evaluation.format_result(r)
    assert "FID (digits classifier features)" in lines[1] and "real vs real" in lines[1]


# --------------------------------------------------------------------------- the command


def test_cli_prints_the_space_on_every_line_and_saves(cli, digits_run):
    result = cli("eval", digits_run.out, "--metric", "fid", "--metric", "pr", "--n", "120",
                 "--features", "classifier")
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    assert "in digits classifier features" in out[0]
    assert out[1].startswith("  FID (digits classifier features)")
    assert out[2].startswith("  precision, recall (digits classifier features, k = 3)")
    assert json.loads((digits_run.out / "eval.json").read_text())["features"] == "digits classifier"


def test_cli_without_metric_is_unchanged(cli, digits_run):
    result = cli("eval", digits_run.out, "--n", "100")
    assert result.exit_code == 0, result.output
    assert "classes" in result.stdout and "Fréchet distance" in result.stdout
    assert "features" not in json.loads((digits_run.out / "eval.json").read_text())


def test_cli_unknown_metric_suggests(cli, digits_run):
    result = cli("eval", digits_run.out, "--metric", "kdi")
    assert result.exit_code == 2 and "unknown metric 'kdi'" in result.output
    assert "did you mean 'kid'" in result.output and "Traceback" not in result.output


def test_cli_metric_on_points_does_not_apply(cli, ring_run):
    (ring_run.out / "eval.json").write_text('{"step": 2}\n')
    result = cli("eval", ring_run.out, "--metric", "fid")
    assert result.exit_code == 2 and "2-D points" in result.output
    assert "without --metric" in result.output  # the modes metrics remain
    assert (ring_run.out / "eval.json").read_text() == '{"step": 2}\n'


def test_cli_n_larger_than_the_real_set(cli, digits_run):
    result = cli("eval", digits_run.out, "--metric", "fid", "--n", "1850", "--features", "classifier")
    assert result.exit_code == 0, result.output
    assert "more than the 1,797 real images" in result.output
    assert "1,850 generated vs 1,797 real" in result.stdout


def test_cli_inception_asked_for_but_unavailable_names_the_extra(cli, digits_run, monkeypatch):
    def unavailable(weights):
        raise GantrixError("the Inception features need torch-fidelity: pip install -e '.[metrics]'")

    try:
        from gantrix import inception  # noqa: F401
        import torch_fidelity  # noqa: F401
    except Exception:  # the extra cannot be imported here: the real path
        pass
    else:  # the extra is there: take it away
        monkeypatch.setattr(feats, "inception_space", unavailable)
    result = cli("eval", digits_run.out, "--metric", "fid", "--features", "inception")
    assert result.exit_code == 2 and ".[metrics]" in result.output, result.output
    result = cli("eval", digits_run.out, "--metric", "fid", "--inception-weights",
                 digits_run.out / "missing.pt")
    assert result.exit_code == 2 and "missing.pt" in result.output


def test_cli_unlabelled_folder_without_inception_says_what_to_give(cli, tmp_path):
    folder = _png_folder(tmp_path / "flat", labelled=False, per_class=6)
    out = tmp_path / "run"
    result = cli("train", "--trick", "nonsaturating", "--data", folder, "--image-size", "16",
                 "--steps", "1", "--batch-size", "4", "--width", "8", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    result = cli("eval", out, "--metric", "fid", "--features", "classifier")
    assert result.exit_code == 2 and "sub-folder" in result.output
    assert ".[metrics]" in result.output and "--inception-weights" in result.output


def test_cli_features_without_metric_and_unknown_features(cli, digits_run):
    result = cli("eval", digits_run.out, "--features", "classifier")
    assert result.exit_code == 2 and "add --metric" in result.output
    result = cli("eval", digits_run.out, "--metric", "fid", "--features", "inceptoin")
    assert result.exit_code == 2 and "did you mean 'inception'" in result.output


def test_cli_prints_before_saving_into_a_read_only_run(cli, digits_run, monkeypatch):
    write = evaluation.write_atomic

    def refuse(path, data):
        if path.name == "eval.json":
            raise PermissionError(13, "Permission denied")
        return write(path, data)

    monkeypatch.setattr(evaluation, "write_atomic", refuse)
    (digits_run.out / "eval.json").write_text('{"step": 2}\n')
    result = cli("eval", digits_run.out, "--metric", "fid", "--n", "100", "--features", "classifier")
    assert result.exit_code == 0, result.output
    assert "FID (digits classifier features)" in result.stdout
    assert "could not write" in result.stderr and "Permission denied" in result.stderr
    assert (digits_run.out / "eval.json").read_text() == '{"step": 2}\n'


def test_inception_is_taken_where_it_can_be_used(digits_run, tmp_path, monkeypatch):
    """The Inception path's plumbing with the network mocked (the real one needs the extra):
    chosen by default once the extra and the weights are there, named in the result, and
    the weights file part of the real side's cache key."""
    from gantrix import inception

    weights = tmp_path / inception.WEIGHTS_FILE
    weights.write_bytes(b"stand-in")
    calls = []

    def fake_features(images, *, weights=None, batch_size=50, device="cpu"):
        calls.append((len(images), weights))
        x = images.reshape(len(images), -1).double()
        return torch.cat([x, x.square()], 1)  # any fixed map will do

    monkeypatch.setattr(inception, "default_weights_path", lambda: weights)
    monkeypatch.setattr(inception, "load_inception", lambda path, device="cpu": None)
    monkeypatch.setattr(inception, "inception_features", fake_features)
    r = digits_run.evaluate(n=60, metrics=["fid"], save=False)
    assert r["features"] == "Inception-V3" and r["feature_space"]["weights"] == str(weights)
    assert {w for _, w in calls} == {weights} and sum(n for n, _ in calls) == 3 * 60
    assert "FID (Inception-V3 features)" in evaluation.format_result(r)[1]
    assert not r["notes"]
    assert digits_run.evaluate(n=60, metrics=["fid"], save=False)["real_cached"]
    other = tmp_path / "other.pth"
    other.write_bytes(b"another file")
    again = digits_run.evaluate(n=60, metrics=["fid"], inception_weights=other, save=False)
    assert not again["real_cached"]  # other weights: another real side


def test_a_weights_file_of_another_network_is_refused(cli, digits_run, tmp_path, monkeypatch):
    from gantrix import inception

    wrong = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3)}, wrong)
    result = cli("eval", digits_run.out, "--metric", "fid", "--inception-weights", wrong)
    assert result.exit_code == 2 and "is not the Inception-V3 network" in result.output
    assert "Traceback" not in result.output
    # found at the default place: an error too, never a silent fall-back to the classifier
    monkeypatch.setattr(inception, "default_weights_path", lambda: wrong)
    result = cli("eval", digits_run.out, "--metric", "fid")
    assert result.exit_code == 2 and "is not the Inception-V3 network" in result.output
