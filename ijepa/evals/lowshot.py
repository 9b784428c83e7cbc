"""Low-shot classification: 1%, 5%, 10% of the labels, class-balanced, seeded, mean ± std.

Splits are drawn per (fraction, seed), or read from SimCLR-style subset files (one training
image file name a line, e.g. `1percent.txt`; Fashion-MNIST: one train row index a line), and
can be written out for reuse; a record names each subset file it read with its md5 and whether it
is SimCLR's (`1percent.txt`: the file MSN ships too), so a score says which split it came from. Protocols on the labelled subset:
- `logreg` (default): multinomial logistic regression on standardised frozen features
  (scikit-learn's objective, solved to tolerance by torch L-BFGS), L2 strength C and the
  feature set chosen by stratified cross-validation, then refit on the whole subset;
  with `logreg: msn`, MSN's probe instead (logistic_eval.py): each feature vector centred
  and L2-normalised, no intercept, lambd fixed (several: picked by the same CV), 300 iterations;
- `heads`: the linear-head grid of `ijepa eval linear`, picked on a held-out part of the subset;
- `finetune`: end-to-end fine-tuning (AdamW, layer decay 0.75, cosine, label smoothing 0.1).
Only the rows some split uses go through the frozen encoder.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from sklearn.model_selection import StratifiedKFold

from ijepa.atomic import atomic_write_text, unwritable
from ijepa.data import DataSpec, data_spec
from ijepa.data.imagefolder import image_folder
from ijepa.distributed import DistInfo, one_process
from ijepa.evals.core.config import GridConfig
from ijepa.evals.core.features import CACHE_DIR, Features, split_labels
from ijepa.evals.core.finetune import finetune
from ijepa.evals.core.fit import check_classes, check_limit, fit_grid, stratified_sample
from ijepa.evals.core.logreg import (
    MSN_MAX_ITER,
    MSN_OBJECTIVE,
    MSN_PREPROCESS,
    LogReg,
    fit_lbfgs,
    fit_msn,
    msn_c,
    msn_preprocess,
    solver_name,
    topk,
)
from ijepa.evals.core.setup import EncoderLike, check_img_size, frozen_splits, resolve_encoder
from ijepa.evals.entries.lowshot import LowshotSpec
from ijepa.evals.registry import Context, Record
from ijepa.typedconfig import OptionError

PROTOCOLS = ("logreg", "heads", "finetune")
CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
TOL = 1e-3  # max |gradient| of the mean objective every low-shot fit runs to (as before, now reached)
# SimCLR's imagenet_subsets files by name (MSN ships the same 1percent.txt); 10percent.txt's md5 is not on record here
SIMCLR_MD5 = {"1percent.txt": "b61c91b8ddb75fabdb02a9bb2ae3bd74"}


def class_balanced_split(labels: torch.Tensor, fraction: float, *, seed: int) -> torch.Tensor:
    """Sorted rows: round(fraction * N / C) per class (at least 1), drawn with `seed`."""
    classes = labels.unique()
    per_class = max(1, round(fraction * len(labels) / len(classes)))
    g = torch.Generator().manual_seed(seed)
    picked = []
    for c in classes.tolist():
        idx = (labels == c).nonzero().squeeze(1)
        picked.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return torch.cat(picked).sort().values


def row_names(data: str) -> list[str]:
    """What a subset file calls each train row: the file name (ImageFolder), the index (Fashion-MNIST)."""
    spec = data_spec(data)
    if spec.in_memory:
        return [str(i) for i in range(len(split_labels(spec, "train")[0]))]
    return [Path(p).name for p, _ in image_folder(spec.root, "train").samples]


def subset_file(fraction: float, seed: int | None = None) -> str:
    pct = f"{fraction * 100:g}"
    return f"{pct}percent.txt" if seed is None else f"{pct}percent-seed{seed}.txt"


def read_subset(path: Path, names: list[str]) -> torch.Tensor:
    """Rows named in a subset file; an unknown name is an error naming file and line."""
    where = {n: i for i, n in enumerate(names)}
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        name = line.strip()
        if not name:
            continue
        if name not in where:
            raise ValueError(f"{path}:{lineno}: {name!r} is not a training image of this dataset")
        rows.append(where[name])
    if not rows:
        raise ValueError(f"{path}: empty subset file")
    return torch.tensor(sorted(set(rows)))


def subset_provenance(path: Path) -> dict:
    """A subset file's md5 and whether it is SimCLR's file of that name (None: no md5 on record
    for the name), so a record says which split it scored; a different file is used, not refused."""
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    known = SIMCLR_MD5.get(path.name)
    return {"path": str(path), "md5": md5, "is_simclr": None if known is None else md5 == known}


def write_subset(path: Path, rows: torch.Tensor, names: list[str]) -> None:
    try:
        atomic_write_text(path, "".join(f"{names[i]}\n" for i in rows.tolist()))
    except OSError as e:  # a read-only or full --write-subsets folder
        raise ValueError(unwritable(path, "the subset file", e)) from None


def draw_splits(labels: torch.Tensor, names: list[str] | None, *, fractions, seeds, subset_dir: Path | None, write_dir: Path | None) -> dict[tuple[float, int], tuple[torch.Tensor, str]]:
    """(fraction, seed) -> (rows, source). A file in `subset_dir` (`1percent-seed0.txt`, else
    `1percent.txt`) wins over a drawn split."""
    out = {}
    for f in fractions:
        for s in seeds:
            files = [subset_dir / subset_file(f, s), subset_dir / subset_file(f)] if subset_dir else []
            found = next((p for p in files if p.exists()), None)
            if found is not None:
                out[f, s] = (read_subset(found, names), f"file:{found}")
            else:
                out[f, s] = (class_balanced_split(labels, f, seed=s), f"drawn:seed{s}")
            if write_dir is not None:
                write_subset(write_dir / subset_file(f, s), out[f, s][0], names)
    return out


def train_pool(labels: torch.Tensor, train_limit: int | float | None, *, subset_dir: Path | None) -> torch.Tensor | None:
    """Rows of train the splits are drawn from: a seeded stratified subset (`train_limit`),
    or None for all of train. Refused when a class would be missing from it, or when subset
    files name the rows instead."""
    if train_limit is None:
        return None
    check_limit("train_limit", train_limit)
    if subset_dir is not None:
        raise ValueError(f"train_limit {train_limit!r} and subset_dir {str(subset_dir)!r}: the subset files name the rows; give one of them")
    pool = stratified_sample(labels, train_limit, seed=0)
    check_classes(labels, pool, key="train_limit", value=train_limit)
    return pool


def cv_scores(x: torch.Tensor, y: torch.Tensor, cs: tuple[float, ...], *, folds: int, seed: int, device: torch.device) -> tuple[list[float], list[list[LogReg]]]:
    """Mean stratified k-fold accuracy of each C, and each C's fits (for their iteration counts
    and the refit's warm start).
    Within a fold the C path runs small to large, each fit warm-started from the last: the
    objective is convex, so only the iteration count changes."""
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    acc, fits = [[] for _ in cs], [[] for _ in cs]
    for fit_rows, held_rows in cv.split(x.numpy(), y.numpy()):
        prev = None
        for i in sorted(range(len(cs)), key=lambda i: cs[i]):
            prev = fit_lbfgs(x[fit_rows], y[fit_rows], cs[i], tol=TOL, device=device, init=prev)
            acc[i].append(topk(prev, x[held_rows], y[held_rows])[0])
            fits[i].append(prev)
    return [statistics.fmean(a) for a in acc], fits


def cv_folds(y: torch.Tensor) -> int:
    """How many stratified folds the labelled subset holds: 3, fewer when a class has fewer rows."""
    counts = np.bincount(y.numpy())
    return int(min(3, counts[counts > 0].min()))


def logreg(train: Features, val: Features, *, feature_sets: tuple[str, ...], seed: int, device: torch.device | str = "cpu") -> dict:
    """Best (feature set, C) by stratified k-fold CV on the labelled subset, refit on all of
    it (warm-started from a fold's fit of that C); its val scores, and how many L-BFGS
    iterations the fits took (all to tolerance)."""
    y = train.labels
    folds = cv_folds(y)
    best, fits = None, []
    for f in feature_sets:
        x = train.get(f)
        if folds >= 2:
            scores, cv_fits = cv_scores(x, y, CS, folds=folds, seed=seed, device=torch.device(device))
            i = max(range(len(CS)), key=lambda i: scores[i])  # first of equals: the smaller C
            fits += [m for per_c in cv_fits for m in per_c]
            cv_score, c, start = scores[i], CS[i], cv_fits[i][-1]
        else:  # one example per class: nothing to cross-validate (no score: the first feature set, C = 1)
            cv_score, c, start = None, 1.0, None
        if best is None or (cv_score is not None and (best[0] is None or cv_score > best[0])):
            best = (cv_score, f, c, start)
    cv_score, f, c, start = best
    fitted = fit_lbfgs(train.get(f), y, c, tol=TOL, device=device, init=start)
    top1, top5 = topk(fitted, val.get(f), val.labels)
    return {"top1": top1, "top5": top5, "features": f, "C": float(c), "cv_top1": cv_score, "n_iter": fitted.n_iter,
            "converged": fitted.converged, "cv_fits": len(fits), "cv_n_iter_max": max((m.n_iter for m in fits), default=0),
            "cv_converged": all(m.converged for m in fits)}


def msn_logreg(train: Features, val: Features, *, feature_sets: tuple[str, ...], lambds: tuple[float, ...], seed: int) -> dict:
    """MSN's probe (`fit_msn`) on the labelled subset, scored on val. One (feature set, lambd)
    is fitted as given; several are picked by stratified k-fold CV on the subset (never on val).
    Preprocessing is per row, so the subset is preprocessed once for every fold."""
    y = train.labels.numpy()
    x = {f: msn_preprocess(train.get(f)) for f in feature_sets}
    candidates = [(f, lam) for f in feature_sets for lam in lambds]
    folds, cv_score = cv_folds(train.labels), None
    if len(candidates) > 1 and folds < 2:  # else the first would be taken, chosen by nothing, on a record saying train-heldout
        raise ValueError(f"lowshot logreg msn: {len(candidates)} (feature set, msn_lambd) candidates but a class with fewer than 2 "
                         "labelled rows, so no cross-validation can choose; give one feature set and one msn_lambd")
    if len(candidates) > 1:
        cv = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(y, y))
        scores = [statistics.fmean(fit_msn(x[f][a], y[a], lam).score(x[f][b], y[b]) for a, b in cv) for f, lam in candidates]
        i = max(range(len(candidates)), key=lambda i: scores[i])  # first of equals
        cv_score, candidates = scores[i], [candidates[i]]
    f, lam = candidates[0]
    model = fit_msn(x[f], y, lam)
    top1, top5 = topk(model, msn_preprocess(val.get(f)), val.labels)
    n_iter = int(model.n_iter_.max())
    return {"top1": top1, "top5": top5, "features": f, "lambd": lam, "C": msn_c(lam, len(y)), "cv_top1": cv_score,
            "n_iter": n_iter, "converged": n_iter < MSN_MAX_ITER}


def summarize(per_seed: list[dict]) -> dict:
    """Mean and (sample) std over seeds of top-1/top-5, with each seed's row."""
    out = {"seeds": per_seed}
    for m in ("top1", "top5"):
        vals = [r[m] for r in per_seed]
        out[m] = statistics.fmean(vals)
        out[f"{m}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return out


def labelled_splits(spec: LowshotSpec, labels: torch.Tensor) -> tuple[dict[tuple[float, int], tuple[torch.Tensor, str]], int]:
    """(fraction, seed) -> (rows of train, source) of every labelled split, and the size of the
    pool they are drawn from (all of train, or its `train_limit` subset)."""
    pool = train_pool(labels, spec.train_limit, subset_dir=spec.subset_dir)
    names = row_names(spec.data) if spec.subset_dir is not None or spec.write_splits is not None else None
    if pool is None:
        pool = torch.arange(len(labels))
    splits = draw_splits(labels[pool], names and [names[i] for i in pool.tolist()], fractions=spec.fractions, seeds=spec.seeds,
                         subset_dir=Path(spec.subset_dir) if spec.subset_dir else None,
                         write_dir=Path(spec.write_splits) if spec.write_splits else None)
    return {k: (pool[rows], src) for k, (rows, src) in splits.items()}, len(pool)  # rows of the pool -> rows of train


Scorer = Callable[[torch.Tensor, int], dict]  # (labelled rows of train, seed) -> top1, top5, ...


def finetune_scorer(encoder: EncoderLike, spec: LowshotSpec, ds: DataSpec, num_classes: int, *, device: torch.device,
                    console: Console | None) -> tuple[dict, Scorer, dict]:
    """(record fields, scorer, settings) of the `finetune` protocol: the encoder trained end to end on each split."""
    enc, name, key = resolve_encoder(encoder)
    check_img_size(spec.img_size, enc.patch_size)
    info = {"encoder": name, "encoder_key": key, **ds.fields(), "num_classes": num_classes, "img_size": spec.img_size or enc.img_size,
            "patch_size": enc.patch_size, "depth": enc.depth, "width": enc.embed_dim, "num_heads": enc.num_heads,
            "selected_on": "none (fixed recipe)", "reported_on": ds.report_split, "world_size": 1}
    val_rows = None if spec.val_limit is None else stratified_sample(split_labels(ds, ds.report_split)[0], spec.val_limit, seed=0)

    def score(rows: torch.Tensor, seed: int) -> dict:
        top1, top5 = finetune(enc, ds, rows, num_classes=num_classes, cfg=spec.finetune, device=device, seed=seed,
                              val_rows=val_rows, img_size=spec.img_size, workers=spec.workers, console=console)
        return {"top1": top1, "top5": top5}
    return info, score, {"finetune": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(spec.finetune).items()}}


def check_finetune(spec: LowshotSpec, group: DistInfo) -> None:
    """Fine-tuning extracts no frozen features: it runs in one process, in float32."""
    one_process("lowshot --protocol finetune", group)
    if spec.dtype != "float32":
        raise OptionError("dtype", spec.dtype, "float32 with --protocol finetune (it extracts no frozen features)")


def frozen_scorer(encoder: EncoderLike, spec: LowshotSpec, union: torch.Tensor, num_classes: int, *, device: torch.device,
                  cache_dir: Path | None, console: Console | None, group: DistInfo) -> tuple[dict, Scorer, dict]:
    """(record fields, scorer, settings) of the `logreg` and `heads` protocols, on frozen features
    of the rows some split uses (`union`, sorted)."""
    train, val, info = frozen_splits(encoder, spec.data, device=device, train_rows=union, val_limit=spec.val_limit, img_size=spec.img_size,
                                     batch_size=spec.feature_batch_size, workers=spec.workers, cache_dir=cache_dir, console=console,
                                     chunk_rows=spec.chunk_rows, forward_dtype=spec.dtype, group=group)
    grid = replace(spec.grid, feature_sets=train.distinct(spec.grid.feature_sets))  # raw pixels: one set
    feature_sets = train.distinct(tuple(spec.feature_sets))

    def score(rows: torch.Tensor, seed: int) -> dict:
        sub = train.subset(torch.searchsorted(union, rows))
        if spec.protocol == "logreg" and spec.logreg == "msn":
            return msn_logreg(sub, val, feature_sets=feature_sets, lambds=spec.msn_lambd, seed=seed)
        if spec.protocol == "logreg":
            return logreg(sub, val, feature_sets=feature_sets, seed=seed, device=device)
        res = fit_grid(grid, sub, {"eval": val}, num_classes=num_classes, device=device, seed=seed, console=console)
        return {"top1": res.metrics["eval_top1"], "top5": res.metrics["eval_top5"], "head": res.best.name}
    return info, score, frozen_settings(spec, feature_sets, grid)


def frozen_settings(spec: LowshotSpec, feature_sets: tuple[str, ...], grid: GridConfig) -> dict:
    """What a frozen protocol's record says about how it fits (ours: unchanged by the MSN option)."""
    if spec.protocol == "logreg" and spec.logreg == "msn":
        fixed = {"selected_on": "none (lambd and features fixed)"} if len(feature_sets) * len(spec.msn_lambd) == 1 else {}
        return {"feature_sets": list(feature_sets), "logreg": "msn", "msn_lambd": list(spec.msn_lambd), "objective": MSN_OBJECTIVE,
                "preprocess": MSN_PREPROCESS, "fit_intercept": False, "solver": "sklearn-lbfgs", "max_iter": MSN_MAX_ITER, **fixed}
    if spec.protocol == "logreg":
        return {"feature_sets": list(feature_sets), "cs": list(CS), "solver": solver_name(True), "tol": TOL}
    return {"grid": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(grid).items()}}


