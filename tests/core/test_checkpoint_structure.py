"""A checkpoint that loads safely but holds the wrong things (`gantrix.checkpoint_structure`):
refused when it is loaded (resume, load, sample), naming the file, the key and what the key
should hold, never a raw TypeError deep inside a resume."""
from __future__ import annotations

import copy
import shutil

import pytest
import torch
from typer.testing import CliRunner

from gantrix import GantrixError, Trainer
from gantrix.checkpoint import save_checkpoint
from gantrix.checkpoint_structure import check_structure
from gantrix.cli.app import create_app
from gantrix.run_state import load_checkpoint


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny finished 2-D run (2 steps; its cache files in a test folder)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANTRIX_CACHE", str(tmp_path_factory.mktemp("cache")))
        out = tmp_path_factory.mktemp("runs") / "tiny"
        Trainer(["wgan", "gradient-penalty"], "ring8", out=out, steps=2, batch_size=16,
                sample_every=0, checkpoint_every=0, threads=1, progress=False).fit()
        yield out


@pytest.fixture(scope="module")
def state(run):
    return load_checkpoint(run / "checkpoint.pt")


def _set(state, key, value):
    """A deep copy of ``state`` with the dotted ``key`` set to ``value`` (or removed, for
    the marker `DELETE`)."""
    changed = copy.deepcopy(state)
    *parents, last = key.split(".")
    table = changed
    for name in parents:
        table = table[name]
    if value is DELETE:
        del table[last]
    else:
        table[last] = value
    return changed


DELETE = object()
MT_BYTES = torch.get_rng_state().numel()

CASES = [
    ("step", "abc", "its 'step' must be an integer of at least 0, got str 'abc'"),
    ("step", -3, "its 'step' must be an integer of at least 0, got int -3"),
    ("d_steps", True, "its 'd_steps' must be an integer of at least 0, got bool True"),
    ("layout", 7, "its 'layout' must be a model layout from 1 to 2, got int 7"),
    ("sampling", ["ema"], "its 'sampling' must be a table with 'tricks' and 'custom_models', "
                          "got list ['ema']"),
    ("sampling.tricks", "ema", "its 'sampling.tricks' must be a list of trick names"),
    ("sampling.custom_models", {"critic": "x"}, "its 'sampling.custom_models' must be a table"),
    ("rng", None, "its 'rng' must be a table of random states"),
    ("rng.torch", torch.zeros(10, dtype=torch.uint8),
     "its 'rng.torch' must be a valid CPU random generator's state (Expected a "
     "CPUGeneratorImplState of size 5056"),
    ("rng.torch", torch.zeros(MT_BYTES, dtype=torch.uint8),
     "its 'rng.torch' must be a valid CPU random generator's state (Invalid mt19937 state)"),
    ("rng.torch", torch.zeros(MT_BYTES), "its 'rng.torch' must be a CPU random generator's "
                                         "state (a uint8 tensor), got a torch.float32 tensor"),
    ("rng.z", "seed", "its 'rng.z' must be a CPU random generator's state"),
    ("rng.z", DELETE, "it has no 'rng.z'"),
    ("rng.cuda", [1, 2], "its 'rng.cuda' must be a CUDA random generator's state"),
    ("data", 3, "its 'data' must be a table (the data's order and random state)"),
    ("data.rng", torch.ones(MT_BYTES, dtype=torch.uint8) * 255,
     "its 'data.rng' must be a valid CPU random generator's state"),
    ("data.order", torch.tensor([0, 7]), "its 'data.order' must be indices from 0 to 1"),
    ("data.order", torch.tensor([0.0, 1.0]), "its 'data.order' must be a 1-D integer tensor"),
    ("data.pos", "x", "its 'data.pos' must be an integer of at least 0"),
    ("models", DELETE, "it has no 'models'"),
    ("models.discriminator", DELETE, "it has no 'models.discriminator'"),
    ("models.generator", [1.0], "its 'models.generator' must be a table of tensors"),
    ("optimizers", [], "its 'optimizers' must be a table of optimizer states"),
    ("tricks", "none", "its 'tricks' must be a table, got str 'none'"),
    ("log.elapsed", float("nan"), "its 'log.elapsed' must be a finite number of seconds"),
    ("log.interval_steps", 1.5, "its 'log.interval_steps' must be an integer of at least 0"),
    ("log.sums", {"d_loss": "1"}, "its 'log.sums.d_loss' must be a number, got str '1'"),
    ("log.counts", {"d_loss": 0}, "its 'log.counts.d_loss' must be an integer of at least 1"),
    ("log", DELETE, "it has no 'log'"),
    ("evaluation", {"metric": "fid", "best": "low"}, "its 'evaluation.best' must be a number"),
]


