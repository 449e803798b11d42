"""``gantrix bench quality`` on a tiny grid: the table, the command, and kept notes."""
from __future__ import annotations

from gantrix.benchmark import BEGIN, END


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
    assert all(" ± " in row and "| 2 × " in row for row in rows)
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
