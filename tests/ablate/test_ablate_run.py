"""Running an ablation: the table and its files, resuming (also after kill -9 and SIGTERM),
the --plan commands and --collect, and --jobs, all giving the same numbers."""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gantrix.ablation import SCORE, Cell
from gantrix.ablation_run import ablate, collect, plan, work
from gantrix.cli.app import create_app
from gantrix.errors import GantrixError

from ablation_cases import SMALL, values


def test_the_table_has_every_variant_and_refusals_are_rows(reference):
    table, out, lines = reference
    assert [r.name for r in table.rows] == ["full", "without-nonsaturating", "without-n-critic",
                                            "without-lr-decay"]
    refused = table.row("without-nonsaturating")
    assert refused.refused.startswith("no loss") and refused.values == {}
    assert "refused" in table.markdown() and "no loss" in table.markdown()
    full = table.row("full")
    assert sorted(full.values) == [0, 1] and table.metric == "high_quality"
    for row in (table.row("without-n-critic"), table.row("without-lr-decay")):
        assert row.diff.n == 2
        assert row.diff.mean == pytest.approx(
            sum(row.values[s] - full.values[s] for s in (0, 1)) / 2)
        assert row.seconds > 0 and row.worst_seed in (0, 1)
    saved = json.loads((out / "ablation.json").read_text())
    assert [v["name"] for v in saved["variants"]] == [r.name for r in table.rows]
    assert saved["variants"][2]["values"] == {str(s): v for s, v in
                                             table.row("without-n-critic").values.items()}
    assert (out / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "ablation.md").read_text() == table.markdown()
    assert sum("seed" in line for line in lines) == 6  # a line per cell


def test_running_it_again_reads_the_cells_back_and_trains_nothing(reference):
    table, out, _ = reference
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/seed-*/checkpoint.pt")}
    lines: list[str] = []
    again = ablate(**SMALL, seeds=2, jobs=1, out=out, report=lines.append)
    assert lines == ["6 of 6 cells already scored: read back"]
    assert values(again) == values(table)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_other_arguments_on_an_ablation_folder_are_refused(reference):
    _, out, _ = reference
    with pytest.raises(GantrixError, match=r"other arguments: --steps 31 \(this folder: 30\)"):
        ablate(**{**SMALL, "steps": 31}, seeds=2, out=out, report=lambda line: None)
    with pytest.raises(GantrixError, match="--add ema"):
        ablate(**SMALL, add=("ema",), seeds=2, out=out, report=lambda line: None)


def test_more_seeds_train_only_the_new_cells(reference, tmp_path):
    import shutil

    table, out, _ = reference
    copy = tmp_path / "ab"
    shutil.copytree(out, copy)
    lines: list[str] = []
    grown = ablate(**SMALL, seeds=3, jobs=1, out=copy, report=lines.append)
    assert lines[0] == "6 of 9 cells already scored: read back"
    assert len(lines) == 4
    assert grown.seeds == 3
    for name in ("full", "without-n-critic"):
        assert {s: v for s, v in grown.row(name).values.items() if s < 2} == \
            table.row(name).values


def _run_commands(commands: list[str]) -> None:
    app = create_app()
    for line in commands:
        words = shlex.split(line)
        assert words[:2] == ["gantrix", "train"]
        result = CliRunner().invoke(app, words[1:])
        assert result.exit_code == 0, result.output


def test_plan_commands_then_collect_give_the_table_of_ablate(reference, tmp_path):
    table, _, _ = reference
    out = tmp_path / "planned"
    commands = plan(**SMALL, seeds=2, out=out, report=lambda line: None)
    assert len(commands) == 6
    assert all(f"--out {out}/" in c and "--threads 1" in c for c in commands)
    _run_commands(commands)
    collected = collect(out, report=lambda line: None)
    assert values(collected) == values(table)


def test_collect_leaves_out_unfinished_cells_and_says_so(tmp_path):
    out = tmp_path / "part"
    commands = plan(**SMALL, seeds=1, out=out, report=lambda line: None)
    _run_commands(commands[:1])
    lines: list[str] = []
    table = collect(out, report=lines.append)
    assert "2 cell(s) not finished" in lines[0] and "not started" in lines[0]
    assert table.row("full").values and table.row("without-n-critic").missing == [0]
    assert table.row("without-n-critic").verdict == "not run yet"


