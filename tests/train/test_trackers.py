"""Trackers (``--log``, `gantrix.trackers`, the ``gantrix_register_trackers`` hook): the
built-in TensorBoard and W&B trackers get every metrics line and sample picture (read back
with TensorBoard's own reader; an offline W&B run written without a network); a missing
package or an unknown name stops the run before any file is written; a third-party tracker
registers like a trick; trackers never change what is trained."""
from __future__ import annotations

import importlib.util
import json
import sys
import time
import warnings

import pytest
import torch

from gantrix import GantrixError, Trainer, UnknownNameError, registry
from gantrix.errors import GantrixWarning
from gantrix.trackers import Tracking, numbers_of

#: a fast 2-D run: 10 steps, a metrics line every 2, a picture at step 5 and at the end
RUN = dict(steps=10, batch_size=16, latent_dim=2, width=16, log_every=2, sample_every=5,
           checkpoint_every=0, progress=False)
HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
HAS_WANDB = importlib.util.find_spec("wandb") is not None
needs_tensorboard = pytest.mark.skipif(
    not HAS_TENSORBOARD, reason="tensorboard is not installed (pip install -e '.[tensorboard]')")
needs_wandb = pytest.mark.skipif(
    not HAS_WANDB, reason="wandb is not installed (pip install -e '.[wandb]')")

RECORDER = '''
from gantrix.plugin import hookimpl

CALLS = []


class Recorder:
    """Records every call (a test tracker from a third-party distribution)."""

    def __init__(self, run_dir, config, step):
        CALLS.append(("open", run_dir, dict(config), step))

    def log_metrics(self, values, step):
        CALLS.append(("metrics", dict(values), step))

    def log_image(self, name, path, step):
        CALLS.append(("image", name, path, step))

    def close(self):
        CALLS.append(("close",))


@hookimpl
def gantrix_register_trackers(register):
    register("t-recorder", Recorder)
'''


@pytest.fixture(autouse=True)
def wandb_offline(monkeypatch, tmp_path):
    """W&B as on a machine never logged in: no key, its own folders under the test's."""
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_CONSOLE",
                 "WANDB_PROJECT", "WANDB_DIR", "WANDB_SILENT"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # no ~/.netrc: no `wandb login`
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture
def recorder(install):
    """The test tracker ``t-recorder``, installed as distribution ``gx-recorder``; returns
    the list its calls go to."""
    install("gx-recorder", {"gx_recorder": RECORDER}, {"recorder": "gx_recorder"})
    registry.catalogue()
    return sys.modules["gx_recorder"].CALLS


def _rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _weights(trainer):
    return {f"{role}.{k}": v.clone() for role in ("generator", "discriminator")
            for k, v in trainer.models.by_role(role).state_dict().items()}


# --------------------------------------------------------------------------- TensorBoard


