"""Sweep grids (`ijepa.bench.grids`): a variant means the config it was scored with, even after
the packaged default moves to a sweep's winner; and that default is the val-chosen recipe."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from ijepa.bench import curves
from ijepa.bench.grids import read_grid
from ijepa.training.config import DEFAULT_CONFIG, load_config

ROOT = Path(__file__).parent.parent
SWEEPS = ROOT / "benchmarks" / "sweeps"
SCHEDULE = {("optimization", k) for k in ("epochs", "warmup", "ipe_scale", "max_steps")} | {("logging", "folder"), ("logging", "write_tag")}


def test_a_grid_applies_its_overrides_to_its_named_base(tmp_path):
    base = yaml.safe_load(DEFAULT_CONFIG.read_text())
    base["meta"]["pred_depth"] = 3
    (tmp_path / "bases").mkdir()
    (tmp_path / "bases" / "old.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "g.yaml").write_text("_base: bases/old.yaml\nv: [meta.pred_emb_dim=48]\n")
    (tmp_path / "plain.yaml").write_text("v: [meta.pred_emb_dim=48]\n")
    grid, plain = read_grid(tmp_path / "g.yaml"), read_grid(tmp_path / "plain.yaml")
    assert list(grid.variants) == ["v"]  # `_base` is not a variant
    cfg = grid.config(grid.variants["v"])
    assert (cfg.meta.pred_depth, cfg.meta.pred_emb_dim) == (3, 48)
    assert plain.base is None and plain.config(plain.variants["v"]).meta.pred_depth == load_config().meta.pred_depth


@pytest.mark.parametrize("text, error", [("_base: missing.yaml\nv: []\n", "missing.yaml not found"),
                                          ("v: meta.depth=2\n", "variant 'v': expected a list of overrides"),
                                          ("- a\n- b\n", "expected a mapping of variant names")])
def test_a_malformed_grid_is_one_line_naming_the_file(tmp_path, text, error):
    (tmp_path / "g.yaml").write_text(text)
    with pytest.raises((ValueError, FileNotFoundError), match=error):
        read_grid(tmp_path / "g.yaml")


@pytest.mark.parametrize("name", ["fmnist_round6", "fmnist_round7", "fmnist_round8", "fmnist_mae_round1", "fmnist_mae_round2",
                                  "fmnist_mae_round3"])
def test_the_val_rounds_keep_the_default_they_ran_on(name):
    """Rounds 6-8 and MAE 1-3 ran on the default before round 8's winner replaced it: their
    control variants still resolve to that config (official init, predictor 4 x 96, EMA 0.99)."""
    grid = read_grid(SWEEPS / f"{name}.yaml")
    assert grid.base == SWEEPS / "bases" / "fmnist_round6.yaml"
    cfg = grid.config([])
    assert (cfg.meta.init, cfg.meta.pred_depth, cfg.optimization.ema) == ("official", 4, (0.99, 1.0))


def test_the_packaged_default_is_the_recipe_chosen_on_val(tmp_path):
    """`ijepa pretrain` with no arguments trains what `recipe_sweep.py --choose ijepa` picked
    (round 8's r8_combo) as the learning curve runs it at 15 minutes: the same config, the same
    warm-up fraction, within a step. A default moved without a choice fails here."""
    recipe = curves.read_recipe(f"{SWEEPS / 'fmnist_round8.yaml'}:r8_combo", results_dir=ROOT / "results")
    run = curves.plan_run(recipe, folder=str(tmp_path), minutes=15)
    default = load_config()
    a, b = dataclasses.asdict(run.cfg), dataclasses.asdict(default)
    diff = {(s, k) for s in b for k in b[s] if a[s][k] != b[s][k]}
    assert diff <= SCHEDULE, f"the packaged default differs from the chosen recipe in {sorted(diff - SCHEDULE)}"
    o, d = run.cfg.optimization, default.optimization
    assert o.warmup / (o.epochs * o.ipe_scale) == pytest.approx(d.warmup / d.epochs, abs=1e-3)
    assert abs(run.steps - int(d.epochs * (50_000 // default.data.batch_size))) <= 1
    assert default.meta.init == "rescaled" and recipe.val["grid_val_top1"] > 0.8
