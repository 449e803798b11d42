"""``gantrix ablate`` through typer's CliRunner: the table, --plan, --collect and every user
mistake as one ``error:`` line (exit 2, no traceback)."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gantrix.cli.app import create_app

SMALL = ["--trick", "nonsaturating", "--trick", "n-critic:2", "--data", "ring8", "--steps", "20"]


@pytest.fixture
def gantrix():
    def run(*args: str):
        return CliRunner().invoke(create_app(), list(args))

    return run


def _user_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.output


def test_ablate_prints_the_table_and_writes_its_files(gantrix, tmp_path):
    out = tmp_path / "ab"
    result = gantrix("ablate", *SMALL, "--seeds", "1", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("## Ablation: nonsaturating + n-critic:2 on ring8")
    assert "| − n-critic |" in result.stdout and "refused: no loss" in result.stdout
    assert "one seed: no interval" in result.stdout
    assert "[2/2] without-n-critic, seed 0" in result.stderr or \
        "[2/2] full, seed 0" in result.stderr
    assert f"wrote {out / 'ablation.md'}" in result.stderr
    assert (out / "ablation.md").read_text() + "\n" == result.stdout
    # --collect rebuilds the same table from the folders
    again = gantrix("ablate", "--collect", str(out))
    assert again.exit_code == 0, again.output
    assert again.stdout == result.stdout


def test_plan_prints_one_train_command_per_cell_and_trains_nothing(gantrix, tmp_path):
    out = tmp_path / "ab"
    result = gantrix("ablate", *SMALL, "--seeds", "2", "--out", str(out), "--plan")
    assert result.exit_code == 0, result.output
    commands = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    assert len(commands) == 4
    assert commands[0] == (f"gantrix train --config {out}/full/recipe.toml --data ring8 "
                           f"--seed 0 --threads 1 --steps 20 --quiet --out {out}/full/seed-0")
    assert f"gantrix ablate --collect {out}" in result.stdout
    assert not list(out.glob("*/seed-*"))


def test_help_says_how_jobs_and_threads_share_the_cores(gantrix):
    result = gantrix("ablate", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for phrase in ("--jobs", "--threads", "usable cores", "--plan", "--collect", "paired"):
        assert phrase in text


@pytest.mark.parametrize("args, fragments", [
    ((), ("no data", "ring8")),
    (("--data", "ring8"), ("nothing to ablate",)),
    ((*SMALL, "--seeds", "0"), ("--seeds must be from 1 to 1000, got 0",)),
    ((*SMALL, "--jobs", "0"), ("--jobs must be at least 1, got 0",)),
    ((*SMALL, "--threads", "0"), ("--threads must be at least 1, got 0",)),
    (("--trick", "nonsaturating", "--data", "ring8", "--steps", "0"),
     ("--steps must be at least 1, got 0",)),
    ((*SMALL, "--metric", "high_qualty"), ("--metric", "did you mean high_quality")),
    ((*SMALL, "--metric", "fid"), ("--metric fid needs images",)),
    ((*SMALL, "--swap", "n-critic"), ("write OLD=NEW",)),
    ((*SMALL, "--swap", "adam=rmsprop"), ("'adam' is not a trick of the composition",)),
    ((*SMALL, "--add", "emma"), ("emma", "ema")),
    ((*SMALL, "--keep", "n-critc"), ("--keep 'n-critc'", "did you mean n-critic?")),
    (("--trick", "ema", "--data", "ring8"), ("does not train", "no loss")),
    (("--data", "ring8", "--collect", "x"), ("--collect reads the ablation as it was planned",
                                             "drop --data")),
    (("--keep", "adam", "--collect", "x"), ("drop --keep",)),
])
def test_user_mistakes_are_one_line(gantrix, tmp_path, args, fragments):
    _user_error(gantrix("ablate", *args, "--out", str(tmp_path / "ab")) if "--collect" not in args
                else gantrix("ablate", *args), *fragments)


def test_folders_that_are_not_ablations_are_refused(gantrix, tmp_path):
    (tmp_path / "file").write_text("x")
    _user_error(gantrix("ablate", *SMALL, "--out", str(tmp_path / "file")), "not a folder")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    _user_error(gantrix("ablate", *SMALL, "--out", str(tmp_path / "busy")),
                "is not empty and holds no ablation")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    _user_error(gantrix("ablate", "--collect", str(tmp_path / "busy")),
                "not an ablation folder")
    planned = tmp_path / "planned"
    assert gantrix("ablate", *SMALL, "--out", str(planned), "--plan").exit_code == 0
    _user_error(gantrix("ablate", *SMALL, "--add", "ema", "--out", str(planned)),
                "other arguments", "--add ema (this folder: none)")
    (planned / "ablation-plan.json").write_text("{not json")
    _user_error(gantrix("ablate", "--collect", str(planned)), "cannot be read as an ablation plan")


def test_a_second_ablation_of_a_busy_folder_is_refused(gantrix, tmp_path):
    import fcntl
    import os

    out = tmp_path / "ab"
    assert gantrix("ablate", *SMALL, "--out", str(out), "--plan").exit_code == 0
    with open(out / ".ablation.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242")
        held.flush()
        _user_error(gantrix("ablate", *SMALL, "--out", str(out)),
                    "is being ablated by process 4242")
    assert os.path.exists(out / "ablation-plan.json")


def test_ctrl_c_before_training_is_a_message_and_130(gantrix, tmp_path, monkeypatch):
    from gantrix import ablation, trainer

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ablation, "plan_variants", interrupt)
    result = gantrix("ablate", *SMALL, "--out", str(tmp_path / "ab"))
    assert result.exit_code == 130
    assert "run the same command again to resume" in result.stderr
    monkeypatch.setattr(trainer.Trainer, "__init__", interrupt)
    result = gantrix("train", "--trick", "nonsaturating", "--data", "ring8", "--out",
                     str(tmp_path / "run"))
    assert result.exit_code == 130
    assert "interrupted (Ctrl-C) before anything was written" in result.stderr
    assert "Traceback" not in result.output and "Aborted" not in result.output


def test_a_metric_that_cannot_be_measured_stops_before_any_training(gantrix, tmp_path,
                                                                    monkeypatch):
    """FID on an unlabelled folder without the Inception extra: said at once, not after
    every cell has trained."""
    import numpy as np
    from PIL import Image

    monkeypatch.setenv("GANTRIX_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / f"{i}.png")
    from gantrix import inception

    def unavailable(*args, **kwargs):
        raise inception.InceptionUnavailable("no Inception here")

    monkeypatch.setattr(inception, "_library", unavailable)
    result = gantrix("ablate", "--trick", "nonsaturating", "--data", str(folder),
                     "--out", str(tmp_path / "ab"))
    assert result.exit_code == 2 and result.stdout == ""
    assert "error: imgs has no classifier to compare images in" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "ab").exists()
