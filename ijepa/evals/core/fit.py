"""The one head-training loop: a whole grid of linear heads, one pass over cached features.

Grid (the paper's VISSL transfer protocol, DINOv2-style in one pass): feature set
{lastPOOL, concatPOOL4} x head {linear, BatchNorm(affine=False)+linear} x lr x wd.
SGD with momentum, cosine schedule. The best head is picked on a held-out part of the
training split, never on the split it is reported on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import product

import torch
from rich.console import Console

from ijepa.evals.core.features import FEATURE_SETS, Features, progress
from ijepa.evals.core.heads import NORMS, FeatureNorm, HeadGroup, HeadSpec, topk_correct


@dataclass(frozen=True)
class GridConfig:
    feature_sets: tuple[str, ...] = FEATURE_SETS
    norms: tuple[str, ...] = NORMS
    lrs: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
    wds: tuple[float, ...] = (0.0, 5e-4)
    epochs: int = 30
    min_steps: int = 1000  # small (low-shot) sets get more epochs, not too few updates
    batch_size: int = 256
    momentum: float = 0.9
    heldout: float = 0.1  # fraction of train used to pick the head

    def specs(self) -> list[HeadSpec]:
        for n in self.norms:
            if n not in NORMS:
                raise ValueError(f"head norm {n!r}: expected one of {', '.join(NORMS)}")
        return [HeadSpec(f, n, lr, wd) for f, n, lr, wd in product(self.feature_sets, self.norms, self.lrs, self.wds)]


@dataclass
class GridResult:
    best: HeadSpec
    scores: list[dict] = field(default_factory=list)  # one row per head
    metrics: dict[str, float] = field(default_factory=dict)  # the chosen head on each eval split


def stratified_sample(labels: torch.Tensor, n: int | float, *, seed: int) -> torch.Tensor:
    """Sorted indices of a seeded, class-stratified sample (n rows, or a fraction if < 1)."""
    total = len(labels)
    want = round(n * total) if isinstance(n, float) and n < 1 else int(n)
    if want >= total:
        return torch.arange(total)
    g = torch.Generator().manual_seed(seed)
    classes, counts = labels.unique(return_counts=True)
    quota = torch.floor(counts.double() * want / total).long()
    rest = want - int(quota.sum())
    if rest > 0:  # largest remainders get the leftover rows
        frac = counts.double() * want / total - quota
        quota[frac.argsort(descending=True)[:rest]] += 1
    picked = []
    for c, q in zip(classes.tolist(), quota.tolist(), strict=True):
        idx = (labels == c).nonzero().squeeze(1)
        picked.append(idx[torch.randperm(len(idx), generator=g)[:q]])
    return torch.cat(picked).sort().values


def holdout_split(labels: torch.Tensor, frac: float, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit rows, held-out rows), stratified; the held-out part picks the head."""
    held = stratified_sample(labels, max(frac, 1e-9), seed=seed + 1)
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[held] = False
    return mask.nonzero().squeeze(1), held


def _groups(cfg: GridConfig, dims: dict[str, int], num_classes: int, *, device: torch.device, seed: int):
    g = torch.Generator().manual_seed(seed)
    specs = cfg.specs()
    groups = {}
    for f, n in product(cfg.feature_sets, cfg.norms):
        mine = [s for s in specs if s.features == f and s.norm == n]
        groups[f, n] = HeadGroup(mine, dims[f], num_classes, device=device, generator=g, momentum=cfg.momentum)
    norms = {f: FeatureNorm(dims[f], device) for f in cfg.feature_sets}
    return groups, norms


def _inputs(feats: torch.Tensor, f: str, cfg: GridConfig, norms: dict, *, train: bool) -> dict[str, torch.Tensor]:
    out = {}
    if "linear" in cfg.norms:
        out["linear"] = feats
    if "bn" in cfg.norms:
        out["bn"] = norms[f](feats, train=train)
    return out


