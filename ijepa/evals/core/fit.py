"""The one head-training loop: a whole grid of linear heads, one pass over cached features.

Grid (the paper's VISSL transfer protocol, DINOv2-style in one pass): feature set
{lastPOOL, concatPOOL4} x head {linear, BatchNorm(affine=False)+linear} x lr x wd.
SGD (or LARS) with momentum, cosine (or step) schedule. The best head is picked on a
held-out part of the training split, never on the split it is reported on. So that the
grid converges rather than stops where its grid ends: linear heads see train-standardised
features, the lr grid grows past its edge while the best head sits there, and the chosen
head is retrained on all of train (held-out rows included) before it is scored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import product

import torch
from rich.console import Console

from ijepa.evals.core.config import ROWS, GridConfig, HeadSpec
from ijepa.evals.core.features import Features
from ijepa.evals.core.heads import (
    FeatureNorm,
    HeadGroup,
    Standardize,
    topk_correct,
)
from ijepa.progress import progress
from ijepa.typedconfig import OptionError


@dataclass
class GridResult:
    best: HeadSpec
    scores: list[dict] = field(default_factory=list)  # one row per head
    metrics: dict[str, float] = field(default_factory=dict)  # the chosen head on each eval split
    lrs: tuple[float, ...] = ()  # the lr grid searched, grown past its edges
    refit_rows: int | None = None  # rows the reported head was retrained on (None: not retrained)
    steps: int = 0  # SGD steps of each head of the search
    epochs: int = 0  # its passes over the rows it trained on ...
    batch_size: int = 0  # ... in batches of this many rows


def check_limit(name: str, n: int | float | None) -> None:
    """A row limit of a direct call (a spec's is checked as it loads); before any extraction."""
    if n is not None and not ROWS.ok(n):
        raise ValueError(f"{name} {n!r}: expected {ROWS}")


def check_classes(labels: torch.Tensor, rows: torch.Tensor, *, key: str, value: object) -> None:
    """A subset must keep an image of every class: a class it leaves out can never be
    predicted, so the score would measure the subset, not the encoder."""
    n, missing = len(labels.unique()), len(labels.unique()) - len(labels[rows].unique())
    if missing:
        raise OptionError(key, value, f"an image of every class ({len(rows)} rows leave {missing} of {n} classes without an image)")


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
    """(fit rows, held-out rows), stratified; the held-out part picks the head, so neither
    part may be empty."""
    held = stratified_sample(labels, max(frac, 1e-9), seed=seed + 1)
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[held] = False
    if not len(held) or not mask.any():
        raise OptionError("heldout", frac, f"a fraction that leaves images on both sides of the {len(labels)} train images")
    return mask.nonzero().squeeze(1), held


def build_groups(cfg: GridConfig, specs: list[HeadSpec], dims: dict[str, int], num_classes: int, *, device: torch.device,
                 seed: int) -> dict[tuple[str, str], HeadGroup]:
    """The heads of `specs`, one group per (feature set, norm), initialised from `seed`."""
    g = torch.Generator().manual_seed(seed)
    groups = {}
    for f, n in product(cfg.feature_sets, cfg.norms):
        mine = [s for s in specs if s.features == f and s.norm == n]
        if mine:
            groups[f, n] = HeadGroup(mine, dims[f], num_classes, device=device, generator=g, momentum=cfg.momentum, optimizer=cfg.optimizer)
    return groups


def head_inputs(cfg: GridConfig, groups: dict, dims: dict[str, int], device: torch.device,
                feats: dict[str, torch.Tensor] | None = None) -> dict:
    """Per (feature set, norm), what feeds its heads: BatchNorm for "bn"; for "linear" the
    train statistics' standardisation of `feats` (or nothing, with `standardize` off)."""
    out = {}
    for f, n in groups:
        if n == "bn":
            out[f, n] = FeatureNorm(dims[f], device)
        elif cfg.standardize:
            out[f, n] = Standardize(feats[f], whiten=cfg.whiten)
        else:
            out[f, n] = lambda x, train=False: x
    return out


@torch.no_grad()
def evaluate(groups: dict, inputs: dict, data: Features, *, device: torch.device, batch_size: int = 4096) -> dict[HeadSpec, tuple[float, float]]:
    """(top-1, top-5) of every head on `data`, as fractions."""
    hits: dict[HeadSpec, list[int]] = {}
    for i in range(0, len(data), batch_size):
        y = data.labels[i : i + batch_size].to(device)
        for (f, n), grp in groups.items():
            x = inputs[f, n](data.get(f)[i : i + batch_size].to(device), train=False)
            c = topk_correct(grp.logits(x), y)
            for j, s in enumerate(grp.specs):
                h = hits.setdefault(s, [0, 0])
                h[0] += int(c[1][j])
                h[1] += int(c[5][j])
    n = max(len(data), 1)
    return {s: (h[0] / n, h[1] / n) for s, h in hits.items()}


def schedule(cfg: GridConfig, n: int) -> tuple[int, int, int]:
    """(batch size, steps per epoch, epochs): at least `epochs` passes and `min_steps` updates,
    so a small (low-shot) set gets more passes, not too few updates."""
    bs = min(cfg.batch_size, n)
    steps_per_epoch = max(n // bs, 1)  # drop the ragged last batch: BatchNorm needs > 1 row
    return bs, steps_per_epoch, max(cfg.epochs, math.ceil(cfg.min_steps / steps_per_epoch))


# One epoch's batches: (input of a (feature set, norm) group, labels) for each step
EpochBatches = Callable[[int], Iterator[tuple[Callable[[str, str], torch.Tensor], torch.Tensor]]]


def train_heads(cfg: GridConfig, groups: dict, batches: EpochBatches, *, epochs: int, steps_per_epoch: int,
                console: Console | None, what: str) -> dict:
    """The one head-training loop: every group steps on each batch of `batches(epoch)`, cached
    features or (`--augment`) the frozen encoder's features of fresh crops; returns the
    last epoch's mean losses per group."""
    total, warmup = epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch
    losses = {}
    with progress(console, what) as bar:
        task = bar.add_task("", total=epochs, rate="")
        for epoch in range(epochs):
            sums = {k: 0.0 for k in groups}
            for i, (inputs, y) in enumerate(batches(epoch)):
                lr_factor = cfg.lr_factor(epoch * steps_per_epoch + i, total, epoch, warmup=warmup)
                for (f, nm), grp in groups.items():
                    sums[f, nm] = grp.step(inputs(f, nm), y, lr_factor=lr_factor) + sums[f, nm]
            losses = {k: v / steps_per_epoch for k, v in sums.items()}
            best = min(float(v.min()) for v in losses.values())
            bar.update(task, advance=1, rate=f"best loss {best:.3f}")
    return losses


def train_grid(cfg: GridConfig, train: Features, *, num_classes: int, device: torch.device, seed: int = 0,
               specs: list[HeadSpec] | None = None, console: Console | None = None, what: str = "heads"):
    """Train every head of `specs` (default: the grid) together on cached features; returns
    (groups, inputs, last-epoch losses). `what` labels the progress bar (a search round and
    the refit are two passes)."""
    dims = {f: train.get(f).shape[1] for f in cfg.feature_sets}
    groups = build_groups(cfg, cfg.specs() if specs is None else specs, dims, num_classes, device=device, seed=seed)
    feats = {f: train.get(f).to(device) for f in cfg.feature_sets}
    inputs = head_inputs(cfg, groups, dims, device, feats)
    fixed = {k: inputs[k](feats[k[0]]) for k in groups if k[1] == "linear"}  # fixed statistics: transform once
    labels = train.labels.to(device)
    n = len(labels)
    bs, steps_per_epoch, epochs = schedule(cfg, n)
    g = torch.Generator().manual_seed(seed)

    def batches(epoch: int):
        perm = torch.randperm(n, generator=g).to(device)
        for i in range(steps_per_epoch):
            idx = perm[i * bs : (i + 1) * bs]
            yield (lambda f, nm, idx=idx: fixed[f, nm][idx] if (f, nm) in fixed else inputs[f, nm](feats[f][idx], train=True)), labels[idx]

    losses = train_heads(cfg, groups, batches, epochs=epochs, steps_per_epoch=steps_per_epoch, console=console, what=what)
    return groups, inputs, losses


def grown_lrs(lrs: tuple[float, ...], best: float) -> tuple[float, ...]:
    """One more lr past the grid's edge when the best head's lr is that edge (same ratio as
    the last step there); none when it is inside, or when the grid has a single lr."""
    lrs = tuple(sorted(set(lrs)))
    if len(lrs) < 2:
        return ()
    if best == lrs[-1]:
        return (lrs[-1] * lrs[-1] / lrs[-2],)
    if best == lrs[0]:
        return (lrs[0] * lrs[0] / lrs[1],)
    return ()


def search(cfg: GridConfig, fit: Features, held: Features, *, num_classes: int, device: torch.device, seed: int,
           console: Console | None) -> tuple[list, dict, tuple[float, ...]]:
    """Train the grid on `fit`, score it on `held`, and grow the lr grid while the best sits at
    its edge. Returns (trained rounds as (groups, inputs, losses, round), held-out scores, lrs)."""
    rounds, held_scores, lrs, new = [], {}, tuple(cfg.lrs), tuple(cfg.lrs)
    for r in range(cfg.extend_lrs + 1):
        specs = cfg.specs(new)
        what = f"heads: search {r + 1}, {len(specs)} heads on {len(fit)} train rows ({len(held)} held out)"
        groups, inputs, losses = train_grid(cfg, fit, num_classes=num_classes, device=device, seed=seed, specs=specs, console=console,
                                            what=what)
        rounds.append((groups, inputs, losses, r))
        held_scores.update(evaluate(groups, inputs, held, device=device))
        best = max(held_scores, key=lambda s: held_scores[s][0])  # first of equals: grid order breaks ties
        new = grown_lrs(lrs, best.lr)
        if not new or r == cfg.extend_lrs:
            break
        lrs += new
    return rounds, held_scores, lrs


def score_rows(groups: dict, losses: dict, scored: dict[str, dict], *, held: dict | None, round_: int) -> list[dict]:
    """One row per head of `groups`: its settings, last-epoch loss, held-out top-1 (None: no
    held-out part) and its scores on each split of `scored`."""
    rows = []
    for (f, n), grp in groups.items():
        for j, s in enumerate(grp.specs):
            row = {"head": s.name, "features": s.features, "norm": s.norm, "lr": s.lr, "wd": s.wd, "round": round_,
                   "train_loss": float(losses[f, n][j]), "heldout_top1": None if held is None else held[s][0]}
            for name, sc in scored.items():
                row[f"{name}_top1"], row[f"{name}_top5"] = sc[s]
            rows.append(row)
    return rows


def split_metrics(chosen: dict[str, tuple[float, float]]) -> dict[str, float]:
    """{split: (top-1, top-5)} as `{split}_top1` / `{split}_top5`."""
    return {f"{name}_top{k}": v for name, (top1, top5) in chosen.items() for k, v in ((1, top1), (5, top5))}


def fit_grid(
    cfg: GridConfig, train: Features, evals: dict[str, Features], *, num_classes: int,
    device: torch.device, seed: int = 0, console: Console | None = None,
) -> GridResult:
    """Hold out part of `train`, fit the grid on the rest (growing its lrs past an edge the
    best head sits on), pick the best held-out head, retrain it on all of `train`, and score
    it -- and every head of the search -- on each split in `evals` (reported, never used to choose)."""
    fit_idx, held_idx = holdout_split(train.labels, cfg.heldout, seed=seed)
    fit = train.subset(fit_idx)
    rounds, held, lrs = search(cfg, fit, train.subset(held_idx), num_classes=num_classes, device=device, seed=seed, console=console)
    best = max(held, key=lambda s: held[s][0])
    rows, everyone = [], {name: {} for name in evals}
    for groups, inputs, losses, r in rounds:
        scored = {name: evaluate(groups, inputs, data, device=device) for name, data in evals.items()}
        for name, sc in scored.items():
            everyone[name].update(sc)
        rows += score_rows(groups, losses, scored, held=held, round_=r)
    chosen = {name: sc[best] for name, sc in everyone.items()}
    refit_rows = None
    if cfg.refit:
        groups, inputs, _ = train_grid(cfg, train, num_classes=num_classes, device=device, seed=seed, specs=[best], console=console,
                                       what=f"heads: refit of the chosen {best.name} on all {len(train)} train rows")
        chosen = {name: evaluate(groups, inputs, data, device=device)[best] for name, data in evals.items()}
        refit_rows = len(train)
    metrics = {"heldout_top1": held[best][0], **split_metrics(chosen)}
    bs, steps_per_epoch, epochs = schedule(cfg, len(fit))
    return GridResult(best=best, scores=rows, metrics=metrics, lrs=tuple(sorted(lrs)), refit_rows=refit_rows, steps=steps_per_epoch * epochs,
                      epochs=epochs, batch_size=bs)
