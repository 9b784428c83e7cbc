"""`ijepa results-plot`: linear-probe accuracy against pretraining GFLOPs and wall time.

A separate command because `ijepa results` is a command (it writes the tables), not a group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ijepa.cli import USER_ERRORS, app, console, fail


@app.command("results-plot")
def results_plot(
    results_dir: Annotated[Path, typer.Option("--results", help="Results folder holding records/")] = Path("results"),
    out: Annotated[Path | None, typer.Option("--out", help="PNG to write (default: <results>/compute_vs_accuracy.png)")] = None,
) -> None:
    """Plot I-JEPA and MAE runs (pretrain.compute + eval.linear records), random init as the floor."""
    from ijepa.results.plots import plot_compute

    try:
        path = plot_compute(results_dir, out=out)
    except USER_ERRORS as e:
        fail(e)
    console.print(f"wrote {path}", highlight=False)