def run_lowshot(encoder: EncoderLike, spec: LowshotSpec, *, device: torch.device | str = "cpu", cache_dir: Path | None = CACHE_DIR,
                console: Console | None = None, group: DistInfo = DistInfo()) -> Record:
    """Score a frozen (or, with `finetune`, fine-tuned) encoder with few labels.

    `spec.train_limit` first keeps a seeded stratified subset of train (quick looks); the splits
    are then fractions of that subset. Returns the record: per fraction mean/std over seeds;
    `top1` at the top level is the smallest fraction's mean (a fraction in [0, 1]).
    """
    if spec.protocol not in PROTOCOLS:
        raise ValueError(f"protocol {spec.protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    if spec.logreg != "ours" and spec.protocol != "logreg":
        raise OptionError("logreg", spec.logreg, f"ours with protocol {spec.protocol} (msn is a probe of protocol logreg)")
    t0, dev = time.perf_counter(), torch.device(device)
    ds = data_spec(spec.data)
    labels, num_classes = split_labels(ds, "train")
    check_limit("val_limit", spec.val_limit)
    splits, n_pool = labelled_splits(spec, labels)
    if spec.protocol == "finetune":
        check_finetune(spec, group)
        info, score, settings = finetune_scorer(encoder, spec, ds, num_classes, device=dev, console=console)
    else:
        union = torch.cat([r for r, _ in splits.values()]).unique()
        info, score, settings = frozen_scorer(encoder, spec, union, num_classes, device=dev, cache_dir=cache_dir, console=console, group=group)
    by_fraction = {}
    for f in spec.fractions:
        rows = [{"seed": s, "n_labelled": len(splits[f, s][0]), "split": splits[f, s][1], **score(splits[f, s][0], s)} for s in spec.seeds]
        by_fraction[f"{f:g}"] = {**summarize(rows), "labelled_fraction": round(statistics.fmean(r["n_labelled"] for r in rows) / n_pool, 6)}
    head = by_fraction[f"{min(spec.fractions):g}"]
    files = sorted({src.removeprefix("file:") for _, src in splits.values() if src.startswith("file:")})
    provenance = {"subset_files": [subset_provenance(Path(f)) for f in files]} if files else {}
    return {
        "kind": "eval.lowshot", **info, "train_limit": spec.train_limit, "n_train_pool": n_pool, "protocol": spec.protocol,
        "top1": head["top1"], "top1_std": head["top1_std"], "top5": head["top5"], "fractions": by_fraction, **settings,
        **provenance, "seeds": list(spec.seeds), "device": str(device), "wall_s": round(time.perf_counter() - t0, 2),
    }


def run(encoder: EncoderLike, spec: LowshotSpec, ctx: Context) -> Record:
    return run_lowshot(encoder, spec, device=ctx.device, cache_dir=ctx.cache_dir, console=ctx.console, group=ctx.group)