def test_a_checkpoint_as_written_passes(state, tmp_path):
    assert check_structure(state, tmp_path / "c.pt") is state
    # a position kept as a 0-d tensor and an order of indices, as image data keeps them
    order = {"rng": state["data"]["rng"], "order": torch.tensor([1, 0, 2]), "pos": torch.tensor(3)}
    check_structure(_set(state, "data", {"inner": order, "mirror_rng": order["rng"]}), tmp_path)


@pytest.mark.parametrize("key, value, message", CASES, ids=[f"{k}-{i}" for i, (k, _, _) in
                                                             enumerate(CASES)])
def test_a_wrong_key_is_named_with_what_it_should_hold(state, tmp_path, key, value, message):
    if key == "data.order" or key == "data.pos":  # ring8's data has no order: give it one
        state = _set(state, "data", {**state["data"], "order": torch.tensor([1, 0]), "pos": 1})
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(GantrixError) as caught:
        check_structure(_set(state, key, value), path)
    text = str(caught.value)
    assert text.startswith(f"{path} is damaged or was not written by gantrix: ")
    assert message in text
    assert text.endswith("restore a copy of the checkpoint, or train the run again")


@pytest.fixture
def damaged(run, state, tmp_path):
    """A copy of the run whose checkpoint has ``step = "abc"`` and ``sampling`` a list."""
    copy_ = tmp_path / "damaged"
    shutil.copytree(run, copy_)
    bad = _set(_set(state, "step", "abc"), "sampling", ["ema"])
    save_checkpoint(copy_ / "checkpoint.pt", {k: v for k, v in bad.items()
                                              if k not in ("format", "version")})
    return copy_


def test_resume_load_and_sample_refuse_it_by_name(damaged, monkeypatch, tmp_path):
    monkeypatch.setenv("GANTRIX_CACHE", str(tmp_path / "cache"))
    path = damaged / "checkpoint.pt"
    for open_run in (Trainer.load, Trainer.resume):
        with pytest.raises(GantrixError, match="its 'sampling' must be a table") as caught:
            open_run(damaged)
        assert str(path) in str(caught.value)
    result = CliRunner().invoke(create_app(), ["sample", str(damaged), "--out",
                                               str(tmp_path / "x.npy")])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"error: {path} is damaged or was not written by gantrix")
    assert "Traceback" not in result.output and not (tmp_path / "x.npy").exists()


def test_a_file_where_the_samples_folder_should_be(run, monkeypatch, tmp_path):
    """The run folder's ``samples`` replaced by a file: resuming says so, before it writes."""
    monkeypatch.setenv("GANTRIX_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    shutil.rmtree(folder / "samples")
    (folder / "samples").write_text("not pictures")
    config = (folder / "config.toml").read_text()
    trainer = Trainer.resume(folder, steps=3, progress=False)
    with pytest.raises(GantrixError, match=f"{folder / 'samples'} is not a folder: the run keeps "
                                           f"its sample pictures in a folder of that name"):
        trainer.fit()
    assert (folder / "samples").read_text() == "not pictures"
    assert (folder / "config.toml").read_text() == config and trainer.step == 2
