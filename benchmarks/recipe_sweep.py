"""Recipe sweeps on Fashion-MNIST, as rounds 1-8 ran them (issue 8): a thin wrapper over `ijepa bench sweep`.

The logic lives in `ijepa.bench.sweep` (any dataset: `ijepa bench sweep GRID --data ...`); this
script keeps the rounds' spelling for the old queue (`benchmarks/sweeps/queue.txt`), the
random-init reference line of the quick probe, the summary table and the `seeds` rule.

    python benchmarks/recipe_sweep.py --grid benchmarks/sweeps/fmnist_round1.yaml [--only NAME ...]
    python benchmarks/recipe_sweep.py --choose ijepa      # rounds 6-8's rule on the val records
    python benchmarks/recipe_sweep.py --summary
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from ijepa.bench.sweep import grid_variants, quick_probe, record_dataset, run_sweep
from ijepa.data import data_spec
from ijepa.models.registry import create_encoder
from ijepa.results.io import read_records, write_record
from ijepa.results.sweeps import choose_recipe
from ijepa.training.config import load_config

COLUMNS = ["encoder", "dataset", "probe_best", "probe_lastPOOL", "probe_concatPOOL4", "grid_val_top1", "rankme_end", "target_std_start",
           "target_std_end", "final_loss", "steps", "pretrain_pflops", "pretrain_minutes", "overrides"]


def random_init_line(results_dir: Path) -> None:
    """The quick probe of the packaged recipe's encoder at random init, once."""
    if any(r.get("encoder") == "random-init (reference)" and "grid_val_top1" in r for r in read_records(results_dir)):
        return
    cfg = load_config()
    torch.manual_seed(cfg.meta.seed)
    enc = create_encoder(cfg.meta.model_name, img_size=cfg.data.crop_size, patch_size=cfg.mask.patch_size,
                         in_chans=cfg.meta.in_chans, depth=cfg.meta.depth).eval()
    rec = {"kind": "recipe_sweep", "encoder": "random-init (reference)", "dataset": "fashion-mnist",
           "selected_on": "val", "reported_on": "val", **quick_probe(enc, data_spec("fashion-mnist"), grid=True)}
    rec["probe_best"] = max(rec["probe_lastPOOL"], rec["probe_concatPOOL4"])
    write_record(rec, results_dir=results_dir)


def summary(results_dir: Path) -> pd.DataFrame:
    recs = [{**r, "dataset": record_dataset(r)} for r in read_records(results_dir) if r.get("kind") == "recipe_sweep"]
    df = pd.DataFrame(recs)
    return df[[c for c in COLUMNS if c in df]].sort_values("probe_best", ascending=False) if len(df) else df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=Path, help="YAML: {name: [overrides...]}")
    ap.add_argument("--only", nargs="*", default=None, help="run only these variant names")
    ap.add_argument("--folder", default="runs/sweep")
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--summary", action="store_true")
    ap.add_argument("--choose", choices=["ijepa", "mae"], help="apply the selection rule (val, grid, seeds) to the records")
    ap.add_argument("--random-init", action="store_true", help="record the quick probe of the random-init encoder")
    args = ap.parse_args()
    if args.grid:
        run_sweep(grid_variants(args.grid, only=args.only), folder=args.folder, results_dir=args.results)
    if args.random_init:
        random_init_line(args.results)
    if args.choose:
        c = choose_recipe(read_records(args.results), args.choose)
        print(c.table.sort_values("seed0", ascending=False).to_string(index=False, float_format="%.2f"))
        print(f"{args.choose}: chosen on val (grid, mean over seeds): {c.grid}:{c.variant}" if c.variant else
              f"{args.choose}: not chosen yet; top variants short of seeds: {', '.join(c.pending) or 'no val records'}")
    elif args.summary or not args.grid:
        print(summary(args.results).to_string(index=False))


if __name__ == "__main__":
    main()
