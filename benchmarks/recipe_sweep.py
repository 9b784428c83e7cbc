"""Recipe search for small-scale I-JEPA on Fashion-MNIST (issue 8).

Each variant is its grid's base config (the packaged default unless the grid names another,
`ijepa.bench.grids`) plus `--set`-style overrides; it pretrains for the
variant's schedule, then its frozen target encoder is scored by a quick probe: scikit-learn
logistic regression on lastPOOL / concatPOOL4 features of a stratified train subset,
evaluated on the held-out `val` split (never test), plus RankMe and the last target-feature std. One JSON record
per variant under results/records/recipe_sweep/; `--summary` prints the table.

    python benchmarks/recipe_sweep.py --grid benchmarks/sweeps/fmnist_round1.yaml
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from ijepa import load_encoder
from ijepa.bench.flops import mean_step_flops, pretrain_compute
from ijepa.bench.grids import read_grid
from ijepa.data import build_dataset, data_spec
from ijepa.evals.core.features import Features, fmnist_batches, pooled
from ijepa.evals.core.fit import GridConfig, fit_grid
from ijepa.models.registry import create_encoder
from ijepa.results.io import read_records, write_record
from ijepa.results.sweeps import choose_recipe
from ijepa.training.config import Config, load_config
from ijepa.training.data import dataset_root
from ijepa.training.loop import pretrain


@torch.no_grad()
def pooled_features(encoder, images: torch.Tensor, batch: int = 500) -> dict[str, np.ndarray]:
    """lastPOOL and concatPOOL4 for uint8 [N, 1, 28, 28] Fashion-MNIST images (eval-core path)."""
    spec = data_spec("fashion-mnist")
    batches = fmnist_batches(images, size=encoder.img_size, in_chans=encoder.in_chans, mean=spec.mean,
                             std=spec.std, batch_size=batch)
    cat4 = torch.cat([pooled(encoder, x) for x in batches]).numpy()
    return {"lastPOOL": cat4[:, -encoder.embed_dim :], "concatPOOL4": cat4}


def quick_probe(encoder, *, n_train: int = 6000, seed: int = 0, grid: bool = False) -> dict[str, float]:
    """Logistic regression on 6k train images, scored on all of `val`: never on test. With
    `grid`, also the eval core's VISSL head grid on the same images (head chosen on held-out train)."""
    train, val = build_dataset("fashion-mnist", "train"), build_dataset("fashion-mnist", "val")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(train), generator=g)[:n_train]
    ftr, fte = pooled_features(encoder, train.images[idx]), pooled_features(encoder, val.images)
    ytr, yte = train.targets[idx].numpy(), val.targets.numpy()
    out = {}
    for name in ftr:
        sc = StandardScaler().fit(ftr[name])
        clf = LogisticRegression(max_iter=1000, C=0.1).fit(sc.transform(ftr[name]), ytr)
        out[f"probe_{name}"] = float(clf.score(sc.transform(fte[name]), yte))
    if grid:
        width = encoder.embed_dim
        tr = Features(torch.from_numpy(ftr["concatPOOL4"]), train.targets[idx], width)
        va = Features(torch.from_numpy(fte["concatPOOL4"]), val.targets, width)
        res = fit_grid(GridConfig(), tr, {"val": va}, num_classes=10, device=torch.device("cpu"), seed=seed)
        out["grid_val_top1"], out["grid_head"] = res.metrics["val_top1"], res.best.name
    return out


def finished(name: str, overrides: list[str], results_dir: Path) -> bool:
    """A variant whose record exists is not run again: the queue resumes where it stopped."""
    return any(r.get("kind") == "recipe_sweep" and r.get("encoder") == name and r.get("overrides") == overrides
               for r in read_records(results_dir))


