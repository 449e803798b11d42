"""``gantrix bench quality`` on a tiny grid: the table, the command, and kept notes."""
from __future__ import annotations

import pytest

from gantrix.benchmark import BEGIN, END, UNSTABLE, UNSTABLE_NOTE, Cell, quality_grid, tables


def _ring(seed: int, modes: int, hq: float, total: int = 8) -> dict:
    return {"modes": modes, "total_modes": total, "high_quality": hq, "kl": 0.1,
            "seconds": 100.0, "seed": seed}


def test_the_worst_seed_and_a_seed_dependent_cell_are_shown():
    steady = Cell("wgan-gp", "ring8", [_ring(0, 8, 94.0), _ring(1, 8, 94.7), _ring(2, 8, 94.5)],
                  steps=4000, batch_size=64)
    lucky = Cell("rasgan", "grid25", [_ring(0, 25, 93.7, 25), _ring(1, 24, 51.4, 25),
                                      _ring(2, 24, 15.2, 25)],
                 steps=12000, batch_size=256)
    text = tables([steady, lucky])
    row = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
    assert row["wgan-gp"] == ("| wgan-gp | 4000 × 64 | 8.0 ± 0.0 | 94.4 ± 0.4 | 0.10 ± 0.00 | "
                              "8/8, 94.0 % (seed 0) | 100 ± 0 |")
    # std 39.3 > mean 53.4 / 4: flagged, with the note under the table
    assert f"| 53.4 ± 39.3 {UNSTABLE} |" in row["rasgan"] and "24/25, 15.2 % (seed 2)" in row["rasgan"]
    assert text.count(UNSTABLE_NOTE) == 1
    assert UNSTABLE not in tables([steady])


def test_one_seed_has_no_worst_seed_column():
    text = tables([Cell("wgan-gp", "ring8", [_ring(0, 8, 94.0)], steps=1, batch_size=1)])
    assert "worst seed" not in text and "| 94.0 |" in text


def test_runs_side_by_side_give_the_numbers_of_one_at_a_time():
    lines = []
    kw = dict(steps=3, report=lines.append)
    alone = quality_grid(["nonsaturating", "wgan-gp"], ["ring8"], 2, **kw)
    together = quality_grid(["nonsaturating", "wgan-gp"], ["ring8"], 2, jobs=2, **kw)
    for a, b in zip(alone, together):
        assert (a.recipe, a.steps, a.batch_size) == (b.recipe, b.steps, b.batch_size)
        for x, y in zip(a.runs, b.runs):
            assert x["seed"] == y["seed"]
            assert (x["modes"], x["high_quality"], x["kl"]) == pytest.approx(
                (y["modes"], y["high_quality"], y["kl"]))
    assert len(lines) == 8 and lines[4].startswith("nonsaturating on ring8, seed 0")


def test_a_cell_that_cannot_run_is_reported_from_a_worker_too():
    lines = []
    (cell,) = quality_grid(["cgan"], ["ring8"], 2, steps=2, jobs=2, report=lines.append)
    assert not cell.runs and "cannot run" in lines[0]
    assert "[cgan] conditioning on class labels needs labelled data" in cell.error


def test_jobs_must_be_positive(cli, tmp_path):
    result = cli("bench", "quality", "-r", "wgan-gp", "-d", "ring8", "--jobs", "0",
                 "--out", tmp_path / "r.md")
    assert result.exit_code == 2 and "--jobs must be at least 1, got 0" in result.stderr


def test_quality_grid_writes_tables_and_keeps_notes(cli, tmp_path):
    out = tmp_path / "results.md"
    args = ["bench", "quality", "-r", "nonsaturating", "-r", "wgan-gp", "-d", "ring8",
            "--seeds", "2", "--steps", "2", "--out", out]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert ("`gantrix bench quality -r nonsaturating -r wgan-gp -d ring8 --seeds 2 --steps 2 "
            f"--out {out}`") in text
    assert "### ring8" in text and "| modes (of 8) |" in text
    rows = [line for line in text.splitlines() if line.startswith("| nonsaturating")
            or line.startswith("| wgan-gp")]
    assert len(rows) == 2
    assert all(" ± " in row and "| 2 × " in row and "(seed " in row for row in rows)
    assert "| worst seed |" in text
    assert "seed 1" in result.stderr
    out.write_text("# Results\n\nNotes before.\n\n" + text[text.index(BEGIN):] + "\nNotes after.\n")
    assert cli(*args).exit_code == 0
    again = out.read_text()
    assert again.startswith("# Results\n\nNotes before.") and again.endswith("Notes after.\n")
    assert again.count(BEGIN) == 1


def test_unknown_recipe_fails_before_any_run(cli, tmp_path):
    result = cli("bench", "quality", "-r", "wgan-gpx", "-d", "ring8", "--out", tmp_path / "r.md")
    assert result.exit_code == 2 and "unknown trick 'wgan-gpx'" in result.stderr
    assert not (tmp_path / "r.md").exists()


def test_an_interrupted_run_stops_the_benchmark(monkeypatch):
    """Ctrl-C (or SIGTERM) inside a run ends the grid; it is not a cell that cannot run."""
    from gantrix import benchmark
    from gantrix.trainer import TrainingInterrupted

    def stopped(*args):
        raise TrainingInterrupted("interrupted by SIGTERM", 15)

    monkeypatch.setattr(benchmark, "run_one", stopped)
    lines = []
    with pytest.raises(TrainingInterrupted):
        quality_grid(["nonsaturating", "wgan-gp"], ["ring8"], 2, steps=2, report=lines.append)
    assert lines == []


def test_a_seed_that_drops_modes_is_the_worst_and_flagged():
    """rahinge on ring8: two seeds collapse onto one mode at ~99 % high quality; they, not
    the seed at 92 % on six modes, are the worst, and the modes column is flagged."""
    cell = Cell("rahinge", "ring8", [_ring(0, 6, 92.2), _ring(1, 1, 99.0), _ring(2, 1, 99.9)],
                steps=12000, batch_size=256)
    (row,) = [line for line in tables([cell]).splitlines() if line.startswith("| rahinge")]
    assert f"| 2.7 ± 2.9 {UNSTABLE} | 97.0 ± 4.2 |" in row and "1/8, 99.0 % (seed 1)" in row