def test_two_jobs_give_the_numbers_of_one(reference, tmp_path):
    table, _, _ = reference
    lines: list[str] = []
    two = ablate(**SMALL, seeds=2, jobs=2, out=tmp_path / "ab", report=lines.append)
    assert values(two) == values(table)
    assert sum("seed" in line for line in lines) == 6


def test_a_diverged_cell_is_a_result_kept_and_shown(tmp_path, monkeypatch):
    from gantrix import ablation
    from gantrix.trainer import TrainingDiverged

    def diverge(cell):
        raise TrainingDiverged("the loss d became nan at step 7")

    monkeypatch.setattr(ablation, "train_cell", diverge)
    folder = tmp_path / "cell"
    folder.mkdir()
    status, score = work(Cell("full", 0, str(folder), "x.toml", "ring8", 5, 1), "high_quality")
    assert status == "ok" and score["failed"].startswith("diverged: the loss d became nan")
    assert json.loads((folder / SCORE).read_text()) == score


def _cli(out: Path, *extra: str) -> list[str]:
    args = ["ablate", *(w for t in SMALL["tricks"] for w in ("--trick", t)), "--data", "ring8",
            "--seeds", "1", "--out", str(out), *extra]
    return [sys.executable, "-m", "gantrix.cli", *args]


def _wait_for(predicate, seconds: float = 120.0) -> None:
    end = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.2)


def _scored(out: Path) -> int:
    return len(list(out.glob(f"*/seed-*/{SCORE}")))


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _workers(pid: int) -> list[int]:
    """The pool's worker processes among ``pid``'s children (not its resource tracker)."""
    def spawned(child: int) -> bool:
        try:
            return b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            return False

    return [child for child in _children(pid) if spawned(child)]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The small ablation at 200 steps and one seed: long enough to be killed mid-cell."""
    return ablate(**{**SMALL, "steps": 200}, seeds=1, jobs=1,
                  out=tmp_path_factory.mktemp("whole") / "ab", report=lambda line: None)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_kill_9_of_the_ablation_resumes_to_the_uninterrupted_numbers(tmp_path, uninterrupted):
    steps = ("--steps", "200", "--jobs", "1")
    out = tmp_path / "killed"
    process = subprocess.Popen(_cli(out, *steps), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:  # killed while training its second cell (the first one scored)
        _wait_for(lambda: _scored(out) >= 1 and len(list(out.glob("*/seed-0/checkpoint.pt"))) >= 2)
    finally:
        process.kill()
        process.wait()
    assert _scored(out) < 3
    result = subprocess.run(_cli(out, *steps), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "1 of 3 cells already scored" in result.stderr
    assert values(collect(out, report=lambda line: None)) == values(uninterrupted)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_sigterm_stops_the_workers_and_kill_9_leaves_no_orphan(tmp_path):
    out = tmp_path / "ab"
    process = subprocess.Popen(_cli(out, "--steps", "100000", "--jobs", "2"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: len(list(out.glob("*/seed-0/checkpoint.pt"))) >= 2)
        workers = _workers(process.pid)
        assert len(workers) == 2
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "run the same command again to resume" in err
    assert "Traceback" not in err
    _wait_for(lambda: not any(_alive(p) for p in workers), seconds=10)
    # the cells stopped part-way kept checkpoints past their start
    from gantrix.checkpoint import load_checkpoint

    steps = [load_checkpoint(p)["step"] for p in out.glob("*/seed-0/checkpoint.pt")]
    assert len(steps) == 2 and min(steps) > 0

    again = subprocess.Popen(_cli(out, "--steps", "100000", "--jobs", "2"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: len(_workers(again.pid)) >= 2)
        workers = _workers(again.pid)
    finally:
        again.kill()
        again.wait()
    _wait_for(lambda: not any(_alive(p) for p in workers), seconds=15)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_a_worker_killed_mid_cell_is_retried_and_the_numbers_hold(tmp_path, uninterrupted):
    out = tmp_path / "ab"
    process = subprocess.Popen(_cli(out, "--steps", "200", "--jobs", "2"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: len(list(out.glob("*/seed-0/checkpoint.pt"))) >= 2
                  and len(_workers(process.pid)) == 2)
        os.kill(_workers(process.pid)[0], signal.SIGKILL)
        _, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "could not run" not in err
    assert values(collect(out, report=lambda line: None)) == values(uninterrupted)
