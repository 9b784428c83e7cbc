"""Recipe sweeps (`ijepa bench sweep`): variants of a grid pretrained and scored on `val`, never test.

Each variant is its grid's base config plus `--set`-style overrides (`ijepa.bench.grids`),
run on one dataset (`--data`: fashion-mnist, a family's FAMILY:LEVEL, or an ImageFolder root).
It pretrains for the variant's schedule, then its frozen target encoder is scored by a quick
probe: scikit-learn logistic regression on lastPOOL / concatPOOL4 features of a stratified
6k train subset and the VISSL head grid on the same features, both evaluated on the held-out
`val` split; plus RankMe and the target-feature std. One `recipe_sweep` record per variant and
dataset; a variant whose record exists is not run again, so a queue resumes where it stopped.

The choice rules (`ijepa.results.sweeps`): `seeds` (rounds 6-8: the top 3 by seed-0 grid,
rerun to 3 seeds, best mean) and `best` (the crossover: the best seed-0 grid among a fixed
set of candidates, the same set at every dataset).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ijepa.families import FAMILIES, family
from ijepa.results.curves import FMNIST, record_dataset


def canonical_data(data: str) -> str:
    """The one spelling of a dataset that records and run names use: `fmnist-clutter:0` (any family's level 0) is
    Fashion-MNIST itself (same bytes), an ImageFolder root its absolute path."""
    from ijepa.data import data_spec
    from ijepa.data.fashion_mnist import DEFAULT_ROOT

    spec = data_spec(data)
    if spec.kind == "imagefolder":
        return str(spec.root.resolve())
    name = spec.id  # fashion-mnist or FAMILY:LEVEL
    return name if spec.root == DEFAULT_ROOT else f"{name}:{spec.root}"


def data_overrides(data: str) -> list[str]:
    """The config keys that point a recipe at `data`: none for the default Fashion-MNIST (so the
    configs of the runs made before datasets were named stay the same); an ImageFolder root
    as `ijepa pretrain --data` points at it, its channels read from its images."""
    from ijepa.data import data_spec
    from ijepa.data.fashion_mnist import DEFAULT_ROOT
    from ijepa.training import data as training_data

    spec = data_spec(data)
    if spec.kind == "imagefolder":
        return training_data.data_overrides(data)
    root = [] if spec.root == DEFAULT_ROOT else [f"data.root_path={spec.root}"]
    return ([] if spec.kind == FMNIST else [f"data.dataset={spec.id}"]) + root


def data_slug(data: str) -> str:
    """A folder-safe tag of a non-default dataset (run names, sweep folders); '' for Fashion-MNIST."""
    import hashlib

    data = canonical_data(data)
    if data == FMNIST:
        return ""
    if (fam := family(data)) is not None and data.count(":") == 1:
        return f"{FAMILIES[fam[0]]}{data.split(':')[1]}"
    return f"{Path(data).name or 'data'}-{hashlib.sha256(data.encode()).hexdigest()[:8]}"


@torch.no_grad()
def pooled_features(encoder, images: torch.Tensor, spec, batch: int = 500) -> dict[str, np.ndarray]:
    """lastPOOL and concatPOOL4 of uint8 [N, 1, 28, 28] images (the eval core's path)."""
    from ijepa.evals.core.features import fmnist_batches, pooled

    batches = fmnist_batches(images, size=encoder.img_size, in_chans=encoder.in_chans, mean=spec.mean, std=spec.std, batch_size=batch)
    cat4 = torch.cat([pooled(encoder, x) for x in batches]).numpy()
    return {"lastPOOL": cat4[:, -encoder.embed_dim :], "concatPOOL4": cat4}


def _split_features(encoder, spec, n_train: int, seed: int) -> tuple[dict, dict, np.ndarray, np.ndarray]:
    """Pooled features of a seeded `n_train` subset of train and of all of val, with labels."""
    from ijepa.data import build_dataset
    from ijepa.evals.core.features import Features, extract_features

    g = torch.Generator().manual_seed(seed)
    train, val = build_dataset(spec, "train"), build_dataset(spec, "val")
    idx = torch.randperm(len(train), generator=g)[:n_train]
    if spec.in_memory:
        ftr, fva = pooled_features(encoder, train.images[idx], spec), pooled_features(encoder, val.images, spec)
        return ftr, fva, train.targets[idx].numpy(), val.targets.numpy()
    feats: list[Features] = [extract_features(encoder, "sweep", spec, s, device=torch.device("cpu"), indices=i, cache_dir=None)
                             for s, i in (("train", idx), ("val", None))]
    out = [{"lastPOOL": f.get("lastPOOL").numpy(), "concatPOOL4": f.concat.numpy()} for f in feats]
    return out[0], out[1], feats[0].labels.numpy(), feats[1].labels.numpy()


def quick_probe(encoder, spec, *, n_train: int = 6000, seed: int = 0, grid: bool = False) -> dict[str, float]:
    """Logistic regression on 6k train images, scored on all of `val`: never on test. With
    `grid`, also the eval core's VISSL head grid on the same images (head chosen on held-out train)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from ijepa.evals.core.features import Features
    from ijepa.evals.core.fit import GridConfig, fit_grid

    ftr, fva, ytr, yva = _split_features(encoder, spec, n_train, seed)
    out: dict[str, Any] = {}
    for name in ftr:
        sc = StandardScaler().fit(ftr[name])
        clf = LogisticRegression(max_iter=1000, C=0.1).fit(sc.transform(ftr[name]), ytr)
        out[f"probe_{name}"] = float(clf.score(sc.transform(fva[name]), yva))
    if grid:
        tr = Features(torch.from_numpy(ftr["concatPOOL4"]), torch.from_numpy(ytr), encoder.embed_dim)
        va = Features(torch.from_numpy(fva["concatPOOL4"]), torch.from_numpy(yva), encoder.embed_dim)
        res = fit_grid(GridConfig(), tr, {"val": va}, num_classes=int(ytr.max()) + 1, device=torch.device("cpu"), seed=seed)
        out["grid_val_top1"], out["grid_head"] = res.metrics["val_top1"], res.best.name
    return out


@dataclass(frozen=True)
class Variant:
    """One variant of a grid, on one dataset: what runs and how its record is found again."""

    name: str
    overrides: tuple[str, ...]
    base: Path | None
    grid: Path  # the grid file that defines it (a reference resolves to its origin)
    data: str = FMNIST

    @property
    def method(self) -> str:
        return next((o.split("=", 1)[1] for o in self.overrides if o.startswith("method=")), "ijepa")


def finished(variant: Variant, results_dir: Path) -> dict[str, Any] | None:
    """The variant's record on its dataset, if any: a finished variant is not run again."""
    from ijepa.results.io import read_records

    recs = [r for r in read_records(results_dir) if r.get("kind") == "recipe_sweep" and r.get("encoder") == variant.name
            and r.get("overrides") == list(variant.overrides) and record_dataset(r) == canonical_data(variant.data)]
    return max(recs, key=lambda r: str(r["created"])) if recs else None


def variant_config(variant: Variant, *, folder: str):
    """The `base` config (None: the packaged default) plus the variant's overrides on its dataset;
    two tokens of ours: `method=mae` picks the method, `budget_pflops=X` sizes the run to X
    PFLOPs at the variant's own cost per step (as many images as that buys, one epoch of them,
    so the schedule has the shape of the 400-step runs'; past the train split's size, every
    image for as many epochs as the budget buys, warm-up stretched by the same factor)."""
    from ijepa.bench.flops import mean_step_flops
    from ijepa.data import build_dataset, data_spec
    from ijepa.training.config import load_config
    from ijepa.training.data import dataset_root

    ov = variant.overrides
    budget = next((float(o.split("=", 1)[1]) for o in ov if o.startswith("budget_pflops=")), None)
    sets = [*(o for o in ov if not o.startswith(("method=", "budget_pflops="))), *data_overrides(variant.data)]
    slug = data_slug(variant.data)
    logs = [f"logging.folder={folder}/{slug}" if slug else f"logging.folder={folder}", f"logging.write_tag={variant.name}"]
    cfg = load_config(variant.base, [*logs, *sets])
    if budget is not None:
        steps = int(budget * 1e15 // mean_step_flops(cfg, variant.method))
        images, n_train = steps * cfg.data.batch_size, len(build_dataset(data_spec(dataset_root(cfg)), "train"))
        shape = [f"data.subset={images}", "optimization.epochs=1"] if images <= n_train else [
            f"optimization.epochs={images / n_train}", f"optimization.warmup={cfg.optimization.warmup * images / n_train}"]
        cfg = load_config(variant.base, [*logs, *sets, *shape])
    return cfg


def run_variant(variant: Variant, *, folder: str, results_dir: Path) -> dict[str, Any]:
    """Pretrain the variant (or resume it), score it on val, write its `recipe_sweep` record."""
    import pandas as pd

    from ijepa import load_encoder
    from ijepa.bench.flops import pretrain_compute
    from ijepa.data import data_spec
    from ijepa.results.io import write_record
    from ijepa.training.loop import pretrain

    cfg, method, spec = variant_config(variant, folder=folder), variant.method, data_spec(variant.data)
    t0 = time.perf_counter()
    run_dir = pretrain(cfg, method=method, resume=True)
    minutes = (time.perf_counter() - t0) / 60
    log = pd.read_csv(run_dir / "log.csv")
    compute = pretrain_compute(run_dir)
    rec = {
        "kind": "recipe_sweep", "encoder": variant.name, "method": method, "dataset": canonical_data(variant.data),
        "dataset_level": spec.level, "overrides": list(variant.overrides), "grid": str(variant.grid),
        **({"base": str(variant.base)} if variant.base else {}), "selected_on": "val", "reported_on": "val",
        "pretrain_minutes": minutes, "steps": int(log.step.max()),
        "images_seen": compute["steps"] * compute["batch_size"], "pretrain_pflops": compute["pretrain_flops"] / 1e15,
        "gflops_per_image": compute["flops_per_step"] / compute["batch_size"] / 1e9,
        "final_loss": float(log.loss.iloc[-1]), "target_std_start": float(log.target_std.iloc[0]),
        "target_std_end": float(log.target_std.iloc[-1]), "rankme_end": float(log.rankme.dropna().iloc[-1]),
        "online_probe_end": float(log.probe_acc.tail(20).mean()),
        **quick_probe(load_encoder(run_dir), spec, grid=True),
        **({f"context_{k}": v for k, v in quick_probe(load_encoder(run_dir, which="encoder"), spec).items()} if method == "ijepa" else {}),
    }
    rec["probe_best"] = max(rec["probe_lastPOOL"], rec["probe_concatPOOL4"])
    write_record(rec, results_dir=results_dir)
    print(json.dumps(rec))
    return rec


def run_sweep(variants: list[Variant], *, folder: str, results_dir: Path, log=print) -> list[dict[str, Any]]:
    """Every variant's record, running those that have none (one at a time, in order)."""
    out = []
    for v in variants:
        if (rec := finished(v, results_dir)) is not None:
            log(f"{v.name} on {canonical_data(v.data)}: recorded ({rec['_path']}), not run again")
            out.append(rec)
        else:
            out.append(run_variant(v, folder=folder, results_dir=results_dir))
    return out


def grid_variants(grid_path: str | Path, *, data: str = FMNIST, only: list[str] | None = None) -> list[Variant]:
    """The grid's variants (or those named in `only`, in the grid's order) on `data`."""
    from ijepa.bench.grids import read_grid

    grid = read_grid(grid_path)
    unknown = sorted(set(only or ()) - set(grid.variants))
    if unknown:
        raise ValueError(f"{grid.path}: no variant {', '.join(unknown)} (it has {', '.join(grid.variants) or 'none'})")
    return [Variant(name, tuple(ov), grid.origin(name).base, grid.origin(name).path, canonical_data(data))
            for name, ov in grid.variants.items() if only is None or name in only]


@dataclass
class BestChoice:
    """The `best` rule's verdict: the variant with the best seed-0 VISSL grid on `val`, or None
    while some candidates have no record (`pending`); `table` lists every candidate."""

    variant: Variant | None
    table: list[dict[str, Any]]
    pending: list[str]


def choose_best(variants: list[Variant], results_dir: Path) -> BestChoice:
    """The crossover's rule, fixed before its results: every candidate scored on `val` by the
    VISSL grid (seed 0) on the same dataset; the best wins (ties: the first in the grid)."""
    rows, pending, best = [], [], None
    for v in variants:
        rec = finished(v, results_dir)
        if rec is None or rec.get("grid_val_top1") is None:
            pending.append(v.name)
            continue
        rows.append({"variant": v.name, "grid": str(v.grid), "dataset": v.data, "grid_val_top1": rec["grid_val_top1"],
                     "probe_best": rec.get("probe_best"), "record": rec["_path"]})
        if best is None or rec["grid_val_top1"] > best[1]:
            best = (v, rec["grid_val_top1"])
    return BestChoice(None if pending or best is None else best[0], rows, pending)
