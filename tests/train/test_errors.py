"""Every bad input is a one-line error (exit status 2) before any work, no traceback, and an
existing run folder is never touched unless resumed."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

RUN = ["--steps", "2", "--batch-size", "4", "--quiet"]


def _fails(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: ")
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    return folder


@pytest.mark.parametrize("args, needles", [
    (["--trick", "nonsaturating", "--data", "{tmp}/missing"], ["neither a built-in", "ring8"]),
    (["--trick", "nonsaturating", "--data", "{tmp}/empty"], ["no images"]),
    (["--trick", "nonsaturating", "--data", "{tmp}/broken"], ["cannot read image", "bad.png"]),
    (["--trick", "nonsaturating", "--data", "{images}", "--image-size", "24"], ["power of two"]),
    (["--trick", "nonsaturting", "--data", "ring8"], ["unknown trick 'nonsaturting'", "nonsaturating"]),
    (["--trick", "nonsaturating", "--data", "ring8", "--steps", "-3"], ["steps", "-3", "[1, 1000000000]"]),
    (["--trick", "nonsaturating", "--data", "ring8", "--batch-size", "0"], ["batch_size"]),
    (["--trick", "wgan", "--trick", "hinge", "--data", "ring8"], ["more than one loss"]),
    (["--trick", "gradient-penalty", "--data", "ring8"], ["no loss"]),
    (["--recipe", "wgan-gpp", "--data", "ring8"], ["unknown recipe", "wgan-gp"]),
    (["--trick", "nonsaturating", "--data", "ring8", "--device", "tpu"], ["device", "'cpu'"]),
    (["--trick", "nonsaturating"], ["no data"]),
    (["--data", "ring8"], ["nothing to train"]),
    (["--recipe", "wgan-gp", "--data", "ring8", "--lr", "0.001"], ["optimizer trick", "adam:lr"]),
    (["--trick", "nonsaturating:foo=1", "--data", "ring8"], ["unknown parameter of nonsaturating"]),
])
def test_bad_train_input(cli, tmp_path, images, args, needles):
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "bad.png").write_bytes(b"\x89PNG but not really")
    out = tmp_path / "run"
    args = [a.format(tmp=tmp_path, images=images) for a in args]
    _fails(cli("train", *RUN, *args, "--out", out), *needles)
    assert not out.exists()


def test_cuda_without_cuda(cli, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    _fails(cli("train", "--trick", "nonsaturating", "--data", "ring8", "--device", "cuda", *RUN,
               "--out", tmp_path / "run"), "no CUDA device")
    assert not (tmp_path / "run").exists()


def test_refuses_a_non_empty_out_and_leaves_it_alone(cli, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    _fails(cli("train", "--trick", "nonsaturating", "--data", "ring8", *RUN, "--out", out),
           "not empty", "--resume")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"


def test_config_with_an_unknown_train_setting(cli, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('tricks = ["nonsaturating"]\n[train]\ndata = "ring8"\nstepz = 3\n')
    _fails(cli("train", "--config", config, "--out", tmp_path / "run"), "unknown setting", "stepz")
    assert not (tmp_path / "run").exists()


def test_config_train_table_gives_defaults(cli, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('tricks = ["nonsaturating"]\n[train]\ndata = "ring8"\nsteps = 3\n'
                      'batch_size = 4\n')
    result = cli("train", "--config", config, "--out", tmp_path / "run", "--quiet", "--steps", "2")
    assert result.exit_code == 0, result.output
    assert "for 2 steps (batch 4" in result.stderr  # the command line wins over [train]


@pytest.fixture
def finished(cli, tmp_path):
    out = tmp_path / "done"
    result = cli("train", "--trick", "nonsaturating", "--data", "ring8", *RUN, "--out", out)
    assert result.exit_code == 0, result.output
    return out


def test_resume_refuses_new_settings(cli, finished):
    _fails(cli("train", "--resume", finished, "--trick", "ema", "--batch-size", "8"),
           "drop --trick, --batch-size")


def test_resume_of_a_folder_that_is_no_run(cli, tmp_path):
    _fails(cli("train", "--resume", tmp_path), "not a gantrix run folder")


def test_corrupt_checkpoint(cli, finished):
    data = (finished / "checkpoint.pt").read_bytes()
    (finished / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    _fails(cli("train", "--resume", finished, "--steps", "4"), "corrupt or not a checkpoint")
    _fails(cli("sample", finished, "--out", finished / "s.npy"), "corrupt")


def test_foreign_checkpoint(cli, finished):
    torch.save({"model": torch.zeros(3)}, finished / "checkpoint.pt")
    _fails(cli("eval", finished), "not a gantrix checkpoint")


def test_checkpoint_of_another_model(cli, finished):
    state = torch.load(finished / "checkpoint.pt", weights_only=True)
    state["models"]["generator"] = {"w": torch.zeros(2)}
    torch.save(state, finished / "checkpoint.pt")
    _fails(cli("eval", finished), "does not fit")


def test_sample_errors(cli, finished, tmp_path):
    _fails(cli("sample", finished, "--out", tmp_path / "x.txt"), ".npy or .png")
    _fails(cli("sample", finished, "--out", tmp_path / "nowhere" / "x.npy"), "does not exist")
    _fails(cli("sample", finished, "--labels", "a,b", "--out", tmp_path / "x.npy"),
           "has no class labels")
    _fails(cli("sample", finished, "--n", "0", "--out", tmp_path / "x.npy"), "at least 1")
    _fails(cli("sample", tmp_path / "nothing", "--out", tmp_path / "x.npy"), "not a gantrix run")


def test_resume_of_a_finished_run_does_nothing_more(cli, finished):
    result = cli("train", "--resume", finished)
    assert result.exit_code == 0, result.output
    assert "from step 2 of 2" in result.stderr and "done: 2 steps" in result.stdout
    assert torch.load(finished / "checkpoint.pt", weights_only=True)["step"] == 2


def test_resume_with_more_steps_records_them(cli, finished):
    import tomllib

    result = cli("train", "--resume", finished, "--steps", "3", "--quiet")
    assert result.exit_code == 0, result.output
    config = tomllib.loads((finished / "config.toml").read_text())
    assert config["train"]["steps"] == 3 and config["tricks"] == ["nonsaturating"]
    assert (finished / "config.toml").read_text().startswith("# gantrix run configuration")
    result = cli("train", "--resume", finished)  # a later resume keeps the new total
    assert "from step 3 of 3" in result.stderr
