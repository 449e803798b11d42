"""Pictures of a run: samples over the data (2-D), image grids, and loss curves.

Matplotlib is used through its object API on an Agg canvas (no pyplot, no global state, no
display needed); image grids are assembled with Pillow. Every file is written atomically.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

from .checkpoint import write_atomic

GRID_COLUMNS = 8
GRID_PAD = 2
#: small images are enlarged (nearest neighbour) to at least this many pixels per side.
GRID_MIN_CELL = 32


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save_figure(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    write_atomic(Path(path), buffer.getvalue())


def scatter_png(path: Path, fake: torch.Tensor, real: torch.Tensor, title: str = "") -> None:
    """Generated 2-D points (orange) over real ones (grey), 500×500 pixels."""
    fig = _figure(5, 5)
    ax = fig.add_subplot()
    r, f = real.detach().cpu().numpy(), fake.detach().cpu().numpy()
    ax.scatter(r[:, 0], r[:, 1], s=2, c="0.6", label="data")
    ax.scatter(f[:, 0], f[:, 1], s=2, c="tab:orange", alpha=0.6, label="generated")
    lim = 1.25 * float(np.abs(r).max())
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=4, fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _save_figure(fig, path)


def image_grid(images: torch.Tensor, columns: int = GRID_COLUMNS):
    """A Pillow image of ``images`` (N×C×H×W in [−1, 1]) in rows of ``columns``."""
    from PIL import Image

    x = images.detach().cpu().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    n, c, h, w = x.shape
    scale = max(1, math.ceil(GRID_MIN_CELL / max(h, w)))
    columns = min(columns, n)
    rows = math.ceil(n / columns)
    canvas = np.full((rows * (h * scale + GRID_PAD) + GRID_PAD,
                      columns * (w * scale + GRID_PAD) + GRID_PAD, c), 255, np.uint8)
    for i in range(n):
        tile = x[i].permute(1, 2, 0).numpy().repeat(scale, 0).repeat(scale, 1)
        top = GRID_PAD + (i // columns) * (h * scale + GRID_PAD)
        left = GRID_PAD + (i % columns) * (w * scale + GRID_PAD)
        canvas[top:top + h * scale, left:left + w * scale] = tile
    return Image.fromarray(canvas[..., 0] if c == 1 else canvas, {1: "L", 3: "RGB", 4: "RGBA"}[c])


def grid_png(path: Path, images: torch.Tensor, columns: int = GRID_COLUMNS) -> None:
    """Save `image_grid` as a PNG."""
    buffer = io.BytesIO()
    image_grid(images, columns).save(buffer, format="PNG")
    write_atomic(Path(path), buffer.getvalue())


def loss_curves_png(path: Path, history: list[dict]) -> None:
    """Every logged loss and term against the step, critic and generator side by side,
    800×350 pixels."""
    fig = _figure(8, 3.5)
    for i, prefix in enumerate(("d", "g")):
        ax = fig.add_subplot(1, 2, i + 1)
        keys = sorted({k for row in history for k in row
                       if k == f"{prefix}_loss" or k.startswith(f"{prefix}/")})
        for key in keys:
            pts = [(row["step"], row[key]) for row in history if key in row]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=key, linewidth=1)
        ax.set_title("critic" if prefix == "d" else "generator", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        if keys:
            ax.legend(fontsize=7)
    fig.tight_layout()
    _save_figure(fig, path)


#: points drawn for a 2-D sample plot, images in an image grid.
PLOT_POINTS = 1000
GRID_IMAGES = 64


def sample_picture(path: Path, data, sample, title: str) -> bool:
    """A picture of ``sample(n, ...)``'s samples of ``data`` at ``path``: a grid of images
    (a conditional model's classes in turn), or 2-D points over the data's own; False when
    the data has no picture (other vectors)."""
    if data.is_image:
        labels = torch.arange(GRID_IMAGES) % data.num_classes if data.num_classes else None
        grid_png(path, sample(GRID_IMAGES, labels=labels, strict=False))
    elif data.shape == (2,):
        scatter_png(path, sample(PLOT_POINTS), data.reference(PLOT_POINTS), title)
    else:
        return False
    return True