def _events(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    reader = EventAccumulator(str(run / "tensorboard"),
                              size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    reader.Reload()
    return reader


def _assert_scalars_match_metrics(run):
    reader, rows = _events(run), _rows(run)
    names = sorted({k for row in rows for k in numbers_of(row)})
    assert set(reader.Tags()["scalars"]) == set(names)
    for name in names:
        logged = [(e.step, e.value) for e in reader.Scalars(name)]
        kept = [(r["step"], r[name]) for r in rows if r.get(name) is not None]
        assert [s for s, _ in logged] == [s for s, _ in kept], name
        # TensorBoard keeps float32
        assert [v for _, v in logged] == pytest.approx([v for _, v in kept], rel=1e-6), name
    return reader


@needs_tensorboard
def test_tensorboard_gets_every_metrics_line_and_picture(tmp_path):
    run = tmp_path / "run"
    Trainer("nonsaturating", "ring8", out=run, log="tensorboard", **RUN).fit()
    reader = _assert_scalars_match_metrics(run)
    assert {"d_loss", "g_loss", "grad_norm/generator", "step_time"} <= set(reader.Tags()["scalars"])
    assert [r["step"] for r in _rows(run)] == [2, 4, 6, 8, 10]
    from PIL import Image

    images = reader.Images("samples")
    assert [i.step for i in images] == [5, 10]
    with Image.open(run / "samples" / "step_000010.png") as png:
        assert (images[-1].width, images[-1].height) == png.size
    assert "config/text_summary" in reader.Tags()["tensors"]


@needs_tensorboard
def test_a_resumed_run_shows_in_tensorboard_what_metrics_jsonl_keeps(tmp_path):
    """An interrupted session may have logged past its last checkpoint: the resumed one
    hides those events (purge), as metrics.jsonl drops those lines."""
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "run"
    Trainer("nonsaturating", "ring8", out=run, log="tensorboard", **RUN).fit()
    time.sleep(1.1)  # event files are ordered by the second they were opened in
    stale = SummaryWriter(str(run / "tensorboard"))  # what a killed session left after step 10
    stale.add_scalar("d_loss", 999.0, 12)
    stale.close()
    time.sleep(1.1)
    Trainer.resume(run, steps=16).fit()
    assert [r["step"] for r in _rows(run)] == [2, 4, 6, 8, 10, 12, 14, 16]
    assert 999.0 not in [e.value for e in _assert_scalars_match_metrics(run).Scalars("d_loss")]


# --------------------------------------------------------------------------- W&B


def _wandb_runs(run):
    return sorted((run / "wandb").glob("offline-run-*"))


@needs_wandb
def _flushed(path, names, timeout=30.0) -> bytes:
    """The W&B record file once it holds every name: W&B's own service process writes it,
    and on a busy machine it may still be writing the last rows when the run has ended."""
    deadline = time.monotonic() + timeout
    while True:
        record = path.read_bytes()
        if all(n.encode() in record for n in names) or time.monotonic() > deadline:
            return record
        time.sleep(0.2)


def test_wandb_without_a_key_writes_an_offline_run_in_the_run_folder(tmp_path):
    run = tmp_path / "run"
    Trainer("nonsaturating", "ring8", out=run, log="wandb", **RUN).fit()
    [folder] = _wandb_runs(run)
    run_id = (run / "wandb" / "gantrix-run-id").read_text().strip()
    last = _rows(run)[-1]
    names = ("d_loss", "g_loss", "grad_norm/generator", "batch_size", "nonsaturating")
    record = _flushed(folder / f"run-{run_id}.wandb", (*names, json.dumps(last["d_loss"])))
    for name in names:
        assert name.encode() in record, name  # metrics, settings and tricks, as W&B keeps them
    assert json.dumps(last["d_loss"]).encode() in record
    time.sleep(1.1)  # W&B names a session's folder by the second it started in
    Trainer.resume(run, steps=12).fit()  # the resumed session continues the same W&B run
    assert [p.name.endswith(run_id) for p in _wandb_runs(run)] == [True, True]


@needs_wandb
def test_wandb_respects_wandb_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run = tmp_path / "run"
    Trainer("nonsaturating", "ring8", out=run, log="wandb", **RUN).fit()
    assert _wandb_runs(run) == [] and len(_rows(run)) == 5


# --------------------------------------------------------------------------- before any file


@pytest.mark.parametrize("tracker, package", [("tensorboard", "tensorboard"), ("wandb", "wandb")])
def test_a_missing_package_names_the_extra_before_any_file(tmp_path, monkeypatch, cli, tracker,
                                                           package):
    monkeypatch.setitem(sys.modules, package, None)  # `import package` fails, as uninstalled
    run = tmp_path / "run"
    with pytest.raises(GantrixError, match=rf"tracker '{tracker}' needs {package}.*"
                                           rf"pip install -e '\.\[{tracker}\]'"):
        Trainer("nonsaturating", "ring8", out=run, log=tracker, **RUN)
    result = cli("train", "--trick", "nonsaturating", "--data", "ring8", "--steps", "2",
                 "--quiet", "--log", f"{tracker}", "--out", run)
    assert result.exit_code == 2, result.output
    assert f"pip install 'gantrix[{tracker}]'" in result.output and "Traceback" not in result.output
    assert not run.exists()


def test_an_unknown_tracker_suggests_the_close_name(tmp_path, cli):
    with pytest.raises(UnknownNameError, match=r"--log: unknown tracker 'tensorbord'; did you "
                                               r"mean 'tensorboard'\?"):
        Trainer("nonsaturating", "ring8", out=tmp_path / "a", log="tensorbord", **RUN)
    result = cli("train", "--trick", "nonsaturating", "--data", "ring8", "--quiet",
                 "--log", "tensorboard,wandbb", "--out", tmp_path / "b")
    assert result.exit_code == 2 and "did you mean 'wandb'?" in result.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(UnknownNameError, match="the trackers there are: .*tensorboard, wandb"):
        Trainer("nonsaturating", "ring8", out=tmp_path / "c", log="zzz", **RUN)


def test_trackers_need_a_run_folder():
    with pytest.raises(GantrixError, match="trackers log a run that has a folder"):
        Trainer("nonsaturating", "ring8", log="wandb", **RUN)
    Trainer("nonsaturating", "ring8", log=" none ", **RUN)  # none, as for any optional setting


@needs_tensorboard
def test_a_run_loads_to_sample_where_its_tracker_is_missing(tmp_path, monkeypatch):
    run = tmp_path / "run"
    Trainer("nonsaturating", "ring8", out=run, log="tensorboard", **RUN).fit()
    assert 'log = "tensorboard"' in (run / "config.toml").read_text()
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    assert Trainer.load(run).sample(4).shape == (4, 2)  # gantrix sample / eval need no tracker
    with pytest.raises(GantrixError, match="needs tensorboard"):
        Trainer.resume(run, steps=12)  # training on does


def test_resume_keeps_the_runs_trackers(tmp_path, cli, recorder):
    run = tmp_path / "run"
    Trainer("nonsaturating", "ring8", out=run, log="t-recorder", **RUN).fit()
    result = cli("train", "--resume", run, "--log", "tensorboard")
    assert result.exit_code == 2 and "drop --log" in result.output
    recorder.clear()
    Trainer.resume(run, steps=12).fit()
    assert recorder[0][0] == "open" and recorder[0][3] == 10  # the step it starts from


# --------------------------------------------------------------------------- plugins


def test_a_third_party_tracker_gets_the_rows_pictures_and_config(tmp_path, recorder):
    entry = registry.trackers()["t-recorder"]
    assert (entry.plugin, entry.summary) == ("gx-recorder", "Records every call (a test "
                                             "tracker from a third-party distribution).")
    info = next(p for p in registry.catalogue().plugins if p.name == "recorder")
    assert info.trackers == ["t-recorder"] and info.hooks == ["gantrix_register_trackers"]
    assert {"tensorboard", "wandb", "t-recorder"} <= set(registry.trackers())

    run = tmp_path / "run"
    trainer = Trainer("nonsaturating", "ring8", out=run, log="t-recorder", **RUN).fit()
    kinds = [c[0] for c in recorder]
    assert kinds[0] == "open" and kinds[-1] == "close" and kinds.count("close") == 1
    _, run_dir, config, step = recorder[0]
    assert (run_dir, step) == (run, 0)
    assert config["tricks"] == ["nonsaturating"] and config["log"] == "t-recorder"
    assert config["batch_size"] == 16 and config["data"] == "ring8"
    metrics = [(c[2], c[1]) for c in recorder if c[0] == "metrics"]
    assert metrics == [(r["step"], numbers_of(r)) for r in _rows(run)]
    images = [(c[1], c[2], c[3]) for c in recorder if c[0] == "image"]
    assert images == [("samples", run / "samples" / f"step_{s:06d}.png", s) for s in (5, 10)]

    # an evaluation row (or any row the run adds) goes through the same public door
    trainer.tracking.log_metrics({"step": 10, "eval/x": 1.0})  # closed: nothing more
    assert recorder[-1] == ("close",)


def test_evaluation_rows_reach_the_trackers(tmp_path, recorder):
    run = tmp_path / "run"
    Trainer("nonsaturating", "ring8", out=run, log="t-recorder", eval_every=5, eval_n=100,
            **{**RUN, "sample_every": 0}).fit()
    evaluations = [(c[2], c[1]) for c in recorder if c[0] == "metrics" and "eval/modes" in c[1]]
    assert evaluations == [(r["step"], numbers_of(r)) for r in _rows(run) if "eval/modes" in r]
    assert [step for step, _ in evaluations] == [5, 10]


def test_only_the_writing_process_opens_trackers(tmp_path, recorder):
    tracking = Tracking("t-recorder", tmp_path, writer=False)
    with tracking.open({}, 0):
        tracking.log_metrics({"step": 1, "d_loss": 1.0})
    assert recorder == [] and tracking.names == []
    with Tracking("t-recorder", tmp_path).open({}, 0) as tracking:
        assert tracking.names == ["t-recorder"]
        tracking.log_metrics({"step": 1, "d_loss": 1, "note": "text", "flag": True, "x": None})
        tracking.log_image("samples", tmp_path / "absent.png", 1)  # no file: nothing sent
    assert recorder[1:] == [("metrics", {"d_loss": 1.0}, 1), ("close",)]


BROKEN = '''
from gantrix.plugin import hookimpl


class Fails:
    def __init__(self, run_dir, config, step):
        if config.get("seed") == 7:
            raise RuntimeError("no server")

    def log_metrics(self, values, step):
        raise ConnectionError("lost the server")


@hookimpl
def gantrix_register_trackers(register):
    register("t-flaky", Fails)

'''

BAD_NAME = '''
from gantrix.plugin import hookimpl

@hookimpl
def gantrix_register_trackers(register):
    register("t-good", object)
    register("Bad_Name", object)
'''

TAKEN = '''
from gantrix.plugin import hookimpl

@hookimpl
def gantrix_register_trackers(register):
    register("tensorboard", object)
'''


def test_a_broken_tracker_plugin_is_isolated(install):
    install("gx-bad", {"gx_bad": BAD_NAME}, {"bad": "gx_bad"})
    install("gx-taken", {"gx_taken": TAKEN}, {"taken": "gx_taken"})
    cat = registry.catalogue()
    bad = next(p for p in cat.plugins if p.name == "bad")
    taken = next(p for p in cat.plugins if p.name == "taken")
    assert "tracker name 'Bad_Name' is not kebab-case" in bad.error and bad.trackers == []
    assert "tracker 'tensorboard' is already registered by gantrix" in taken.error
    assert "t-good" not in cat.trackers  # a failed plugin contributes nothing
    assert cat.trackers["tensorboard"].plugin == "gantrix"
    with pytest.raises(UnknownNameError, match="failed to load"):
        cat.tracker("t-good", where="--log")


def test_a_tracker_that_fails_warns_and_training_goes_on(tmp_path, install):
    install("gx-flaky", {"gx_flaky": BROKEN}, {"flaky": "gx_flaky"})
    with pytest.warns(GantrixWarning, match="tracker 't-flaky' .*failed in log_metrics: "
                                            "ConnectionError: lost the server; it gets nothing"):
        trainer = Trainer("nonsaturating", "ring8", out=tmp_path / "a", log="t-flaky",
                          **RUN).fit()
    assert trainer.step == 10 and len(_rows(tmp_path / "a")) == 5
    with pytest.raises(GantrixError, match="tracker 't-flaky' \\(gx-flaky\\) could not open "
                                           ".*RuntimeError: no server"):
        Trainer("nonsaturating", "ring8", out=tmp_path / "b", log="t-flaky", seed=7, **RUN).fit()


# --------------------------------------------------------------------------- no effect


def test_trackers_leave_the_training_unchanged(tmp_path, recorder):
    """Every tracker that can run here, on a composition that uses every random stream."""
    recipe = ["wgan", "gradient-penalty", "n-critic:2"]
    names = ["t-recorder"] + ["tensorboard"] * HAS_TENSORBOARD + ["wandb"] * HAS_WANDB
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logged = Trainer(recipe, "ring8", out=tmp_path / "logged", log=",".join(names),
                         **RUN).fit()
    assert not [w for w in caught if "tracker" in str(w.message)]  # none failed
    plain = Trainer(recipe, "ring8", out=tmp_path / "plain", **RUN).fit()
    a, b = _weights(logged), _weights(plain)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("step_time", "elapsed")}
                          for r in rows]
    assert strip(_rows(tmp_path / "logged")) == strip(_rows(tmp_path / "plain"))
