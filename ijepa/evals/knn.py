"""Weighted k-NN on L2-normalised frozen features (DINO: k in {10, 20, 100, 200}, T = 0.07).

The reported (feature set, k) is chosen on a held-out part of train, like the linear head;
every (feature set, k) score on val is recorded too.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console

from ijepa.distributed import DistInfo
from ijepa.evals.core.features import CACHE_DIR, Features
from ijepa.evals.core.fit import holdout_split
from ijepa.evals.core.heads import topk_correct
from ijepa.evals.core.setup import EncoderLike, frozen_splits
from ijepa.evals.entries.knn import KS, KnnSpec
from ijepa.evals.registry import Context, Record


@torch.no_grad()
def knn_predict(
    bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, *, ks: tuple[int, ...] = KS,
    temperature: float = 0.07, num_classes: int, batch_size: int = 1024,
) -> dict[int, torch.Tensor]:
    """Class scores [Q, C] for each k: sum over the k nearest of exp(cos / T) per class."""
    bank = F.normalize(bank.float(), dim=1)
    kmax = min(max(ks), len(bank))
    out: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
    for i in range(0, len(queries), batch_size):
        q = F.normalize(queries[i : i + batch_size].float(), dim=1)
        sim, idx = (q @ bank.T).topk(kmax, dim=1)  # sorted, nearest first
        w = (sim / temperature).exp()
        onehot = F.one_hot(bank_labels[idx], num_classes).float()  # [B, kmax, C]
        votes = (onehot * w.unsqueeze(-1)).cumsum(1)  # votes of the first j neighbours
        for k in ks:
            out[k].append(votes[:, min(k, kmax) - 1])
    return {k: torch.cat(v) for k, v in out.items()}


def topk_acc(scores: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    hits, n = topk_correct(scores.unsqueeze(1), labels), max(len(labels), 1)
    return float(hits[1][0]) / n, float(hits[5][0]) / n


def knn_scores(bank: Features, queries: Features, *, ks: tuple[int, ...], temperature: float, num_classes: int, feature_sets: tuple[str, ...]) -> dict[tuple[str, int], tuple[float, float]]:
    """(top-1, top-5) of every (feature set, k)."""
    res = {}
    for f in feature_sets:
        scores = knn_predict(bank.get(f), bank.labels, queries.get(f), ks=ks, temperature=temperature, num_classes=num_classes)
        for k, s in scores.items():
            res[f, k] = topk_acc(s, queries.labels)
    return res


def check_ks(ks: tuple[int, ...], bank: int | None = None) -> None:
    """Each k a whole number from 1 to the memory bank's size: a larger k would silently
    be clamped to the bank and recorded as the k asked for."""
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"ks {list(ks)}: expected whole numbers >= 1")
    if bank is not None and max(ks) > bank:
        raise ValueError(f"ks: k={max(ks)} is more than the {bank} images of the k-NN memory bank "
                         f"(train less its held-out part); expected 1 <= k <= {bank}")


def run_knn(encoder: EncoderLike, spec: KnnSpec, *, device: torch.device | str = "cpu", cache_dir: Path | None = CACHE_DIR,
            console: Console | None = None, group: DistInfo = DistInfo()) -> Record:
    """Score a frozen encoder by weighted k-NN; returns the record (`top1` on the report split, a fraction)."""
    t0, ks, seed = time.perf_counter(), tuple(spec.ks), spec.seed
    check_ks(ks)
    train, val, info = frozen_splits(
        encoder, spec.data, device=device, train_limit=spec.train_limit, val_limit=spec.val_limit, seed=seed, img_size=spec.img_size,
        batch_size=spec.feature_batch_size, workers=spec.workers, cache_dir=cache_dir, console=console,
        chunk_rows=spec.chunk_rows, forward_dtype=spec.dtype, group=group,
    )
    kw = dict(ks=ks, temperature=spec.temperature, num_classes=info["num_classes"], feature_sets=train.distinct(tuple(spec.feature_sets)))
    fit_idx, held_idx = holdout_split(train.labels, spec.heldout, seed=seed)
    check_ks(ks, len(fit_idx))
    held = knn_scores(train.subset(fit_idx), train.subset(held_idx), **kw)
    scored = knn_scores(train, val, **kw)  # the full train split is the memory bank
    best, split = max(held, key=lambda fk: held[fk][0]), info["reported_on"]
    rows = [{"features": f, "k": k, "heldout_top1": held[f, k][0], f"{split}_top1": scored[f, k][0], f"{split}_top5": scored[f, k][1]} for f, k in held]
    return {
        "kind": "eval.knn", **info, "protocol": f"knn-T{spec.temperature:g}",
        "top1": scored[best][0], "top5": scored[best][1], "heldout_top1": held[best][0],
        "best_features": best[0], "best_k": best[1], "temperature": spec.temperature, "scores": rows,
        "seed": seed, "device": str(device), "wall_s": round(time.perf_counter() - t0, 2),
    }


def run(encoder: EncoderLike, spec: KnnSpec, ctx: Context) -> Record:
    return run_knn(encoder, spec, device=ctx.device, cache_dir=ctx.cache_dir, console=ctx.console, group=ctx.group)
