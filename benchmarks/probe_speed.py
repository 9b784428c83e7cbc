"""How long the Fashion-MNIST probes take on cached features (issue 21 item 2).

Extracts (or reads from the feature cache) the pooled features of one encoder on the
50k train split and on `val` (never test: this is a speed figure, its accuracies are only
a check that each probe converged to something sensible), then times, in one process:
- logistic regression as `evals/linear_fmnist_logreg.yaml` runs it (feature set picked on
  held-out train, refit on all of train; torch L-BFGS to max |grad| <= tol);
- the VISSL head grid as `evals/linear_fmnist.yaml` runs it (search, lr growth, refit);
- all of low-shot as `evals/lowshot_fmnist.yaml` runs it (1/5/10% x 3 seeds, C by 3-fold CV).
Targets (issue 21): logistic regression under 30 s, the grid under 60 s, low-shot under 60 s,
on this 2-core machine; reported, never asserted. One `bench.probe_speed` record.

    python benchmarks/probe_speed.py                       # random-init default architecture
    python benchmarks/probe_speed.py --encoder runs/fmnist_vit_tiny
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ijepa.evals.core.encoders import EncoderSpec
from ijepa.evals.core.fit import GridConfig, fit_grid
from ijepa.evals.core.logreg import fit_logreg
from ijepa.evals.core.setup import frozen_splits
from ijepa.evals.entries.lowshot import FRACTIONS
from ijepa.evals.lowshot import draw_splits, logreg
from ijepa.results.io import write_record
from ijepa.typedconfig import read_yaml

TARGETS_S = {"logreg_s": 30, "grid_s": 60, "lowshot_s": 60}


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - t0, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoder", default=None, help="run dir or checkpoint (default: the default architecture at random init)")
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--train-limit", type=int, default=None, help="smoke runs only: the figures are for all of train")
    args = ap.parse_args()
    encoder = args.encoder or EncoderSpec(random_init="vit_tiny", img_size=32, patch_size=4, in_chans=1, depth=6, seed=0)
    train, val, info = frozen_splits(encoder, "fashion-mnist", eval_split="val", train_limit=args.train_limit, val_limit=args.train_limit)
    grid_cfg = GridConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in read_yaml("evals/linear_fmnist.yaml")["grid"].items()})
    lr, logreg_s = timed(lambda: fit_logreg(train, {"val": val}, feature_sets=grid_cfg.feature_sets, cs=(1.0,)))
    grid, grid_s = timed(lambda: fit_grid(grid_cfg, train, {"val": val}, num_classes=10, device=torch.device("cpu")))
    splits = draw_splits(train.labels, None, fractions=FRACTIONS, seeds=(0, 1, 2), subset_dir=None, write_dir=None)
    low, lowshot_s = timed(lambda: {f"{f:g}/{s}": logreg(train.subset(rows), val, feature_sets=grid_cfg.feature_sets, seed=s)
                                    for (f, s), (rows, _) in splits.items()})
    rec = {
        "kind": "bench.probe_speed", "headline": "logreg_s", "unit": "value", **info,
        "threads": torch.get_num_threads(), "logreg_s": logreg_s, "grid_s": grid_s, "lowshot_s": lowshot_s,
        "targets_s": TARGETS_S, "met": {k: v <= TARGETS_S[k] for k, v in (("logreg_s", logreg_s), ("grid_s", grid_s), ("lowshot_s", lowshot_s))},
        "logreg": {"val_top1": lr["val_top1"], "n_iter": lr["n_iter"], "converged": lr["converged"], "features": lr["features"]},
        "grid": {"val_top1": grid.metrics["val_top1"], "head": grid.best.name, "lrs_searched": list(grid.lrs)},
        "lowshot": {k: {"val_top1": v["top1"], "converged": v["converged"] and v["cv_converged"]} for k, v in low.items()},
    }
    write_record(rec, results_dir=args.results)
    print(f"features: {info['feature_s']} s ({len(train)} train, {len(val)} val, {rec['threads']} threads)")
    for k in TARGETS_S:
        print(f"{k[:-2]:>8}: {rec[k]:6.1f} s (target {TARGETS_S[k]} s)")
    print(f"val top-1: logreg {100 * lr['val_top1']:.2f}%  grid {100 * grid.metrics['val_top1']:.2f}%")


if __name__ == "__main__":
    main()
