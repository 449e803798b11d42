"""Run-folder files follow the umask (0666 less it), as metrics.jsonl always did: not the
0600 of a temporary file, so collaborators can open a run's samples and checkpoints."""
from __future__ import annotations

import os
import stat

import pytest

from gantrix import Trainer
from gantrix.atomic import umask, write_atomic


@pytest.fixture(params=[0o022, 0o027, 0o002])
def mask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_atomic_files_get_the_mode_of_a_new_file(tmp_path, mask):
    assert umask() == mask and os.umask(mask) == mask  # read, and left as it was
    write_atomic(tmp_path / "a", b"x")
    write_atomic(tmp_path / "a", b"y")  # replaced: the same
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o666 & ~mask


def test_every_file_of_a_run_folder_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        trainer = Trainer(["nonsaturating"], "ring8", out=tmp_path / "run", steps=4,
                          batch_size=8, latent_dim=4, sample_every=2, checkpoint_every=2,
                          log_every=2, progress=False).fit()
        trainer.evaluate(n=100)
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "run").rglob("*")]
    names = {p.name for p in files}
    assert {"checkpoint.pt", "config.toml", "eval.json", "losses.png", "metrics.jsonl",
            "step_000002.png", ".lock"} <= names
    for path in files:
        expected = 0o750 if path.is_dir() else 0o640
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
