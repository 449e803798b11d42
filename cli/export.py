"""``gantrix export``: a trained run's generator as a file that leaves gantrix
(`gantrix.export`: safetensors, TorchScript, ONNX)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gantrix.errors import GantrixError


def export(
    run: Path = typer.Argument(..., help="A run folder."),
    out: Path = typer.Option(..., "--out", "-o", help="The file to write."),
    format: Optional[str] = typer.Option(None, "--format", "-f",
                                         metavar="safetensors|torchscript|onnx",
                                         help="The file's format (default: from --out's "
                                              "suffix, .safetensors .pt .onnx, which must "
                                              "match it)."),
    checkpoint: str = typer.Option("last", "--checkpoint", metavar="last|best",
                                   help="The last checkpoint, or best.pt (--eval-every)."),
    ema: bool = typer.Option(True, "--ema/--no-ema", help="The averaged generator when the "
                             "run has one (--no-ema: the trained weights)."),
    force: bool = typer.Option(False, "--force", help="Replace --out when it exists."),
) -> None:
    """Export a run's generator with its metadata: safetensors (gantrix.load_generator
    rebuilds it without any trick plugin), TorchScript (torch.jit.load, nothing of gantrix
    needed) or ONNX (the onnx extra)."""
    from gantrix.export import FORMATS, SUFFIXES, export as write

    if format is None:
        format = next((f for f, s in SUFFIXES.items() if out.suffix.lower() == s), None)
        if format is None:
            raise GantrixError(f"--out {out}: name the file for its format, "
                               f"{', '.join(f'*{s} ({f})' for f, s in SUFFIXES.items())}")
    if format not in FORMATS:
        raise GantrixError(f"unknown --format {format!r}; choose one of {', '.join(FORMATS)}")
    meta = write(run, out, format=format, checkpoint=checkpoint, ema=ema, force=force)
    which = "averaged generator" if meta["averaged"] else "generator"
    typer.echo(f"{which} of step {meta['step']} ({format}) -> {out}")


def register(app: typer.Typer) -> None:
    """Add ``gantrix export`` to ``app``."""
    app.command("export")(export)
