"""`ijepa export`: one encoder of a run or official checkpoint as a Hugging Face or timm model."""

from __future__ import annotations

from pathlib import Path

import typer

from ijepa.cli import USER_ERRORS, app, fail


@app.command("export")
def export(
    source: Path = typer.Argument(..., help="Run dir, our checkpoint.pt, or an official I-JEPA .pth.tar"),
    fmt: str = typer.Option(..., "--format", help="hf (transformers IJepaModel) or timm (VisionTransformer, gap pooling)"),
    out: Path = typer.Option(..., "--out", help="Folder to write (new or empty): the model files and a README.md model card"),
    which: str = typer.Option("target_encoder", "--which", help="target_encoder (as the paper evaluates) or context (alias: encoder, the official key)"),
    num_heads: int | None = typer.Option(None, "--num-heads", help="Attention heads, only where no config gives them and the width is not standard"),
    results_dir: Path = typer.Option(Path("results"), "--results", help="Results folder whose records of these weights go into the model card"),
) -> None:
    """Export an encoder so transformers or timm load it, with a model card saying which one it is.

    Example: ijepa export runs/fmnist_vit_tiny --format hf --out export/hf
    """
    from ijepa.export import export_encoder

    try:
        path = export_encoder(source, fmt=fmt, out=out, which=which, results_dir=results_dir, num_heads=num_heads)
    except (OSError, *USER_ERRORS) as e:  # OSError: names its file (disk full, permissions)
        fail(e)
    print(path)
