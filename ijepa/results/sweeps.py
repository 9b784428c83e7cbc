"""The recipe sweep's own table (`recipe_sweep` records of benchmarks/recipe_sweep.py).

One row per variant in the order they ran, with what the choice is made from: the split it
was scored on, its compute (steps, PFLOPs, wall minutes) and both linear probes, so a reader
sees every variant of every round and which ones were scored on test before the val split.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

COLUMNS = {"encoder": "variant", "method": "method", "reported_on": "scored on", "steps": "steps",
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
    df.loc[df["encoder"].astype(str).str.startswith("random-init"), "method"] = "random-init"
    for k in ("probe_best", "grid_val_top1"):
        df[k] = [f"{100 * v:.2f}" if pd.notna(v) else "" for v in df[k]]
    df["steps"] = [f"{int(v)}" if pd.notna(v) else "" for v in df["steps"]]
    df["pretrain_pflops"] = [f"{v:.4f}" if pd.notna(v) else "" for v in df["pretrain_pflops"]]
    for k in ("pretrain_minutes", "rankme_end"):
        df[k] = [f"{v:.1f}" if pd.notna(v) else "" for v in df[k]]
    return df[list(COLUMNS)].rename(columns=COLUMNS).reset_index(drop=True)


def sweep_markdown(records: list[dict[str, Any]]) -> str:
    """The README section's body (ijepa.results.tables renders it under the kind's heading)."""
    from ijepa.results.tables import markdown_table

    table = sweep_frame(records)
    if table.empty:
        return "_No runs of ours yet._"
    note = ("Every variant of `benchmarks/sweeps/*.yaml` in the order it ran (`python benchmarks/recipe_sweep.py --summary` "
            "sorts them). Top-1 in % on the split named in `scored on` (rounds 1-5 on test, before the val split; since round 6 "
            "on val): `logreg` is the quick logistic regression (6k train images), `VISSL grid` the converged head grid on "
            "the same features. Wall minutes are this machine's, often shared; PFLOPs are the training FLOPs.")
    return note + "\n\n" + markdown_table(table)
