"""gantrix's own trackers: TensorBoard and Weights & Biases (``gantrix train --log ...``).

Each is an optional extra of gantrix (``pip install 'gantrix[tensorboard]'``, ``'[wandb]'``)
and imports its package only when a run asks for it. Both write inside the run folder:

- ``tensorboard``: `torch.utils.tensorboard.SummaryWriter` into ``RUN/tensorboard``; a
  scalar per number of every metrics line (tagged as in metrics.jsonl: ``d_loss``,
  ``grad_norm/generator``, ...), the sample pictures as images (``samples``) and the run's
  configuration as text. A resumed session purges what an interrupted one logged after the
  checkpoint, so TensorBoard shows what metrics.jsonl keeps. ``tensorboard --logdir RUN``.
- ``wandb``: a W&B run in ``RUN/wandb``, named after the run folder, in project
  ``$WANDB_PROJECT`` (default ``gantrix``), with the run's settings as its config, a chart
  per number against ``step``, and the sample pictures. ``WANDB_MODE`` is respected; without
  it the run is online only where an API key is set up (``WANDB_API_KEY`` or ``wandb
  login``), else offline: no network needed, ``wandb sync RUN/wandb/offline-run-*`` uploads
  it later. A resumed run continues the same W&B run (its id is kept in the folder).

Neither draws a random number from torch (the W&B run id comes from `secrets`).
"""
from __future__ import annotations

import json
import netrc
import os
import secrets
import string
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

from gantrix.plugin import hookimpl

TENSORBOARD_FOLDER = "tensorboard"
WANDB_FOLDER = "wandb"
#: the W&B run id of a run folder (so a resumed run continues the same W&B run)
WANDB_ID_FILE = "gantrix-run-id"


def _install(extra: str) -> str:
    return (f"pip install 'gantrix[{extra}]' (from a gantrix checkout: "
            f"pip install -e '.[{extra}]')")


class TensorBoardTracker:
    """TensorBoard event files in RUN/tensorboard: every metric, the sample pictures."""

    def __init__(self, run_dir: Path, config: Mapping[str, Any], step: int):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: events an interrupted session wrote after the checkpoint are hidden
        self.writer = SummaryWriter(str(Path(run_dir) / TENSORBOARD_FOLDER),
                                    purge_step=step + 1 if step else None)
        if not step:
            text = json.dumps(dict(config), indent=2, default=str)
            self.writer.add_text("config", "```\n" + text + "\n```", 0)

    def log_metrics(self, values: Mapping[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def log_image(self, name: str, path: Path, step: int) -> None:
        import numpy as np
        from PIL import Image

        with Image.open(path) as picture:
            pixels = np.asarray(picture.convert("RGB"))
        self.writer.add_image(name, pixels, step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


def _wandb_api_key() -> bool:
    """Whether W&B has an API key here: ``WANDB_API_KEY``, or a ``wandb login`` entry in
    ~/.netrc for its host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    try:
        return netrc.netrc().authenticators(host or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _wandb_id(folder: Path) -> str:
    """The W&B run id kept in ``folder``, made (8 lowercase letters and digits) when new."""
    path = folder / WANDB_ID_FILE
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    alphabet = string.ascii_lowercase + string.digits
    run_id = "".join(secrets.choice(alphabet) for _ in range(8))
    path.write_text(run_id + "\n")
    return run_id


class WandbTracker:
    """A Weights & Biases run in RUN/wandb (offline unless an API key is set up)."""

    def __init__(self, run_dir: Path, config: Mapping[str, Any], step: int):
        import wandb

        run_dir = Path(run_dir)
        folder = run_dir / WANDB_FOLDER
        folder.mkdir(exist_ok=True)
        # read here, not left to wandb: it reads its variables once per process
        mode = os.environ.get("WANDB_MODE") or ("online" if _wandb_api_key() else "offline")
        options = {} if os.environ.get("WANDB_CONSOLE") else {"console": "off"}
        self.wandb = wandb
        self.run = wandb.init(dir=str(run_dir), project=os.environ.get("WANDB_PROJECT", "gantrix"),
                              name=run_dir.resolve().name, id=_wandb_id(folder), resume="allow",
                              config=dict(config), mode=mode, settings=wandb.Settings(**options))
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")

    def log_metrics(self, values: Mapping[str, float], step: int) -> None:
        self.run.log({"step": step, **values})

    def log_image(self, name: str, path: Path, step: int) -> None:
        self.run.log({"step": step, name: self.wandb.Image(str(path))})

    def close(self) -> None:
        self.run.finish()


@hookimpl
def gantrix_register_trackers(register):
    register("tensorboard", TensorBoardTracker,
             packages=("tensorboard", "torch.utils.tensorboard"), install=_install("tensorboard"))
    register("wandb", WandbTracker, packages=("wandb",), install=_install("wandb"))
