"""Progress off a terminal (a pipe, a log file, a script's captured output): plain lines,
one each tenth of the way and at least every 30 s, never carriage returns; nothing with
``--quiet``/``progress=False``; the losses read back only when a line is written."""
import io

import pytest

from gantrix import progress as progress_module
from gantrix.progress import Progress
from gantrix.trainer import Trainer


class Pipe(io.StringIO):
    def isatty(self):
        return False


def test_a_line_each_tenth_with_rate_time_left_and_losses():
    pipe = Pipe()
    bar = Progress(1000, stream=pipe)
    asked = []
    for step in range(1, 1001):
        bar.update(step, lambda: asked.append(step) or {"d_loss": 0.5, "g_loss": 1.25,
                                                        "d/gradient-penalty": 0.1}, rate=100.0)
    bar.close()
    lines = pipe.getvalue().splitlines()
    assert len(lines) == 10 and "\r" not in pipe.getvalue()
    assert asked == list(range(100, 1001, 100))  # read back only for a line
    assert lines[0] == "train: 100/1000 steps (10%), 100 steps/s, 9s left, d_loss=0.5, g_loss=1.25"
    assert lines[-1] == "train: 1000/1000 steps (100%), 100 steps/s, d_loss=0.5, g_loss=1.25"


def test_a_line_every_30_seconds_between_tenths(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: now[0])
    pipe = Pipe()
    bar = Progress(10_000, stream=pipe, desc="preparing", unit="image")
    for step in range(1, 500):  # under a tenth: a line only when 30 s have passed
        now[0] = step * 0.2
        bar.update(step)
    lines = pipe.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "preparing: 150/10000 images (1%)", "preparing: 300/10000 images (3%)",
        "preparing: 450/10000 images (4%)"]
    assert lines[0].endswith("5 images/s, 32m50s left")


def test_a_resumed_run_counts_from_where_it_starts():
    pipe = Pipe()
    bar = Progress(100, stream=pipe)
    for step in range(55, 101):
        bar.update(step, rate=10.0)
    assert [line.split(" steps")[0] for line in pipe.getvalue().splitlines()] == [
        "train: 60/100", "train: 70/100", "train: 80/100", "train: 90/100", "train: 100/100"]


def test_a_closed_pipe_stops_the_lines_not_the_run():
    pipe = Pipe()
    bar = Progress(10, stream=pipe)
    pipe.close()
    for step in range(1, 11):
        bar.update(step)  # no error


@pytest.mark.parametrize("progress, lines", [(None, 10), (False, 0)])
def test_fit_in_a_script_prints_plain_lines(capsys, progress, lines):
    Trainer(["minimax"], "ring8", steps=20, batch_size=16, progress=progress).fit()
    err = capsys.readouterr().err
    assert err.count("train: ") == lines and "\r" not in err
    if lines:
        assert err.splitlines()[-1].startswith("train: 20/20 steps (100%), ")
        assert "d_loss=" in err and "g_loss=" in err


def test_cli_train_into_a_pipe_prints_plain_lines(tmp_path):
    from typer.testing import CliRunner

    from gantrix.cli.app import create_app

    result = CliRunner().invoke(create_app(), ["train", "-t", "minimax", "--data", "ring8",
                                               "--steps", "20", "--batch-size", "16",
                                               "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("train: ") == 10 and "\r" not in result.stderr
    quiet = CliRunner().invoke(create_app(), ["train", "-t", "minimax", "--data", "ring8",
                                              "--steps", "20", "--batch-size", "16", "--quiet",
                                              "--out", str(tmp_path / "quiet")])
    assert quiet.exit_code == 0 and "train: " not in quiet.stderr