@torch.no_grad()
def evaluate(groups: dict, norms: dict, cfg: GridConfig, data: Features, *, device: torch.device, batch_size: int = 4096) -> dict[HeadSpec, tuple[float, float]]:
    """(top-1, top-5) of every head on `data`, as fractions."""
    hits: dict[HeadSpec, list[int]] = {}
    for i in range(0, len(data), batch_size):
        y = data.labels[i : i + batch_size].to(device)
        for f in cfg.feature_sets:
            x = data.get(f)[i : i + batch_size].to(device)
            for n, xn in _inputs(x, f, cfg, norms, train=False).items():
                grp = groups[f, n]
                c = topk_correct(grp.logits(xn), y)
                for j, s in enumerate(grp.specs):
                    h = hits.setdefault(s, [0, 0])
                    h[0] += int(c[1][j])
                    h[1] += int(c[5][j])
    n = max(len(data), 1)
    return {s: (h[0] / n, h[1] / n) for s, h in hits.items()}


def train_grid(cfg: GridConfig, train: Features, *, num_classes: int, device: torch.device, seed: int = 0, console: Console | None = None):
    """Train every head of the grid together; returns (groups, norms, last-epoch losses)."""
    dims = {f: train.get(f).shape[1] for f in cfg.feature_sets}
    groups, norms = _groups(cfg, dims, num_classes, device=device, seed=seed)
    feats = {f: train.get(f).to(device) for f in cfg.feature_sets}
    labels = train.labels.to(device)
    n = len(labels)
    bs = min(cfg.batch_size, n)
    steps_per_epoch = max(n // bs, 1)  # drop the ragged last batch: BatchNorm needs > 1 row
    epochs = max(cfg.epochs, math.ceil(cfg.min_steps / steps_per_epoch))
    total = epochs * steps_per_epoch
    g = torch.Generator().manual_seed(seed)
    losses = {}
    with progress(console, "heads") as bar:
        task = bar.add_task("", total=epochs, rate="")
        for epoch in range(epochs):
            perm = torch.randperm(n, generator=g).to(device)
            sums = {k: 0.0 for k in groups}
            for i in range(steps_per_epoch):
                t = epoch * steps_per_epoch + i
                lr_factor = 0.5 * (1 + math.cos(math.pi * t / total))
                idx = perm[i * bs : (i + 1) * bs]
                y = labels[idx]
                for f in cfg.feature_sets:
                    for nm, xn in _inputs(feats[f][idx], f, cfg, norms, train=True).items():
                        sums[f, nm] = groups[f, nm].step(xn, y, lr_factor=lr_factor) + sums[f, nm]
            losses = {k: v / steps_per_epoch for k, v in sums.items()}
            best = min(float(v.min()) for v in losses.values())
            bar.update(task, advance=1, rate=f"best loss {best:.3f}")
    return groups, norms, losses


def fit_grid(
    cfg: GridConfig, train: Features, evals: dict[str, Features], *, num_classes: int,
    device: torch.device, seed: int = 0, console: Console | None = None,
) -> GridResult:
    """Hold out part of `train`, fit the grid on the rest, pick the best held-out head,
    and score every head on each split in `evals` (reported, never used to choose)."""
    fit_idx, held_idx = holdout_split(train.labels, cfg.heldout, seed=seed)
    groups, norms, losses = train_grid(cfg, train.subset(fit_idx), num_classes=num_classes, device=device, seed=seed, console=console)
    held = evaluate(groups, norms, cfg, train.subset(held_idx), device=device)
    scored = {name: evaluate(groups, norms, cfg, data, device=device) for name, data in evals.items()}
    specs = cfg.specs()
    best = max(specs, key=lambda s: held[s][0])  # first of equals: grid order breaks ties
    rows = []
    for s in specs:
        grp = groups[s.features, s.norm]
        row = {"head": s.name, "features": s.features, "norm": s.norm, "lr": s.lr, "wd": s.wd,
               "train_loss": float(losses[s.features, s.norm][grp.specs.index(s)]), "heldout_top1": held[s][0]}
        for name, sc in scored.items():
            row[f"{name}_top1"], row[f"{name}_top5"] = sc[s]
        rows.append(row)
    metrics = {"heldout_top1": held[best][0]}
    for name, sc in scored.items():
        metrics[f"{name}_top1"], metrics[f"{name}_top5"] = sc[best]
    return GridResult(best=best, scores=rows, metrics=metrics)
