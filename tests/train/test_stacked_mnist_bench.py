"""bench/stacked_mnist.py decides, per cell and seed, whether to train, resume, re-score or
reuse a run: a score is reused only when it is the papers' (26,000 samples, at the asked
step), so an ad-hoc ``gantrix eval --n 100`` never becomes a row of the table."""
import importlib.util
import json
from pathlib import Path

import pytest

from gantrix.metrics import STACKED_SAMPLES

SCRIPT = Path(__file__).parents[2] / "bench" / "stacked_mnist.py"


@pytest.fixture
def bench(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("stacked_mnist_bench_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    calls = []

    def fake_run(cmd, **kwargs):  # what gantrix train / eval would leave: the full score
        calls.append(cmd)
        out = tmp_path / module.folder_of("dcgan-veegan", 0)
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval.json").write_text(json.dumps({"step": 10, "samples": STACKED_SAMPLES, "modes": 7}))
        return 0

    monkeypatch.setattr(module.CHILDREN, "run", fake_run)
    return module, calls


def _folder(module, runs: Path, **score) -> Path:
    out = runs / module.folder_of("dcgan-veegan", 0)
    out.mkdir(parents=True)
    (out / "config.toml").write_text("")
    if score:
        (out / "eval.json").write_text(json.dumps(score))
    return out


def test_a_new_cell_is_trained_from_its_config(bench, tmp_path):
    module, calls = bench
    assert module.run_cell("dcgan-veegan", 0, 10, tmp_path, 1, [])["modes"] == 7
    assert calls[0][:3] == ["gantrix", "train", "--config"] and "--seed" in calls[0]


def test_a_finished_run_with_the_papers_score_is_reused(bench, tmp_path):
    module, calls = bench
    _folder(module, tmp_path, step=10, samples=STACKED_SAMPLES, modes=123)
    assert module.run_cell("dcgan-veegan", 0, 10, tmp_path, 1, [])["modes"] == 123
    assert calls == []


def test_a_run_scored_on_fewer_samples_is_scored_again_not_retrained(bench, tmp_path):
    module, calls = bench
    out = _folder(module, tmp_path, step=10, samples=100, modes=42)
    assert module.run_cell("dcgan-veegan", 0, 10, tmp_path, 1, [])["modes"] == 7
    assert calls == [["gantrix", "eval", str(out)]]


def test_an_unfinished_run_resumes(bench, tmp_path):
    module, calls = bench
    out = _folder(module, tmp_path, step=5, samples=STACKED_SAMPLES, modes=42)
    module.run_cell("dcgan-veegan", 0, 10, tmp_path, 1, [])
    assert calls == [["gantrix", "train", "--resume", str(out), "--steps", "10", "--quiet"]]
