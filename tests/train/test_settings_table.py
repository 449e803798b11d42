"""The run's settings are declared once (`gantrix.settings.Settings`): the Trainer's
keywords, ``gantrix train``'s options, the config's ``[train]`` table and what ``--resume``
keeps fixed all follow that table, so a new setting appears everywhere at once."""
import inspect
import json
from dataclasses import fields

import typer

from gantrix import Trainer
from gantrix.settings import FIXED_ON_RESUME, SETTINGS, Settings

RUN = ["--steps", "4", "--batch-size", "8", "--quiet"]


def _train_options(app) -> dict[str, object]:
    command = typer.main.get_command(app).commands["train"]
    return {param.name: param for param in command.params}


def test_every_setting_is_a_trainer_keyword_and_a_train_option(app):
    keywords = inspect.signature(Trainer).parameters
    options = _train_options(app)
    for name, param in SETTINGS.items():
        assert name in keywords, name
        assert f"--{name.replace('_', '-')}" in options[name].opts, name
        assert options[name].is_flag == (param.type is bool), name
    assert [f.name for f in fields(Settings)] == list(SETTINGS)


def test_resume_keeps_what_shapes_the_training():
    assert {"steps", "device", "eval_every"} <= set(SETTINGS) - set(FIXED_ON_RESUME)
    assert {"data", "batch_size", "seed", "precision", "latent_dim", "width", "lr",
            "image_size", "mirror", "eval_metric", "eval_n"} <= set(FIXED_ON_RESUME)


def test_a_setting_without_a_hand_written_option_works_from_the_cli(cli, tmp_path):
    """log_every had no option before the table; it has one now, and it reaches the run."""
    out = tmp_path / "run"
    result = cli("train", "--trick", "nonsaturating", "--data", "ring8", *RUN,
                 "--log-every", "2", "--out", out)
    assert result.exit_code == 0, result.output
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4]
    assert "log_every = 2" in (out / "config.toml").read_text()
    again = cli("train", "--resume", out, "--log-every", "1")
    assert again.exit_code == 2 and "drop --log-every" in again.output


def test_an_unknown_trainer_keyword_names_the_settings():
    import pytest

    from gantrix import GantrixError

    with pytest.raises(GantrixError, match=r"unknown setting\(s\) stpes \(did you mean steps\?\); allowed: data, steps"):
        Trainer("nonsaturating", "ring8", stpes=3)


def test_resume_takes_what_may_change_and_refuses_the_rest(tmp_path):
    import pytest

    from gantrix import GantrixError

    out = tmp_path / "run"
    Trainer("nonsaturating", "ring8", out=out, steps=2, batch_size=8, progress=False).fit()
    resumed = Trainer.resume(out, steps=4, eval_every=2, progress=False)
    assert (resumed.settings.steps, resumed.settings.eval_every) == (4, 2)
    with pytest.raises(GantrixError, match="keeps its batch_size, seed as it was configured"):
        Trainer.resume(out, seed=3, batch_size=4)
