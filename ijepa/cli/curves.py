"""`ijepa bench sweep` and `ijepa bench curve`: recipes chosen on val, then curves at matched compute, on any dataset."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ijepa.cli import USER_ERRORS, bench_app, console, fail

DATA = typer.Option("fashion-mnist", "--data", help="fashion-mnist, fmnist-clutter:LEVEL (LEVEL in [0, 1]) or an ImageFolder root "
                    "with train/ and val/ (and test/)")
RESULTS = typer.Option(Path("results"), help="Results folder the records are read from and written under")


@bench_app.command()
def sweep(
    grid: Path = typer.Argument(..., help="Sweep grid YAML: {variant: [--set overrides...] | OTHER.yaml}"),
    data: str = DATA,
    only: list[str] = typer.Option([], "--only", help="Run only these variants (repeatable)"),
    choose: str = typer.Option("", help="After running, apply a choice rule: best (best seed-0 VISSL grid on val among "
                               "the grid's variants) or seeds (rounds 6-8: top 3, 3 seeds, best mean)"),
    folder: str = typer.Option("runs/sweep", help="Folder of the sweep's pretraining runs"),
    results: Path = RESULTS,
) -> None:
    """Pretrain each variant of a grid on --data and score it on val (never test), one record each.

    A variant whose record exists is not run again; a half-trained one resumes. Example, the
    crossover's I-JEPA candidates on the most cluttered level, then the rule's verdict:

        ijepa bench sweep benchmarks/sweeps/crossover_ijepa.yaml --data fmnist-clutter:1 --choose best
    """
    from ijepa.bench.sweep import choose_best, grid_variants, run_sweep

    if choose not in ("", "best", "seeds"):
        fail(ValueError(f"--choose {choose!r}: expected best or seeds"))
    try:
        variants = grid_variants(grid, data=data, only=only or None)
        run_sweep(variants, folder=folder, results_dir=results, log=lambda m: console.print(m, highlight=False, soft_wrap=True))
        if choose == "best":
            c = choose_best(grid_variants(grid, data=data), results)
            for row in c.table:
                print(json.dumps({k: row[k] for k in ("variant", "dataset", "grid_val_top1", "probe_best")}))
            print(f"chosen on val (VISSL grid, seed 0): {c.variant.grid}:{c.variant.name}" if c.variant else
                  f"not chosen yet: no val record for {', '.join(c.pending)}")
        elif choose == "seeds":
            from ijepa.results.io import read_records
            from ijepa.results.sweeps import choose_recipe

            methods = {v.method for v in variants}
            for m in sorted(methods):
                c = choose_recipe(read_records(results), m)
                print(f"{m}: chosen on val (grid, mean over seeds): {c.grid}:{c.variant}" if c.variant else
                      f"{m}: not chosen yet; top variants short of seeds: {', '.join(c.pending) or 'no val records'}")
    except USER_ERRORS as e:
        fail(e)
