"""`ijepa results` (regenerate results/README.md and summary.csv from the records) and
`ijepa results plot` (linear-probe accuracy against pretraining GFLOPs and wall time)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ijepa.cli import USER_ERRORS, app, console, fail

results_app = typer.Typer(help="Tables of every eval/bench record beside the paper's reference numbers; `plot` draws compute vs accuracy.\n\nExample: ijepa results")
app.add_typer(results_app, name="results")
ResultsDir = Annotated[Path, typer.Option("--results", help="Results folder holding records/")]


@results_app.callback(invoke_without_command=True)
def results(ctx: typer.Context, results_dir: ResultsDir = Path("results")) -> None:
    """Tables of every eval/bench record (ours, grouped by eval) beside the paper's reference numbers."""
    ctx.obj = {"results_dir": results_dir}  # `ijepa results --results X plot` reads X
    if ctx.invoked_subcommand is not None:
        return
    from ijepa.results.readme import write_tables

    try:
        md, csv, skipped = write_tables(results_dir)
    except USER_ERRORS as e:
        fail(e)
    warn_skipped(skipped)
    console.print(f"wrote {md} and {csv}", highlight=False)


def warn_skipped(skipped: list[tuple[str, str]]) -> None:
    for path, why in skipped:
        console.print(f"[bold yellow]skipped[/] {escape(path)}: {escape(why)}", highlight=False, soft_wrap=True)


@results_app.command("plot")
def plot(
    ctx: typer.Context,
    results_dir: Annotated[Path | None, typer.Option("--results", help="Results folder holding records/ (default: the one given to `ijepa results`, else results)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="PNG to write (default: <results>/compute_vs_accuracy.png)")] = None,
) -> None:
    """Plot I-JEPA and MAE runs (pretrain.compute + eval.linear records), random init as the floor:
    a row of panels per dataset, probe, subset and reported split, never one line across them.

    Example: ijepa results plot --out compute_vs_accuracy.png
    """
    from ijepa.results.io import load_records
    from ijepa.results.plots import plot_compute

    results_dir = results_dir or (ctx.obj or {}).get("results_dir") or Path("results")
    records, skipped = load_records(results_dir)
    warn_skipped(skipped)  # never plotted
    try:
        path = plot_compute(results_dir, out=out, records=records)
    except USER_ERRORS as e:
        fail(e)
    console.print(f"wrote {path}", highlight=False)
