"""Linear probe on frozen, cached features.

Two protocols:
- `grid` (default): the VISSL grid of linear heads (SGD or LARS), best picked on held-out
  train (its lr grid grown past an edge the best sits on), then retrained on all of train;
- `logreg`: scikit-learn's LogisticRegression objective on standardised features, the very
  classifier of the raw-pixel baseline, so "beats raw pixels" is read through one probe, solved
  by full-batch L-BFGS in torch (CPU or GPU) to its tolerance. C (default 1, as the baseline)
  and the feature set are picked on held-out train, then refit on all of it.

`augment` (grid only) is MAE's linear probe: the heads train on the frozen encoder's features of
RandomResizedCrop + flip views, new each epoch (`ijepa.evals.core.augment`).

    from ijepa.evals.entries.linear import LinearSpec
    from ijepa.evals.linear import run_linear
    rec = run_linear("runs/fmnist_vit_tiny", LinearSpec(train_limit=10000))   # rec["top1"] in [0, 1]
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch
from rich.console import Console

from ijepa.distributed import DistInfo, one_process
from ijepa.evals.core.augment import augmented_train, check_grid, fit_augmented
from ijepa.evals.core.encoders import EncoderSpec
from ijepa.evals.core.features import CACHE_DIR
from ijepa.evals.core.fit import fit_grid
from ijepa.evals.core.logreg import fit_logreg
from ijepa.evals.core.setup import EncoderLike, frozen_splits
from ijepa.evals.entries.linear import LinearSpec
from ijepa.evals.registry import Context, Record
from ijepa.typedconfig import OptionError

PROTOCOLS = ("grid", "logreg")


def run_linear(encoder: EncoderLike, spec: LinearSpec, *, device: torch.device | str = "cpu", cache_dir: Path | None = CACHE_DIR,
               console: Console | None = None, group: DistInfo = DistInfo()) -> Record:
    """Score a frozen encoder by the best head of `spec.grid`, or by logistic regression
    (`spec.cs`: its candidate L2 strengths); every choice is made on held-out train.

    Returns the record: `top1`/`top5` (fractions, on the eval split) at the top level, the chosen
    head (retrained on all of train unless `grid.refit` is off), every head's scores, timings.
    `spec.eval_split` scores another split than the dataset's report split (`val`: for choosing
    recipes, never test).
    """
    if spec.protocol not in PROTOCOLS:
        raise ValueError(f"protocol {spec.protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    if spec.augment:
        return run_augmented(encoder, spec, device=device, cache_dir=cache_dir, console=console, group=group)
    t0, seed = time.perf_counter(), spec.seed
    train, val, info = frozen_splits(
        encoder, spec.data, device=device, train_limit=spec.train_limit, val_limit=spec.val_limit, eval_split=spec.eval_split, seed=seed,
        img_size=spec.img_size, batch_size=spec.feature_batch_size, workers=spec.workers, cache_dir=cache_dir, console=console,
        chunk_rows=spec.chunk_rows, forward_dtype=spec.dtype, group=group,
    )
    t1, split = time.perf_counter(), info["reported_on"]
    grid = replace(spec.grid, feature_sets=train.distinct(spec.grid.feature_sets))  # raw pixels: one set
    if spec.protocol == "logreg":
        res = fit_logreg(train, {split: val}, feature_sets=grid.feature_sets, cs=spec.cs, heldout=grid.heldout, seed=seed,
                         device=device, console=console)
        return {  # "sklearn-logreg": scikit-learn's objective, whichever solver ("solver") minimised it
            "kind": "eval.linear", **info, "protocol": "sklearn-logreg", "top1": res[f"{split}_top1"], "top5": res[f"{split}_top5"],
            "heldout_top1": res["heldout_top1"], "best_head": f"{res['features']}/logreg/C{res['C']:g}",
            "best_features": res["features"], "best_C": res["C"], "candidates": res["candidates"], "n_iter": res["n_iter"],
            "converged": res["converged"], "grad_max": res["grad_max"], "solver": res["solver"], "tol": res["tol"],
            "refit_init": res["refit_init"],
            "seed": seed, "device": str(device),
            "fit_s": round(time.perf_counter() - t1, 2), "wall_s": round(time.perf_counter() - t0, 2),
        }
    res = fit_grid(grid, train, {split: val}, num_classes=info["num_classes"], device=torch.device(device), seed=seed, console=console)
    return {
        "kind": "eval.linear", **info, "protocol": "linear-grid",
        "top1": res.metrics[f"{split}_top1"], "top5": res.metrics[f"{split}_top5"],
        "heldout_top1": res.metrics["heldout_top1"], "best_head": res.best.name,
        "best_features": res.best.features, "best_norm": res.best.norm, "best_lr": res.best.lr, "best_wd": res.best.wd,
        "best_by_features": best_by(res.scores, "features", split),
        "grid": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(grid).items()},
        "lrs_searched": list(res.lrs), "refit_rows": res.refit_rows, "steps": res.steps,
        "heads": res.scores, "seed": seed, "device": str(device),
        "fit_s": round(time.perf_counter() - t1, 2), "wall_s": round(time.perf_counter() - t0, 2),
    }


def run_augmented(encoder: EncoderLike, spec: LinearSpec, *, device: torch.device | str, cache_dir: Path | None,
                  console: Console | None, group: DistInfo) -> Record:
    """The grid trained on augmented views (`fit_augmented`); eval features are the cached centre
    crops. One process: the heads train on every rank's views in one loop (no sharded training)."""
    one_process("linear --augment", group)
    if spec.protocol != "grid":
        raise OptionError("augment", True, "false with protocol logreg (--augment trains the grid's heads)")
    if isinstance(encoder, EncoderSpec) and encoder.raw_pixels:
        raise ValueError("--augment: raw pixels have no encoder to run on the augmented views")
    check_grid(spec.grid)
    t0, seed = time.perf_counter(), spec.seed
    train, val, info = frozen_splits(
        encoder, spec.data, device=device, train_limit=spec.train_limit, val_limit=spec.val_limit, eval_split=spec.eval_split, seed=seed,
        img_size=spec.img_size, batch_size=spec.feature_batch_size, workers=spec.workers, cache_dir=cache_dir, console=console,
        extract=augmented_train, chunk_rows=spec.chunk_rows, forward_dtype=spec.dtype,
    )
    t1, split = time.perf_counter(), info["reported_on"]
    grid = replace(spec.grid, feature_sets=train.distinct(spec.grid.feature_sets), extend_lrs=0)  # no lr rounds: see fit_augmented
    res = fit_augmented(grid, train, {split: val}, num_classes=info["num_classes"], device=torch.device(device), seed=seed, console=console)
    return {
        "kind": "eval.linear", **info, "protocol": "linear-augmented", "augment": True, "eval_preprocessing": val.transform,
        "selected_on": "train-heldout" if res.metrics["heldout_top1"] is not None else "none (one head: a fixed recipe, nothing chosen)",
        "top1": res.metrics[f"{split}_top1"], "top5": res.metrics[f"{split}_top5"], "heldout_top1": res.metrics["heldout_top1"],
        "best_head": res.best.name, "best_features": res.best.features, "best_norm": res.best.norm, "best_lr": res.best.lr,
        "best_wd": res.best.wd, "lr": res.best.lr * grid.lr_scale, "optimizer": grid.optimizer, "epochs": res.epochs,
        "batch_size": res.batch_size, "warmup_epochs": grid.warmup_epochs, "schedule": grid.schedule,
        "grid": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(grid).items()},
        "refit_rows": res.refit_rows, "steps": res.steps, "heads": res.scores, "seed": seed, "device": str(device),
        "fit_s": round(time.perf_counter() - t1, 2), "wall_s": round(time.perf_counter() - t0, 2),
    }


def best_by(rows: list[dict], key: str, split: str) -> dict[str, dict]:
    """Per value of `key` (e.g. each feature set), the head chosen on held-out train, with its
    scores on `split`."""
    out: dict[str, dict] = {}
    for r in rows:
        cur = out.get(r[key])
        if cur is None or r["heldout_top1"] > cur["heldout_top1"]:
            out[r[key]] = r
    return {k: {"head": r["head"], "heldout_top1": r["heldout_top1"], "top1": r[f"{split}_top1"], "top5": r[f"{split}_top5"]} for k, r in out.items()}


def run(encoder: EncoderLike, spec: LinearSpec, ctx: Context) -> Record:
    return run_linear(encoder, spec, device=ctx.device, cache_dir=ctx.cache_dir, console=ctx.console, group=ctx.group)
