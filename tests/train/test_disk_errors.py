"""A full disk or a folder that cannot be written is a user's error, not a traceback: what
failed, which checkpoint is intact (its step), and the command to continue
(`gantrix.run_folder.writing`); `sample` and `eval` say what they could not save, and
`eval` prints its results first. A full disk comes from a mocked write and from a real
file-size limit (RLIMIT_FSIZE); read-only folders from chmod (skipped as root, whom
permissions do not stop) and from a mocked refusal."""
from __future__ import annotations

import errno
import io
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
import torch

from gantrix import Trainer, checkpoint, run_folder
from gantrix.atomic import atomic_file
from gantrix.checkpoint import load_checkpoint

from folder_state import digests

RUN = ["--trick", "nonsaturating", "--data", "ring8", "--batch-size", "8", "--latent-dim",
       "4", "--sample-every", "0", "--quiet"]


def _permissions_ignored() -> bool:
    """Whether this process writes into a read-only folder anyway (root, as a rule)."""
    folder = tempfile.mkdtemp()
    try:
        os.chmod(folder, 0o555)
        try:
            open(os.path.join(folder, "x"), "w").close()
            return True
        except PermissionError:
            return False
    finally:
        os.chmod(folder, 0o755)
        shutil.rmtree(folder)


AS_ROOT = pytest.mark.skipif(os.geteuid() == 0 and _permissions_ignored(),
                             reason="root writes read-only folders")


