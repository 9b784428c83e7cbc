"""`ijepa bench sweep` and `ijepa bench curve`: recipes chosen on val, then curves at matched compute, on any dataset."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ijepa.cli import USER_ERRORS, bench_app, console, fail

DATA = typer.Option("fashion-mnist", "--data", help="fashion-mnist, fmnist-clutter:LEVEL, fmnist-noise:LEVEL (LEVEL in [0, 1]) or an ImageFolder root "
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

    A variant whose record exists is not run again; a half-trained one resumes. The crossover's
    I-JEPA candidates on the most cluttered level, then the rule's verdict:

    Example: ijepa bench sweep benchmarks/sweeps/crossover_ijepa.yaml --data fmnist-clutter:1 --choose best
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


@bench_app.command()
def curve(
    data: str = DATA,
    ijepa: str = typer.Option("benchmarks/sweeps/crossover_ijepa.yaml", help="I-JEPA recipe: GRID.yaml:VARIANT (chosen on val "
                              "already), GRID.yaml (its variants are swept on val of --data and the best is chosen), or a "
                              "pretraining config (a file or a shipped name, run as it stands; records say selected_on: none)"),
    mae: str = typer.Option("benchmarks/sweeps/crossover_mae.yaml", help="MAE recipe, as --ijepa (a config: one with MAE's meta.dec_*)"),
    minutes: list[float] = typer.Option([5.0, 30.0], "--minutes", help="Budgets, in minutes of the I-JEPA recipe at the reference "
                                        "img/s (MAE: the same training FLOPs); repeatable"),
    probes: list[str] = typer.Option(list(("linear", "logreg", "knn", "lowshot")), "--probe",
                                     help="Probes: linear (VISSL grid), logreg, knn, lowshot (1/5/10%, 3 seeds), finetune; repeatable"),
    methods: list[str] = typer.Option(["ijepa", "mae"], "--method", help="Methods whose runs to do (repeatable; --method none: "
                                      "the reference lines only)"),
    probe_set: list[str] = typer.Option([], "--probe-set", help="PROBE:KEY=VALUE, an override of one probe's recipe (small data: "
                                        "--probe-set knn:ks=[5,10]); shown as its own column; repeatable"),
    baselines: bool = typer.Option(True, help="Score the reference lines too (random init of the I-JEPA recipe's encoder, raw pixels)"),
    sweep_first: bool = typer.Option(True, "--sweep/--no-sweep", help="Run a grid's missing candidates on val first (else: an error)"),
    set_: list[str] = typer.Option([], "--set", help="Extra override of every run at the I-JEPA recipe's FLOPs (a depth axis: "
                                   "--set meta.depth=12); part of each run's name and identity"),
    img_per_s: float | None = typer.Option(None, help="Reference throughput of minutes (default: the packaged recipe's, 100 img/s)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the pieces (done or to do) and stop"),
    plot: bool = typer.Option(True, help="Draw the curve when every piece is done: results/compute_curve.png (Fashion-MNIST) or "
                              "results/compute_curve-<data>.png"),
    folder: str = typer.Option("runs/curves", help="Folder of the curve's pretraining runs"),
    sweep_folder: str = typer.Option("runs/sweep", help="Folder of the sweep's runs"),
    device: str = typer.Option("cpu", help="Device of the probes"),
    results: Path = RESULTS,
) -> None:
    """The compute curve of I-JEPA and MAE on one dataset: recipes chosen on val, matched FLOPs, every probe on test.

    Every piece (a sweep variant, a run's pretraining, one probe of it on one split, a
    reference line) writes one record and is skipped when it exists: run it again to resume.
    On your own folder (train/, val/, test/ with one subfolder per class), 5 and 20 minutes:

        ijepa bench curve --data ~/my_images --minutes 5 --minutes 20 --dry-run
        ijepa bench curve --data ~/my_images --minutes 5 --minutes 20

    Fashion-MNIST's committed curve (its pieces are found done; redraws the figures):

        ijepa bench curve --ijepa benchmarks/sweeps/fmnist_round8.yaml:r8_combo --mae benchmarks/sweeps/fmnist_mae_round3.yaml:m3_lr1e-3_dec1 --minutes 5 --minutes 15 --minutes 30 --minutes 60

    Example: ijepa bench curve --data fmnist-clutter:1 --minutes 5 --minutes 30 --dry-run
    """
    from ijepa.bench.curves import PROBES
    from ijepa.bench.experiment import METHODS, check_splits, choose_recipe, coverage, curve_pieces
    from ijepa.bench.sweep import canonical_data

    try:
        methods = [] if methods == ["none"] else methods
        bad = sorted(set(methods) - set(METHODS)) + sorted(set(probes) - set(PROBES))
        if bad:
            raise ValueError(f"--method/--probe {', '.join(bad)}: expected methods {', '.join(METHODS)} and probes {', '.join(PROBES)}")
        if not minutes or not all(m > 0 for m in minutes):  # also refuses nan
            raise ValueError(f"--minutes {minutes}: expected one or more budgets > 0")
        sets: dict[str, list[str]] = {}
        for item in probe_set:
            probe, sep, override = item.partition(":")
            if not sep or probe not in probes or "=" not in override:
                raise ValueError(f"--probe-set {item!r}: expected PROBE:KEY=VALUE with PROBE one of {', '.join(probes)}")
            sets.setdefault(probe, []).append(override)
        check_splits(data)
        refs = {"ijepa": ijepa, "mae": mae}
        recipes = {m: choose_recipe(refs[m], method=m, data=data, results_dir=results, folder=sweep_folder, sweep=sweep_first and not dry_run)
                   for m in METHODS}
        recipes = {m: _with_extra(r, set_) for m, r in recipes.items()}
        console.print(f"{canonical_data(data)}: recipes chosen on val: " + ", ".join(f"{m} {r.grid}:{r.variant}" for m, r in recipes.items()),
                      highlight=False, soft_wrap=True)
        pieces = curve_pieces(recipes, methods=methods, minutes=minutes, probes=probes, results_dir=results, folder=folder,
                              img_per_s=img_per_s, baselines=baselines, device=device, cache_dir=Path(".cache/features"), probe_sets=sets)
        for piece in pieces:
            if piece.done():
                console.print(f"done     {piece.what}", highlight=False, soft_wrap=True)
            elif dry_run:
                console.print(f"to do    {piece.what}", highlight=False, soft_wrap=True)
            else:
                console.print(f"running  {piece.what}", highlight=False, soft_wrap=True)
                rec = piece.run()
                print(json.dumps({"piece": piece.what, "encoder": rec.get("encoder"), "split": rec.get("split"),
                                  "metrics": rec.get("metrics"), "pretrain_pflops": rec.get("pretrain_pflops")}))
        if plot and not dry_run and len(methods) == 2 and not set_:
            for out in _plot(recipes, data, results):
                console.print(f"wrote {out}", highlight=False)
            print(json.dumps(coverage(results, recipes, data)))
    except USER_ERRORS as e:
        fail(e)


def _plot(recipes: dict, data: str, results: Path) -> list[Path]:
    """The compute curve of `data` (and, on Fashion-MNIST, the I-JEPA recipe's learning curve)."""
    from ijepa.bench.sweep import FMNIST, canonical_data, data_slug
    from ijepa.results.curves import plot_compute_curve, plot_learning_curve

    data = canonical_data(data)
    name = "compute_curve.png" if data == FMNIST else f"compute_curve-{data_slug(data)}.png"
    outs = [plot_compute_curve(results, recipes={m: r.variant for m, r in recipes.items()}, out=results / name, dataset=data)]
    return outs + ([plot_learning_curve(results, recipe=recipes["ijepa"].variant)] if data == FMNIST else [])


def _with_extra(recipe, extra: list[str]):
    import dataclasses

    return dataclasses.replace(recipe, extra=tuple(extra)) if extra else recipe



@bench_app.command()
def crossover(results: Path = RESULTS, gallery: bool = typer.Option(True, help="Also draw each data family's results/<tag>_gallery.png")) -> None:
    """The crossover experiment's figure and verdict from committed records: MAE - I-JEPA by each data family's level.

    Writes results/crossover.png (a row per family with records), each family's gallery
    (results/clutter_gallery.png, results/noise_gallery.png) and prints the table of gaps on
    test, with the settings where I-JEPA beats MAE by >= 2 points by both linear probes.

    Example: ijepa bench crossover
    """
    from ijepa.families import FAMILIES
    from ijepa.results.crossover import (
        crossover_frame,
        family_gallery,
        gallery_path,
        moonshot,
        plot_crossover,
    )
    from ijepa.results.io import load_records

    try:
        frame = crossover_frame(load_records(results)[0])
        out = plot_crossover(results)
        for name in FAMILIES if gallery else ():
            family_gallery(name, gallery_path(results, name))
    except USER_ERRORS as e:
        fail(e)
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    wins = moonshot(frame)
    print(f"I-JEPA ahead by >= 2 points on both linear probes (test): {len(wins)} setting(s)" +
          ("" if wins.empty else "\n" + wins.to_string(index=False)))
    print(f"wrote {out}")
