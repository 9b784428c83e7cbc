"""The recipe sweep's own table (`recipe_sweep` records of benchmarks/recipe_sweep.py).

One row per variant in the order they ran, with what the choice is made from: the split it
was scored on, its compute (steps, PFLOPs, wall minutes) and both linear probes, so a reader
sees every variant of every round and which ones were scored on test before the val split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from ijepa.results.render import markdown_table

COLUMNS = {"encoder": "variant", "method": "method", "dataset": "data", "reported_on": "scored on", "steps": "steps",
           "pretrain_pflops": "PFLOPs", "pretrain_minutes": "wall min", "probe_best": "logreg",
           "grid_val_top1": "VISSL grid", "rankme_end": "RankMe"}


def sweep_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Every `recipe_sweep` record as a row, oldest first; probes in %, absent values empty."""
    rows = [{k: r.get(k) for k in COLUMNS} | {"created": str(r.get("created", ""))}
            for r in records if r.get("kind") == "recipe_sweep"]
    if not rows:
        return pd.DataFrame(columns=list(COLUMNS.values()))
    df = pd.DataFrame(rows).sort_values("created", kind="stable")
    df["method"] = df["method"].fillna("ijepa")
    df["dataset"] = df["dataset"].fillna("fashion-mnist")
    df.loc[df["encoder"].astype(str).str.startswith("random-init"), "method"] = "random-init"
    for k in ("probe_best", "grid_val_top1"):
        df[k] = [f"{100 * v:.2f}" if pd.notna(v) else "" for v in df[k]]
    df["steps"] = [f"{int(v)}" if pd.notna(v) else "" for v in df["steps"]]
    df["pretrain_pflops"] = [f"{v:.4f}" if pd.notna(v) else "" for v in df["pretrain_pflops"]]
    for k in ("pretrain_minutes", "rankme_end"):
        df[k] = [f"{v:.1f}" if pd.notna(v) else "" for v in df[k]]
    return df[list(COLUMNS)].rename(columns=COLUMNS).reset_index(drop=True)


def sweep_markdown(records: list[dict[str, Any]]) -> str | None:
    """The README section's sweep table (None: no sweep record)."""
    table = sweep_frame(records)
    if table.empty:
        return None
    note = ("Every variant of `benchmarks/sweeps/*.yaml` in the order it ran (`python benchmarks/recipe_sweep.py --summary` "
            "sorts them). Top-1 in % on the split named in `scored on` (rounds 1-5 on test, before the val split; since round 6 "
            "on val): `logreg` is the quick logistic regression (6k train images), `VISSL grid` the converged head grid on "
            "the same features. Wall minutes are this machine's, often shared; PFLOPs are the training FLOPs.")
    return note + "\n\n" + markdown_table(table)


@dataclass
class Choice:
    """What the selection rule gives: `variant` (its seed-0 name) of the sweep file `grid`, or
    None with `pending` naming the top variants still short of seeds."""

    variant: str | None
    grid: str | None
    table: pd.DataFrame
    pending: list[str]


def _seed(overrides: list[str]) -> int:
    return next((int(o.split("=", 1)[1]) for o in overrides if o.startswith("meta.seed=")), 0)


def choose_recipe(records: list[dict[str, Any]], method: str, *, pflops: float = 0.0264, tol: float = 0.05,
                  top: int = 3, seeds: int = 3, dataset: str = "fashion-mnist") -> Choice:
    """The rule fixed before round 8's results (README, "How the recipe was found"): among the
    variants scored on `val` at the default's FLOPs (within `tol`), the `top` best by their
    seed-0 VISSL grid are rerun to `seeds` seeds, and the best mean over seeds decides. Runs of
    one recipe are grouped by their overrides less `meta.seed`; a re-run of a seed counts once
    (the newest). Only records of `dataset` compete (those from before datasets were named are
    Fashion-MNIST's)."""
    groups: dict[tuple[str, ...], dict[int, dict[str, Any]]] = {}
    for r in sorted(records, key=lambda r: str(r.get("created", ""))):
        if (r.get("kind") != "recipe_sweep" or r.get("reported_on") != "val" or (r.get("method") or "ijepa") != method
                or (r.get("dataset") or "fashion-mnist") != dataset
                or r.get("grid_val_top1") is None or r.get("pretrain_pflops") is None
                or abs(r["pretrain_pflops"] / pflops - 1) > tol):
            continue
        ov = list(r.get("overrides", []))
        key = tuple(sorted(o for o in ov if not o.startswith("meta.seed=")))
        groups.setdefault(key, {})[_seed(ov)] = r
    rows = []
    for runs in groups.values():
        if 0 not in runs:
            continue
        cmd = runs[0].get("command", [])
        grid = runs[0].get("grid") or (cmd[cmd.index("--grid") + 1] if "--grid" in cmd else None)
        accs = [runs[s]["grid_val_top1"] for s in sorted(runs)]
        rows.append({"variant": runs[0]["encoder"], "grid": grid, "seed0": 100 * runs[0]["grid_val_top1"],
                     "mean": 100 * sum(accs) / len(accs), "seeds": len(accs)})
    table = pd.DataFrame(rows, columns=["variant", "grid", "seed0", "mean", "seeds"])
    best = table.sort_values("seed0", ascending=False, kind="stable").head(top)
    pending = list(best.loc[best["seeds"] < seeds, "variant"])
    if best.empty or pending:
        return Choice(None, None, table, pending)
    win = best.sort_values("mean", ascending=False, kind="stable").iloc[0]
    return Choice(win["variant"], win["grid"], table, [])
