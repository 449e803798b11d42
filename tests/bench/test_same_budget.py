"""bench/same_budget.py: cells parsed and named, the steps each composition gets from its
calibrated time a step, and one tiny comparison end to end on the 2-D ring."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
import same_budget  # noqa: E402


def test_a_cell_is_a_label_and_train_arguments():
    cell = same_budget.Cell.parse("hinge + SN, resnet=--recipe sngan --trick 'resnet:width=32'")
    assert cell.label == "hinge + SN, resnet"
    assert cell.args == ("--recipe", "sngan", "--trick", "resnet:width=32")
    for bad in ("no-equals", "=--recipe x", "label=  "):
        with pytest.raises(argparse.ArgumentTypeError, match="a cell is LABEL=ARGUMENTS"):
            same_budget.Cell.parse(bad)


def test_two_cells_with_one_label_never_share_a_folder():
    a = same_budget.Cell.parse("x=--recipe dcgan")
    b = same_budget.Cell.parse("x=--recipe sngan")
    assert a.folder("mnist", "s0") != b.folder("mnist", "s0")
    assert a.folder("mnist", "s0").startswith("x-") and a.folder("mnist", "s0").endswith("-mnist-s0")
    assert "/" not in same_budget.Cell.parse("a/b: c=--recipe dcgan").folder("d", "s1")


def test_the_table_gives_mean_std_and_each_seed():
    fast, slow = same_budget.Cell.parse("fast=--recipe a"), same_budget.Cell.parse("slow=--recipe b")
    runs = {(fast, "mnist"): [dict(classes=10, confident=80.0, kl=0.1, fd=20.0, fd_real=8.2,
                                   train_seconds=61.0),
                              dict(classes=9, confident=70.0, kl=0.3, fd=30.0, fd_real=8.2,
                                   train_seconds=59.0)],
            (slow, "mnist"): [dict(classes=2, confident=5.0, kl=2.0, fd=900.0, fd_real=8.2,
                                   train_seconds=60.0)] * 2}
    text = same_budget.table("mnist", [fast, slow], {(fast, "mnist"): 0.5, (slow, "mnist"): 2.0},
                             {(fast, "mnist"): 120, (slow, "mnist"): 30}, runs, 60, 1)
    lines = text.splitlines()
    assert lines[0] == ("| composition | s / step | steps in 60 s | classes (of 10) | confident % | "
                        "KL to uniform | Fréchet distance (floor) | train time (s, 1 thread) |")
    assert lines[2] == ("| fast | 0.50 | 120 | 9.5 ± 0.7 (10.0, 9.0) | 75.0 ± 7.1 (80.0, 70.0) | "
                        "0.20 ± 0.14 (0.10, 0.30) | 25.0 ± 7.1 (20.0, 30.0) (8.2) | 60 ± 1 |")
    assert lines[3].startswith("| slow | 2.00 | 30 | 2.0 ± 0.0 (2.0, 2.0) |")


def test_a_tiny_comparison_runs_end_to_end(tmp_path):
    runs = tmp_path / "runs"
    cmd = [sys.executable, str(BENCH / "same_budget.py"), "--budget", "1", "--data", "ring8",
           "--calibrate", "1", "--runs", str(runs), "--json", str(tmp_path / "all.json"),
           "--train-arg=--batch-size=32", "--train-arg=--threads=1",
           "--cell", "ns=--trick nonsaturating", "--cell", "ls=--trick lsgan"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "### ring8: 1 s of training per run" in done.stdout
    rows = json.loads((tmp_path / "all.json").read_text())
    assert [r["label"] for r in rows] == ["ns", "ls"]
    for row in rows:
        assert row["steps"] == max(1, int(1 / row["seconds_per_step"]))
        (run,) = row["runs"]
        assert run["step"] == row["steps"] and "modes" in run
    # a second call trains nothing again: the runs and the calibration are kept
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0 and "seed 0:" not in again.stderr
    assert again.stdout == done.stdout
