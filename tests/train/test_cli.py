"""End-to-end runs of ``gantrix train``, ``sample``, ``eval`` on tiny budgets, every output
file checked for its content."""
from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest
import torch
from PIL import Image

from gantrix.checkpoint import FORMAT
from gantrix.cli.app import create_app


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory, app, tiny):
    """One tiny 2-D run shared by the tests that only read it."""
    from typer.testing import CliRunner

    out = tmp_path_factory.mktemp("runs") / "ring"
    result = CliRunner().invoke(app, ["train", "--trick", "nonsaturating", *tiny, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result


def test_train_writes_every_file(ring_run):
    out, result = ring_run
    assert "done: 20 steps" in result.stdout and "modes" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == [  # .lock: its one writer's (run_folder)
        ".lock", "checkpoint.pt", "config.toml", "eval.json", "losses.png", "metrics.jsonl",
        "samples"]
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_000010.png", "step_000020.png"]
    for png in (out / "samples").iterdir():
        with Image.open(png) as im:
            assert im.format == "PNG" and im.size == (500, 500)
    with Image.open(out / "losses.png") as im:
        assert im.size == (800, 350)


def test_config_is_a_rerunnable_recipe(ring_run):
    out, _ = ring_run
    config = tomllib.loads((out / "config.toml").read_text())
    assert config["tricks"] == ["nonsaturating"]
    train = config["train"]
    assert train["data"] == "ring8" and train["steps"] == 20 and train["batch_size"] == 32
    assert train["seed"] == 0 and train["sample_every"] == 10 and train["checkpoint_every"] == 10


def test_rerunning_the_config_reproduces_the_run(ring_run, cli, tmp_path):
    out, _ = ring_run
    again = tmp_path / "again"
    result = cli("train", "--config", out / "config.toml", "--out", again, "--quiet")
    assert result.exit_code == 0, result.output
    a = torch.load(out / "checkpoint.pt", weights_only=True)
    b = torch.load(again / "checkpoint.pt", weights_only=True)
    for role in ("generator", "discriminator"):
        for key, value in a["models"][role].items():
            assert torch.equal(value, b["models"][role][key]), (role, key)


def test_metrics_lines(ring_run):
    out, _ = ring_run
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20]
    for row in rows:
        assert {"d_loss", "g_loss", "grad_norm/discriminator", "grad_norm/generator",
                "step_time", "elapsed"} <= set(row)
        assert row["grad_norm/discriminator"] > 0 and row["grad_norm/generator"] > 0
        assert row["step_time"] > 0 and np.isfinite(row["d_loss"])


def test_checkpoint_loads_safely(ring_run):
    out, _ = ring_run
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["format"] == FORMAT and state["step"] == 20 and state["d_steps"] == 20
    assert set(state["models"]) == {"generator", "discriminator"}
    assert set(state["optimizers"]) == {"generator", "discriminator"}
    assert {"torch", "z"} <= set(state["rng"]) and "rng" in state["data"]


def test_eval_prints_and_saves(ring_run, cli):
    out, _ = ring_run
    (out / "eval.json").unlink()
    result = cli("eval", out, "--n", "500")
    assert result.exit_code == 0, result.output
    assert "modes" in result.stdout and "high quality" in result.stdout
    saved = json.loads((out / "eval.json").read_text())
    assert saved["step"] == 20 and saved["samples"] == 500 and 0 <= saved["modes"] <= 8


def test_sample_npy_and_png(ring_run, cli, tmp_path):
    out, _ = ring_run
    result = cli("sample", out, "--n", "37", "--out", tmp_path / "s.npy")
    assert result.exit_code == 0, result.output
    x = np.load(tmp_path / "s.npy")
    assert x.shape == (37, 2) and x.dtype == np.float32
    again = cli("sample", out, "--n", "37", "--out", tmp_path / "t.npy")
    assert again.exit_code == 0 and np.array_equal(x, np.load(tmp_path / "t.npy"))
    result = cli("sample", out, "--n", "100", "--out", tmp_path / "s.png")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "s.png") as im:
        assert im.size == (500, 500)


def test_sample_refuses_labels_without_classes(ring_run, cli, tmp_path):
    out, _ = ring_run
    result = cli("sample", out, "--n", "4", "--labels", "1", "--out", tmp_path / "s.npy")
    assert result.exit_code == 2 and "no class labels" in result.stderr
    assert not (tmp_path / "s.npy").exists()


def test_digits_run_images_and_samples(cli, tmp_path):
    out = tmp_path / "digits"
    result = cli("train", "--trick", "nonsaturating", "--data", "digits", "--steps", "3",
                 "--batch-size", "8", "--width", "8", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert "classes" in result.stdout and "Fréchet distance" in result.stdout
    with Image.open(out / "samples" / "step_000003.png") as im:
        # 64 digits, 8 per row, each enlarged 4× to 32 px with 2 px gaps
        assert im.mode == "L" and im.size == (8 * 34 + 2, 8 * 34 + 2)
    result = cli("sample", out, "--n", "5", "--out", tmp_path / "d.npy")
    assert result.exit_code == 0, result.output
    x = np.load(tmp_path / "d.npy")
    assert x.shape == (5, 1, 8, 8) and x.min() >= -1 and x.max() <= 1
    result = cli("sample", out, "--n", "10", "--out", tmp_path / "d.png")
    with Image.open(tmp_path / "d.png") as im:
        assert im.size == (8 * 34 + 2, 2 * 34 + 2)


def test_image_folder_run(cli, tmp_path):
    for i, (folder, colour) in enumerate([("red", (255, 0, 0)), ("blue", (0, 0, 255))] * 3):
        (tmp_path / "imgs" / folder).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), colour).save(tmp_path / "imgs" / folder / f"{i}.png")
    out = tmp_path / "run"
    result = cli("train", "--trick", "nonsaturating", "--data", tmp_path / "imgs", "--image-size", "16",
                 "--steps", "2", "--batch-size", "4", "--width", "8", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    config = tomllib.loads((out / "config.toml").read_text())
    assert config["train"]["data"] == str((tmp_path / "imgs").resolve())
    assert config["train"]["image_size"] == 16
    result = cli("sample", out, "--n", "3", "--out", tmp_path / "s.npy")
    assert np.load(tmp_path / "s.npy").shape == (3, 3, 16, 16)


def test_commands_are_in_the_real_app():
    app = create_app()
    names = {c.name for c in app.registered_commands}
    assert {"train", "sample", "eval"} <= names
    bench = next(g for g in app.registered_groups if g.name == "bench")
    assert "quality" in {c.name for c in bench.typer_instance.registered_commands}


def test_conditional_sampling_with_labels(cli, tmp_path):
    out = tmp_path / "cgan"
    result = cli("train", "--recipe", "cgan", "--data", "digits", "--steps", "2",
                 "--batch-size", "8", "--width", "8", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    samples = {}
    for label in ("0", "1"):
        result = cli("sample", out, "--n", "6", "--labels", label, "--out", tmp_path / f"{label}.npy")
        assert result.exit_code == 0, result.output
        samples[label] = np.load(tmp_path / f"{label}.npy")
        assert samples[label].shape == (6, 1, 8, 8)
    assert not np.array_equal(samples["0"], samples["1"])  # same latents, other class
    result = cli("sample", out, "--n", "2", "--labels", "10", "--out", tmp_path / "x.npy")
    assert result.exit_code == 2 and "classes 0 to 9" in result.stderr