def _fails_after(monkeypatch, calls: int, error: int):
    """checkpoint's writer, failing with ``error`` half-way through its ``calls+1``-th file
    (as a disk filling up: the write itself fails, naming no file)."""
    real, done = checkpoint.write_atomic, []

    def write(path, data):
        if len(done) < calls:
            done.append(path)
            return real(path, data)
        with atomic_file(path) as f:
            f.write(data[: len(data) // 2])
            raise OSError(error, os.strerror(error))

    monkeypatch.setattr(checkpoint, "write_atomic", write)


def test_a_full_disk_at_a_checkpoint_keeps_the_last_one_and_says_how_to_continue(
        cli, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _fails_after(monkeypatch, 2, errno.ENOSPC)  # step 0 and step 5 are written, step 10 not
    result = cli("train", *RUN, "--steps", "20", "--checkpoint-every", "5", "--out", out)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert (f"error: could not write {out / 'checkpoint.pt'} (No space left on device; free "
            f"some space); the last checkpoint (step 5) is kept in {out}; continue with "
            f"gantrix train --resume {out}") in result.stderr
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 5  # whole
    assert not list(out.glob(".*.tmp"))
    monkeypatch.undo()  # space freed
    result = cli("train", "--resume", out)
    assert result.exit_code == 0 and "from step 5 of 20" in result.stderr, result.output


def test_a_file_size_limit_stops_a_real_run_with_the_message(tmp_path):
    """RLIMIT_FSIZE between the size of the first checkpoint (no optimizer state yet) and
    the later ones: the kernel refuses the write (EFBIG)."""
    resource = pytest.importorskip("resource")
    trainer = Trainer(["nonsaturating"], "ring8", steps=1, batch_size=8, latent_dim=4)
    sizes = []
    for _ in range(2):
        buffer = io.BytesIO()
        torch.save(trainer.state_dict(), buffer)
        sizes.append(len(buffer.getvalue()))
        trainer.fit()
    limit = (sizes[0] + sizes[1]) // 2
    assert sizes[0] + 4096 < limit < sizes[1] - 4096

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "gantrix.cli", "train", *RUN, "--steps", "20",
         "--checkpoint-every", "10", "--out", str(out)],
        env={**os.environ, "GANTRIX_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"},
        preexec_fn=limited, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert (f"error: could not write {out / 'checkpoint.pt'} (File too large; free some "
            f"space); the last checkpoint (step 0) is kept in {out}") in proc.stderr
    assert "Traceback" not in proc.stderr
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 0
    assert not list(out.glob(".*.tmp"))


def test_a_folder_refused_mid_run_names_the_folder_to_make_writable(cli, tmp_path,
                                                                    monkeypatch):
    """What root (or a file system turned read-only) meets only when writing: EACCES."""
    out = tmp_path / "run"
    _fails_after(monkeypatch, 1, errno.EACCES)
    result = cli("train", *RUN, "--steps", "20", "--checkpoint-every", "10", "--out", out)
    assert result.exit_code == 2, result.output
    assert (f"could not write {out / 'checkpoint.pt'} (Permission denied; make {out} "
            f"writable); the last checkpoint (step 0) is kept in {out}") in result.stderr


def test_an_unrelated_os_error_is_not_dressed_as_a_disk_error(tmp_path, monkeypatch):
    """A permission error on a file outside the run folder is not the folder's."""
    trainer = Trainer(["nonsaturating"], "ring8", out=tmp_path / "run", steps=2, batch_size=8,
                      progress=False)

    def elsewhere():
        raise PermissionError(errno.EACCES, "Permission denied", "/somewhere/else.npy")

    monkeypatch.setattr(trainer, "_pull", lambda: elsewhere())
    with pytest.raises(PermissionError):
        trainer.fit()


@pytest.fixture
def trained(cli, tmp_path):
    out = tmp_path / "run"
    result = cli("train", *RUN, "--steps", "10", "--checkpoint-every", "5", "--out", out)
    assert result.exit_code == 0, result.output
    return out


def _read_only(monkeypatch, folder):
    """``folder`` as `os.access` sees a read-only one (the early checks ask it)."""
    real = os.access

    def access(path, mode, **kw):
        if mode & os.W_OK and os.path.abspath(path) == str(folder.absolute()):
            return False
        return real(path, mode, **kw)

    monkeypatch.setattr(os, "access", access)


def test_a_read_only_run_is_refused_for_resume_with_its_checkpoint_step(cli, trained,
                                                                        monkeypatch):
    _read_only(monkeypatch, trained)
    before = digests(trained)
    result = cli("train", "--resume", trained, "--steps", "20")
    assert result.exit_code == 2, result.output
    assert (f"cannot write {trained}: it is not writable (a resumed run writes its "
            f"checkpoint there; make it writable); the last checkpoint (step 10) is kept in "
            f"{trained}; continue with gantrix train --resume {trained}") in result.stderr
    assert digests(trained) == before


def test_a_read_only_out_is_refused_before_training(cli, tmp_path, monkeypatch):
    parent = tmp_path / "shared"
    parent.mkdir()
    _read_only(monkeypatch, parent)
    result = cli("train", *RUN, "--steps", "10", "--out", parent / "new")
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert (f"cannot write --out {parent / 'new'}: {parent} is not writable; choose another "
            f"--out") in result.stderr
    assert not (parent / "new").exists()


def test_sample_into_a_read_only_folder_is_refused(cli, trained, tmp_path, monkeypatch):
    folder = tmp_path / "pictures"
    folder.mkdir()
    _read_only(monkeypatch, folder)
    result = cli("sample", trained, "--out", folder / "x.png")
    assert result.exit_code == 2, result.output
    assert f"cannot write --out {folder / 'x.png'}: its folder {folder} is not writable" \
        in result.stderr


def test_sample_whose_write_fails_says_so(cli, trained, tmp_path, monkeypatch):
    import gantrix.atomic

    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(gantrix.atomic, "write_atomic", full)
    monkeypatch.setattr(checkpoint, "write_atomic", full)
    result = cli("sample", trained, "--out", tmp_path / "x.npy")
    assert result.exit_code == 2, result.output
    assert (f"could not write --out {tmp_path / 'x.npy'} (No space left on device); nothing "
            f"was saved") in result.stderr


def test_eval_prints_its_results_before_a_failed_save(cli, trained, monkeypatch):
    import gantrix.evaluation

    def refused(path, data):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(gantrix.evaluation, "write_atomic", refused)
    result = cli("eval", trained, "--n", "200")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("step 10: modes ")
    assert f"could not write {trained / 'eval.json'} (Permission denied); the results above " \
        "are not saved" in result.stderr


@AS_ROOT
def test_read_only_folders_for_real(cli, trained, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    try:
        for path in (trained, *trained.iterdir(), ro):
            path.chmod(path.stat().st_mode & ~0o222)
        result = cli("train", "--resume", trained, "--steps", "20")
        assert result.exit_code == 2 and "the last checkpoint (step 10)" in result.stderr
        result = cli("train", *RUN, "--steps", "10", "--out", ro / "new")
        assert result.exit_code == 2 and f"{ro} is not writable" in result.stderr
        result = cli("sample", trained, "--out", ro / "x.png")
        assert result.exit_code == 2 and f"its folder {ro} is not writable" in result.stderr
        result = cli("eval", trained, "--n", "200")
        assert result.exit_code == 0 and result.stdout.startswith("step 10: ")
        assert "eval.json (Permission denied)" in result.stderr
    finally:
        for path in (trained, *trained.iterdir(), ro):
            path.chmod(path.stat().st_mode | 0o200)


def test_metrics_lines_on_a_full_disk_name_their_file(tmp_path, monkeypatch):
    """metrics.jsonl is appended to, not replaced: its failed write is named too."""
    out = tmp_path / "run"
    out.mkdir()

    class Full(io.StringIO):
        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("builtins.open", lambda *a, **k: Full())
    with pytest.raises(run_folder.GantrixError) as caught:
        with run_folder.writing(out, lambda: "the last checkpoint (step 3) is kept",
                                new=False, prepare=lambda: None):
            run_folder.append_metrics(out, {"step": 4})
    assert str(caught.value) == (f"could not write {out / 'metrics.jsonl'} (No space left on "
                                 f"device; free some space); the last checkpoint (step 3) is "
                                 f"kept")
