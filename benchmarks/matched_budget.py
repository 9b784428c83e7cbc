"""I-JEPA vs MAE on Fashion-MNIST at the same encoder and the same measured FLOPs budget (issue 4).

Both methods pretrain the default recipe's encoder (vit_tiny width, 6 blocks, patch 4, 32x32,
grayscale). Each gets as many optimizer steps as the budget buys at its own closed-form cost
per step (checked against `FlopCounterMode` on a real step first), with its LR/EMA schedule
stretched to end exactly there. Then the linear-probe grid (`ijepa.evals.linear.run_linear`)
scores both encoders and a random-init one of the same architecture. Records: one
`pretrain.compute` per run and one `eval.linear` per encoder under results/records/; the plot
comes from `ijepa results plot`. Whichever method wins is reported as measured.

    OMP_NUM_THREADS=2 python benchmarks/matched_budget.py --budget-pflops 2 && ijepa results plot
    python benchmarks/matched_budget.py --budget-pflops 0.0005 --subset 512 --quick   # smoke test
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ijepa.bench.flops import budget_config, mean_step_flops, pretrain_compute
from ijepa.evals.core.encoders import EncoderSpec
from ijepa.evals.linear import grid_config, run_linear
from ijepa.results.io import write_record
from ijepa.training.config import Config, load_config
from ijepa.training.loop import pretrain


def method_config(method: str, args: argparse.Namespace) -> Config:
    sets = [f"data.subset={args.subset}", f"logging.folder={args.runs}", f"logging.write_tag={args.tag}_{method}",
            f"meta.seed={args.seed}", f"meta.dec_depth={args.dec_depth}", f"meta.dec_emb_dim={args.dec_dim}",
            "logging.checkpoint_every=100000"]
    return load_config(args.config, sets)


def pretrain_on_budget(method: str, args: argparse.Namespace) -> dict:
    cfg = method_config(method, args)
    per_step = mean_step_flops(cfg, method)
    steps = max(1, int(args.budget_pflops * 1e15 // per_step))
    ipe = (cfg.data.subset or 50_000) // cfg.data.batch_size
    cfg = budget_config(cfg, steps, ipe)
    print(f"{method}: {per_step / 1e9:.1f} GFLOPs/step -> {steps} steps ({steps / ipe:.2f} epochs)")
    t0 = time.perf_counter()
    run_dir = pretrain(cfg, method=method)
    rec = pretrain_compute(run_dir, wall_s=time.perf_counter() - t0)
    rec["budget_flops"] = args.budget_pflops * 1e15
    write_record(rec)
    return rec


def score(encoder, args: argparse.Namespace) -> dict:
    grid = grid_config(lrs=[0.01], wds=[0.0], epochs=2, min_steps=20) if args.quick else None
    rec = run_linear(encoder, data="fashion-mnist", train_limit=args.train_limit, val_limit=args.val_limit, grid=grid, seed=args.seed)
    write_record(rec)
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget-pflops", type=float, required=True, help="pretraining budget per method, in PFLOPs")
    ap.add_argument("--config", type=Path, default=None, help="base recipe (default: the Fashion-MNIST recipe)")
    ap.add_argument("--subset", type=int, default=0, help="pretrain on the first N train images (0 = all)")
    ap.add_argument("--dec-depth", type=int, default=4, help="MAE decoder blocks (light: the encoder has 6)")
    ap.add_argument("--dec-dim", type=int, default=128, help="MAE decoder width")
    ap.add_argument("--train-limit", type=int, default=None, help="linear probe: train rows (default all)")
    ap.add_argument("--val-limit", type=int, default=None, help="linear probe: test rows (default all)")
    ap.add_argument("--quick", action="store_true", help="one-head probe grid (smoke tests only)")
    ap.add_argument("--runs", default="runs/matched_budget")
    ap.add_argument("--tag", default="mb")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    runs = {m: pretrain_on_budget(m, args) for m in ("ijepa", "mae")}
    base = method_config("ijepa", args)
    random = EncoderSpec(random_init=base.meta.model_name, img_size=base.data.crop_size, patch_size=base.mask.patch_size,
                         in_chans=base.meta.in_chans, depth=base.meta.depth, seed=args.seed)
    scores = {m: score(r["run_dir"], args) for m, r in runs.items()} | {"random": score(random, args)}
    for name, rec in scores.items():
        extra = f", {runs[name]['pretrain_flops'] / 1e12:.1f} TFLOPs, {runs[name]['pretrain_wall_s']:.0f} s" if name in runs else ""
        print(f"{name:>6}: linear top-1 {100 * rec['top1']:.2f}% ({rec['best_head']}){extra}")


if __name__ == "__main__":
    main()
