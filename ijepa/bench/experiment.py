"""`ijepa bench curve`: a whole compute curve on one dataset, as an ordered list of resumable pieces.

For each method the recipe is a sweep variant chosen on `val` of this dataset (a named
`GRID.yaml:VARIANT` whose val record must exist, or a grid whose candidates are swept and
chosen by the `best` rule, `ijepa.bench.sweep.choose_best`). Budgets are minutes of the I-JEPA
recipe at the reference img/s; MAE gets the same training FLOPs (`ijepa.bench.curves`), and
extra overrides (`--set meta.depth=12`, a depth axis) keep the FLOPs of the recipe without
them. Each budget's runs are pretrained, then scored by each probe (the linear probes on val
before test); random init and raw pixels are the reference lines. Every piece writes one
record and is skipped when its record exists, so the command resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ijepa.bench import curves
from ijepa.bench.sweep import canonical_data, choose_best, grid_variants, run_sweep

METHODS = ("ijepa", "mae")
VAL_FIRST = ("linear", "logreg")  # scored on val before test (the learning curve's rule)


@dataclass(frozen=True)
class Piece:
    """One unit of work: `run()` returns its record; `what` says which in one line."""

    what: str
    run: Callable[[], dict[str, Any]]
    done: Callable[[], bool]


def choose_recipe(ref: str, *, method: str, data: str, results_dir: Path, folder: str, sweep: bool) -> curves.Recipe:
    """`method`'s recipe: a pretraining config as it stands (a file or a shipped name: records
    say it was not chosen on val), `GRID.yaml:VARIANT` as given, or `GRID.yaml`: its candidates
    on `data` (swept first when `sweep`, on val only) and the `best` rule's pick."""
    if curves.is_config(ref):
        return curves.config_recipe(ref, method=method, data=data)
    recipe = _choose(ref, data=data, results_dir=results_dir, folder=folder, sweep=sweep)
    if recipe.method != method:
        raise ValueError(f"--{method} {ref}: a {recipe.method} recipe, not {method}")
    return recipe


def _choose(ref: str, *, data: str, results_dir: Path, folder: str, sweep: bool) -> curves.Recipe:
    if not ref.endswith((".yaml", ".yml")):
        return curves.read_recipe(ref, results_dir=results_dir, data=data)
    variants = grid_variants(ref, data=data)
    if sweep:
        run_sweep(variants, folder=folder, results_dir=results_dir)
    choice = choose_best(variants, results_dir)
    if choice.variant is None:
        raise ValueError(f"{ref} on {canonical_data(data)}: candidates {', '.join(choice.pending)} have no val record; "
                         f"run `ijepa bench sweep {ref} --data {data}` (or drop --no-sweep)")
    return curves.read_recipe(f"{ref}:{choice.variant.name}", results_dir=results_dir, data=data)


def runs_at(recipes: dict[str, curves.Recipe], minutes: float, *, folder: str, img_per_s: float | None) -> dict[str, curves.Run]:
    """Each method's run at `minutes` of the I-JEPA recipe (without extra overrides): same FLOPs for all."""
    ref = dataclasses.replace(recipes["ijepa"], extra=())
    budget = curves.minutes_budget(ref, minutes, img_per_s=img_per_s)
    out = {}
    for method, r in recipes.items():
        if method == "ijepa" and not r.extra:  # the learning curve's own run of these minutes
            out[method] = curves.plan_run(r, folder=folder, minutes=minutes, img_per_s=img_per_s)
        else:
            out[method] = curves.plan_run(r, folder=folder, budget_flops=budget, img_per_s=img_per_s, budget_minutes=minutes)
    return out


def _splits(probe: str) -> tuple[str, ...]:
    return ("val", "test") if probe in VAL_FIRST else ("test",)


