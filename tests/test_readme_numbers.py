"""The README's curve tables against the committed records: every row of a README table with
`method` and `steps` columns (the learning curve, the matched-compute table) must be a run in
`curve_table(records)`, and every cell it shows must be that run's cell, so a number typed by
hand or left behind by a re-run fails here instead of being read."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from ijepa.results.curves import curve_table
from ijepa.results.io import read_records

ROOT = Path(__file__).resolve().parents[1]


def markdown_tables(md: str) -> list[pd.DataFrame]:
    """Every pipe table of a markdown text, cells stripped of bold marks."""
    tables, block = [], []
    for line in [*md.splitlines(), ""]:
        if line.startswith("|"):
            block.append([c.strip().replace("**", "") for c in line.strip().strip("|").split("|")])
            continue
        if len(block) > 2:
            tables.append(pd.DataFrame(block[2:], columns=block[0]))
        block = []
    return tables


def curve_tables(md: str) -> list[pd.DataFrame]:
    return [t for t in markdown_tables(md) if {"method", "steps"} <= set(t.columns)]


def mismatches(shown: pd.DataFrame, table: pd.DataFrame) -> list[str]:
    """Cells of `shown` that are not the records' cell of the same run and column."""
    keys = ["method", "steps"] + (["recipe (val-chosen)"] if "recipe (val-chosen)" in shown else [])
    have = table.astype(object).where(table.notna(), "").astype(str)
    bad = []
    for _, row in shown.iterrows():
        match = have
        for k in keys:
            match = match[match[k] == row[k]]
        if len(match) > 1:  # two recipes' runs of one length (Fashion-MNIST: the headline's and the crossover rule's): the one every cell is
            match = match[[all(not c or col not in have.columns or c == run[col] for col, c in row.items()) for _, run in match.iterrows()]]
        if len(match) != 1:
            bad.append(f"row {dict(row[keys])}: {len(match)} runs in the records")
            continue
        for col, cell in row.items():
            if col not in have.columns:
                bad.append(f"row {dict(row[keys])}: column {col!r} is not in the records' table")
            elif cell and cell != match.iloc[0][col]:
                bad.append(f"row {dict(row[keys])}, {col}: README {cell!r}, records {match.iloc[0][col]!r}")
    return bad


def test_the_readme_shows_curve_tables():
    assert curve_tables((ROOT / "README.md").read_text(encoding="utf-8")), "README.md: no table with method and steps columns"


@pytest.mark.parametrize("i", range(len(curve_tables((ROOT / "README.md").read_text(encoding="utf-8")))))
def test_readme_curve_numbers_are_the_records(i):
    shown = curve_tables((ROOT / "README.md").read_text(encoding="utf-8"))[i]
    assert not mismatches(shown, curve_table(read_records(ROOT / "results"))), "README.md is stale: copy the rows of `ijepa results`"


def test_a_changed_number_is_caught():
    """The check can fail: one digit changed, one unknown run, one unknown column."""
    table = pd.DataFrame({"method": ["I-JEPA", "random init"], "steps": ["469", "0"], "linear": ["84.10", "82.89"]})
    assert not mismatches(table, table)
    assert mismatches(table.assign(linear=["84.11", "82.89"]), table)
    assert mismatches(table.assign(steps=["470", "0"]), table)
    assert mismatches(table.assign(knn=["", ""]), table)
    twins = pd.concat([table, table.iloc[:1].assign(linear="85.51")], ignore_index=True)  # two runs of 469 steps
    assert not mismatches(table, twins) and mismatches(table.assign(linear=["84.11", "82.89"]), twins)
    assert re.search("84.11", mismatches(table.assign(linear=["84.11", "82.89"]), table)[0])


def test_the_readme_step_flops_are_the_default_recipes():
    """The MAE-vs-I-JEPA sentence: MAE's step (651 GFLOPs), I-JEPA's averaged over the first 20
    mask draws as `pretrain.compute` counts it, and the one draw `ijepa bench flops` counts."""
    import torch

    from ijepa.bench.flops import step_flops
    from ijepa.bench.harness import draw_masks
    from ijepa.training.config import load_config
    from ijepa.training.loop import build_method

    text = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    m = re.search(r"([\d.]+) GFLOPs per step of 64 images \(`ijepa bench flops --method mae`.*?against ([\d.]+) for I-JEPA, "
                  r"averaged over the run's first 20 mask draws.*?counts one draw: ([\d.]+)\)", text)
    assert m, "README.md: the MAE vs I-JEPA step FLOPs sentence is gone or reworded"
    cfg, gflops = load_config(), {}
    for method, n in (("mae", 1), ("ijepa", 20)):
        with torch.device("meta"):
            model = build_method(cfg, method)
        gflops[method] = [step_flops(method, model, mk, fused_attention=True)["total"] / 1e9
                          for mk in draw_masks(cfg, method, n, torch.device("cpu"))]
    ijepa = gflops["ijepa"]
    assert m.groups() == (f"{gflops['mae'][0]:.0f}", f"{sum(ijepa) / len(ijepa):.1f}", f"{ijepa[0]:.1f}")