def variant_config(name: str, overrides: list[str], *, folder: str, base: Path | None = None) -> tuple[Config, str]:
    """The `base` config (None: the packaged default) plus `--set` overrides; two tokens of ours: `method=mae` picks the
    method, `budget_pflops=X` sizes the run to X PFLOPs at the variant's own cost per step
    (as many images as that buys, one epoch of them, so the schedule has the shape of the
    400-step runs'; past the train split's size, every image for as many epochs as the budget
    buys, warm-up stretched by the same factor). Warm-up is the base's, in epochs: 20% of the one-epoch
    run on rounds 6-8's base (0.2); a grid on today's packaged default (0.36 of its 1.8 epochs) sets its own."""
    method = next((o.split("=", 1)[1] for o in overrides if o.startswith("method=")), "ijepa")
    budget = next((float(o.split("=", 1)[1]) for o in overrides if o.startswith("budget_pflops=")), None)
    sets = [o for o in overrides if not o.startswith(("method=", "budget_pflops="))]
    logs = [f"logging.folder={folder}", f"logging.write_tag={name}"]
    cfg = load_config(base, [*logs, *sets])
    if budget is not None:
        steps = int(budget * 1e15 // mean_step_flops(cfg, method))
        images, n_train = steps * cfg.data.batch_size, len(build_dataset(data_spec(dataset_root(cfg)), "train"))
        shape = [f"data.subset={images}", "optimization.epochs=1"] if images <= n_train else [
            f"optimization.epochs={images / n_train}", f"optimization.warmup={cfg.optimization.warmup * images / n_train}"]
        cfg = load_config(base, [*logs, *sets, *shape])
    return cfg, method


def run_variant(name: str, overrides: list[str], *, folder: str, results_dir: Path, base: Path | None = None) -> dict:
    cfg, method = variant_config(name, overrides, folder=folder, base=base)
    t0 = time.perf_counter()
    run_dir = pretrain(cfg, method=method, resume=True)
    minutes = (time.perf_counter() - t0) / 60
    log = pd.read_csv(run_dir / "log.csv")
    compute = pretrain_compute(run_dir)
    rec = {
        "kind": "recipe_sweep", "encoder": name, "method": method, "dataset": "fashion-mnist", "overrides": overrides,
        **({"base": str(base)} if base else {}), "selected_on": "val", "reported_on": "val",
        "pretrain_minutes": minutes, "steps": int(log.step.max()),
        "images_seen": compute["steps"] * compute["batch_size"], "pretrain_pflops": compute["pretrain_flops"] / 1e15,
        "gflops_per_image": compute["flops_per_step"] / compute["batch_size"] / 1e9,
        "final_loss": float(log.loss.iloc[-1]), "target_std_start": float(log.target_std.iloc[0]),
        "target_std_end": float(log.target_std.iloc[-1]), "rankme_end": float(log.rankme.dropna().iloc[-1]),
        "online_probe_end": float(log.probe_acc.tail(20).mean()),
        **quick_probe(load_encoder(run_dir), grid=True),
        **({f"context_{k}": v for k, v in quick_probe(load_encoder(run_dir, which="encoder")).items()} if method == "ijepa" else {}),
    }
    rec["probe_best"] = max(rec["probe_lastPOOL"], rec["probe_concatPOOL4"])
    write_record(rec, results_dir=results_dir)
    print(json.dumps(rec))
    return rec


def summary(results_dir: Path) -> pd.DataFrame:
    recs = [r for r in read_records(results_dir) if r.get("kind") == "recipe_sweep"]
    cols = ["encoder", "probe_best", "probe_lastPOOL", "probe_concatPOOL4", "grid_val_top1", "rankme_end", "target_std_start",
            "target_std_end", "final_loss", "steps", "pretrain_pflops", "pretrain_minutes", "overrides"]
    df = pd.DataFrame(recs)
    return df[[c for c in cols if c in df]].sort_values("probe_best", ascending=False) if len(df) else df


def print_choice(method: str, results_dir: Path) -> None:
    """The rule's verdict on `val` records, or which top variants still need seeds."""
    c = choose_recipe(read_records(results_dir), method)
    print(c.table.sort_values("seed0", ascending=False).to_string(index=False, float_format="%.2f"))
    if c.variant is None:
        print(f"{method}: not chosen yet; top variants short of seeds: {', '.join(c.pending) or 'no val records'}")
    else:
        print(f"{method}: chosen on val (grid, mean over seeds): {c.grid}:{c.variant}")


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
        grid = read_grid(args.grid)
        for name, overrides in grid.variants.items():
            if args.only is not None and name not in args.only:
                continue
            if finished(name, overrides, args.results):  # said, so a finished grid is not a silent no-op
                print(f"{name}: recorded in {args.results}/records/recipe_sweep/, not run again", file=sys.stderr)
            else:
                run_variant(name, overrides, folder=args.folder, results_dir=args.results, base=grid.base)
    done = any(r.get("encoder") == "random-init (reference)" and "grid_val_top1" in r for r in read_records(args.results))
    if args.random_init and not done:
        cfg = load_config()
        torch.manual_seed(cfg.meta.seed)
        enc = create_encoder(cfg.meta.model_name, img_size=cfg.data.crop_size, patch_size=cfg.mask.patch_size,
                             in_chans=cfg.meta.in_chans, depth=cfg.meta.depth).eval()
        rec = {"kind": "recipe_sweep", "encoder": "random-init (reference)", "dataset": "fashion-mnist",
               "selected_on": "val", "reported_on": "val", **quick_probe(enc, grid=True)}
        rec["probe_best"] = max(rec["probe_lastPOOL"], rec["probe_concatPOOL4"])
        write_record(rec, results_dir=args.results)
    if args.choose:
        print_choice(args.choose, args.results)
    elif args.summary or not args.grid:
        print(summary(args.results).to_string(index=False))


if __name__ == "__main__":
    main()