def curve_pieces(recipes: dict[str, curves.Recipe], *, methods: Sequence[str] = METHODS, minutes: Sequence[float],
                 probes: Sequence[str], results_dir: Path,
                 folder: str, img_per_s: float | None = None, baselines: bool = True, device: str = "cpu",
                 cache_dir: Path | None = None, probe_sets: dict[str, list[str]] | None = None) -> Iterator[Piece]:
    """Every piece of the curve, in the order they run: budgets ascending, each method's
    pretraining then its probes (of `methods` only: every recipe still sizes the budgets),
    then the reference lines. `probe_sets`: overrides of a
    probe's recipe (small data: fewer k-NN neighbours), part of each score's identity."""
    sets = probe_sets or {}
    score = dict(results_dir=results_dir, device=device, cache_dir=cache_dir)

    def recorded(kind: str, piece: dict[str, Any]) -> Callable[[], bool]:
        return lambda: curves.find_record(results_dir, kind, piece) is not None

    for m in sorted(minutes):
        for method, run in runs_at(recipes, m, folder=folder, img_per_s=img_per_s).items():
            if method not in methods:
                continue
            what = f"pretrain {run.name} ({m:g} I-JEPA minutes = {run.budget_flops / 1e15:.4f} PFLOPs, {run.steps} steps)"
            yield Piece(what, lambda run=run: curves.pretrain_run(run, results_dir=results_dir)[0], recorded("curve.pretrain", run.identity()))
            for probe in probes:
                for split in _splits(probe):
                    yield Piece(f"score {run.name} {probe} on {split}", lambda run=run, probe=probe, split=split: curves.score(
                        curves.pretrained(run, results_dir), probe, split=split, val_first=probe in VAL_FIRST, sets=sets.get(probe, []),
                        **score)[0], recorded("curve.score", {**run.identity(), "probe": probe, "split": split,
                                                              "probe_sets": sets.get(probe, [])}))
    if not baselines:
        return
    data = recipes["ijepa"].data
    lines = [("random-init", recipes["ijepa"])] + ([("raw-pixels", None)] if _in_memory(data) else [])
    for method, recipe in lines:
        fields = curves.baseline_fields(method, recipe, data)
        for probe in (p for p in probes if not (method == "raw-pixels" and p == "finetune")):
            for split in _splits(probe):
                yield Piece(f"score {method} {probe} on {split}", lambda f=fields, probe=probe, split=split: curves.score(
                    f, probe, split=split, sets=sets.get(probe, []), **score)[0],
                    recorded("curve.score", {**fields["piece"], "probe": probe, "split": split, "probe_sets": sets.get(probe, [])}))


def _in_memory(data: str) -> bool:
    from ijepa.data import data_spec

    return data_spec(data).in_memory


def check_splits(data: str) -> None:
    """A curve chooses on val and reports on test: a dataset without a test split cannot give one."""
    from ijepa.data import data_spec

    spec = data_spec(data)
    if spec.report_split != "test":
        raise ValueError(f"{spec.root}: no test/ split; `ijepa bench curve` chooses recipes on val/ and reports on test/, "
                         "so it needs train/, val/ and test/ class folders")


def coverage(results_dir: Path, recipes: dict[str, curves.Recipe], data: str) -> dict[str, Any]:
    """What a compute curve covers: the matched budgets (PFLOPs) of the two recipes on `data`,
    their span, the largest in I-JEPA minutes, and the largest FLOPs mismatch of a pair."""
    from ijepa.results.curves import matched_pairs
    from ijepa.results.io import load_records

    records = load_records(results_dir)[0]
    pairs = matched_pairs(records, {m: r.variant for m, r in recipes.items()}, canonical_data(data), extra="")
    budgets = sorted(p["budget_pflops"] for p in pairs)
    minutes = {round(r["budget_pflops"], 9): r.get("budget_minutes") for r in records if r.get("kind") == "curve.pretrain"
               and r.get("method") == "ijepa" and (r.get("recipe") or {}).get("variant") == recipes["ijepa"].variant}
    return {"recipes": {m: r.variant for m, r in recipes.items()}, "matched_budgets_pflops": budgets,
            "span": budgets[-1] / budgets[0] if budgets else None,
            "largest_in_ijepa_minutes": minutes.get(budgets[-1]) if budgets else None,
            "max_flops_rel_diff": max((p["rel_diff"] for p in pairs), default=None)}
