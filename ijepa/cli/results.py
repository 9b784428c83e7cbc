"""`ijepa results`: regenerate results/README.md and results/summary.csv from the records."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ijepa.cli import USER_ERRORS, app, console, fail


@app.command("results")
def results(
    results_dir: Annotated[Path, typer.Option("--results", help="Results folder holding records/")] = Path("results"),
) -> None:
    """Tables of every eval/bench record (ours, grouped by eval) beside the paper's reference numbers."""
    from ijepa.results.tables import write_tables

    try:
        md, csv = write_tables(results_dir)
    except USER_ERRORS as e:
        fail(e)
    console.print(f"wrote {md} and {csv}", highlight=False)
