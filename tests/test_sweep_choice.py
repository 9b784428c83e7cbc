"""The recipe-selection rule (README, "How the recipe was found"): val only, the default's
FLOPs, top 3 by seed 0, the mean over 3 seeds decides."""

from __future__ import annotations

from ijepa.results.sweeps import choose_recipe

BASE = ["data.subset=25600", "optimization.epochs=1"]


def rec(name: str, extra: list[str], acc: float, *, seed: int = 0, pflops: float = 0.0264, split: str = "val",
        method: str = "ijepa", created: str = "2026-12-04T00:00:00") -> dict:
    ov = BASE + extra + ([f"meta.seed={seed}"] if seed else [])
    return {"kind": "recipe_sweep", "encoder": name, "method": method, "overrides": ov, "reported_on": split,
            "grid_val_top1": acc, "pretrain_pflops": pflops, "created": created,
            "command": ["benchmarks/recipe_sweep.py", "--grid", "g.yaml", "--only", name]}


def field() -> list[dict]:
    return [rec("a", ["x=1"], 0.82), rec("b", ["x=2"], 0.81), rec("c", ["x=3"], 0.80), rec("d", ["x=4"], 0.79),
            rec("costly", ["x=5"], 0.90, pflops=0.05), rec("on_test", ["x=6"], 0.95, split="test"),
            rec("mae", ["x=7"], 0.99, method="mae")]


def test_top_variants_short_of_seeds_are_pending() -> None:
    c = choose_recipe(field() + [rec("a_s1", ["x=1"], 0.8, seed=1)], "ijepa")
    assert c.variant is None and c.pending == ["a", "b", "c"]  # costly, on_test and mae never compete


def test_the_mean_over_seeds_decides_not_seed_zero() -> None:
    seeds = [rec("a_s1", ["x=1"], 0.78, seed=1), rec("a_s2", ["x=1"], 0.78, seed=2),
             rec("b_s1", ["x=2"], 0.81, seed=1), rec("b_s2", ["x=2"], 0.81, seed=2),
             rec("c_s1", ["x=3"], 0.80, seed=1), rec("c_s2", ["x=3"], 0.80, seed=2)]
    c = choose_recipe(field() + seeds, "ijepa")
    assert (c.variant, c.grid, c.pending) == ("b", "g.yaml", [])


def test_a_rerun_seed_counts_once_the_newest() -> None:
    seeds = [rec(f"{n}_s{s}", [f"x={i}"], 0.80, seed=s) for i, n in ((1, "a"), (2, "b"), (3, "c")) for s in (1, 2)]
    rerun = rec("a_again", ["x=1"], 0.70, created="2026-12-05T00:00:00")  # seed 0 of a, run again later
    c = choose_recipe(field() + seeds + [rerun], "ijepa")
    row = c.table.set_index("variant").loc["a_again"]
    assert row["seeds"] == 3 and abs(row["mean"] - 100 * (0.70 + 0.80 + 0.80) / 3) < 1e-9
