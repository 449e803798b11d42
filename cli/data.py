"""``gantrix data prepare``: prepare an image folder ahead of training.

Training prepares a folder itself on first use; this does it beforehand (on a machine with
more cores, or before a queue of runs) and says what it found.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gantrix.errors import GantrixError


def prepare(
    folder: Path = typer.Argument(..., help="A folder of images, any type Pillow reads (sub-folders are classes)."),
    image_size: int = typer.Option(32, help="The training size (power of two, 8-256)."),
    image_fit: str = typer.Option("crop", help="How non-square images become square: crop (the "
                                  "centre square), pad (black borders) or squash."),
    workers: Optional[int] = typer.Option(None, help="Decoding processes (default: one per core)."),
    skip_bad_images: bool = typer.Option(False, "--skip-bad-images",
                                         help="Leave out unreadable files (counted) instead of stopping."),
) -> None:
    """Decode and resize a folder once into the cache that `gantrix train --data FOLDER
    --image-size N` then opens in seconds."""
    from gantrix.data import check_image_size
    from gantrix.folder import FIT_WORDS, FITS, ignored_text, prepare_folder

    if not folder.is_dir():
        raise GantrixError(f"{folder} is not a folder")
    if workers is not None and workers < 1:
        raise GantrixError(f"--workers must be at least 1, got {workers}")
    if image_fit not in FITS:
        raise GantrixError(f"--image-fit must be one of {', '.join(FITS)}, got {image_fit!r}")
    check_image_size(image_size)
    done = prepare_folder(folder, image_size, skip_bad=skip_bad_images, workers=workers,
                          fit=image_fit)
    n, channels, side, _ = done.images.shape
    how = "prepared" if done.seconds else "already prepared"
    classes = (f"{len(done.classes)} class{'es' * (len(done.classes) != 1)} ({', '.join(done.classes[:5])}"
               f"{', ...' if len(done.classes) > 5 else ''})" if done.classes else "no classes")
    typer.echo(f"{how}: {n:,} images, {'grey' if channels == 1 else 'RGB'} {side}×{side} "
               f"({FIT_WORDS[done.fit]}), {classes}, {done.nbytes / 1e6:,.1f} MB")
    if done.skipped:
        typer.echo(f"skipped {len(done.skipped)} unreadable: {done.skipped_text()}")
    if done.ignored:
        typer.echo(ignored_text(done.ignored))
    where = done.location if done.location is not None else "not cached (the cache folder is not writable)"
    typer.echo(f"cache: {where}")


def register(app: typer.Typer) -> None:
    """Add ``gantrix data prepare`` to ``app``."""
    group = typer.Typer(help="Data sets: prepare an image folder ahead of training.", no_args_is_help=True)
    group.command("prepare")(prepare)
    app.add_typer(group, name="data")
