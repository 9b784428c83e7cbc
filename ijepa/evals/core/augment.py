"""The linear probe as MAE's `main_linprobe.py` runs it: the frozen encoder on fresh crops every epoch.

The I-JEPA paper's ImageNet probe "follows MAE", whose head (BatchNorm without affine + linear,
LARS) trains on RandomResizedCrop (bicubic, scale 0.08-1) + flip views, not on one cached centre
crop per image. Here the train rows are read as such views each epoch, pooled by the frozen
encoder as the cached probe pools them (`pooled`), and fed to the one head-training loop
(`fit.train_heads`). Held-out and eval images are centre crops: their features do not change
between epochs, so they come from the feature cache, shared with the cached probe.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import torch
from rich.console import Console
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Subset

from ijepa.data import DataSpec, PretrainViews, build_dataset
from ijepa.data.loader import worker_errors
from ijepa.evals.core.config import GridConfig, HeadSpec
from ijepa.evals.core.features import N_LAYERS, Features, extract_features, forward_autocast, pooled
from ijepa.evals.core.fit import (
    GridResult,
    build_groups,
    evaluate,
    head_inputs,
    holdout_split,
    schedule,
    score_rows,
    split_metrics,
    train_heads,
)
from ijepa.models.vit import VisionTransformer
from ijepa.typedconfig import OptionError

CROP_SCALE = (0.08, 1.0)  # MAE: RandomResizedCrop(224, interpolation=3), torchvision's default scale
INTERPOLATION = "bicubic"  # MAE: interpolation=3


@dataclass
class AugmentedTrain:
    """Train rows read two ways: as augmented views, pooled by the encoder batch by batch, to
    train on; as cached centre-crop features, to choose a head on held-out rows."""

    encoder: VisionTransformer
    encoder_key: str
    spec: DataSpec
    rows: torch.Tensor  # positions in the train split
    labels: torch.Tensor
    size: int
    extract: dict = field(default_factory=dict)  # extract_features' device, batch size, workers, cache, console

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def transform(self) -> str:
        return f"RandomResizedCrop({self.size}, scale={CROP_SCALE}, {INTERPOLATION}) + horizontal flip, new each epoch"

    @property
    def layout(self) -> Features:
        """No rows, the pooled features' columns: which feature set spans which."""
        width = self.encoder.embed_dim
        return Features(torch.zeros(0, min(N_LAYERS, self.encoder.depth) * width), self.labels[:0], width)

    def distinct(self, names: tuple[str, ...]) -> tuple[str, ...]:
        return self.layout.distinct(names)

    def subset(self, idx: torch.Tensor) -> AugmentedTrain:
        return replace(self, rows=self.rows[idx], labels=self.labels[idx])

    def centre(self) -> Features:
        return extract_features(self.encoder, self.encoder_key, self.spec, "train", indices=self.rows, img_size=self.size, **self.extract)


def augmented_train(encoder: VisionTransformer, encoder_key: str, spec: DataSpec, split: str, *, indices: torch.Tensor | None,
                    img_size: int | None, **kw) -> AugmentedTrain | Features:
    """`frozen_splits`' `extract` for `--augment`: train becomes augmented views (its features
    made each epoch, never cached); any other split its cached centre-crop features."""
    if split != "train":
        return extract_features(encoder, encoder_key, spec, split, indices=indices, img_size=img_size, **kw)
    labels = build_dataset(spec, "train").targets
    rows = torch.arange(len(labels)) if indices is None else indices
    labels = torch.as_tensor(labels, dtype=torch.long)[rows]
    return AugmentedTrain(encoder, encoder_key, spec, rows, labels, img_size or encoder.img_size, kw)


def check_grid(cfg: GridConfig) -> None:
    """Linear heads standardised by train statistics need every train feature at once, which a
    probe that makes them batch by batch never holds."""
    if "linear" in cfg.norms and cfg.standardize:
        raise OptionError("grid.standardize", True, "false with --augment (or grid.norms [bn], MAE's head: BatchNorm + linear)")


@dataclass
class Pieces:
    """The index batches of `steps` (one head step each) in pieces of at most `size`, the
    encoder's batch: the rows and their order are the unsplit batches' (the same draws)."""

    steps: BatchSampler
    size: int

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.steps:
            yield from (batch[i : i + self.size] for i in range(0, len(batch), self.size))

    def __len__(self) -> int:
        return len(self.steps) * math.ceil(self.steps.batch_size / self.size)


def view_batches(encoder: VisionTransformer, loader: DataLoader, *, rows: int, device: torch.device,
                 forward_dtype: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Head batches of `rows` pooled view features with their labels, each gathered from the
    loader's pieces (`Pieces`: `--feature-batch-size` images, as extraction forwards them), so
    a head batch (MAE's 16384) is never decoded or forwarded at once."""
    feats, labels = [], []
    for x, y in worker_errors(loader):
        with torch.no_grad(), forward_autocast(device, forward_dtype):
            feats.append(pooled(encoder, x.to(device, non_blocking=True)).float())
        labels.append(y)
        if sum(map(len, labels)) == rows:
            yield torch.cat(feats), torch.cat(labels)
            feats, labels = [], []


def train_augmented(cfg: GridConfig, train: AugmentedTrain, specs: list[HeadSpec], *, num_classes: int, device: torch.device,
                    seed: int, console: Console | None, what: str) -> tuple[dict, dict, dict]:
    """Train the heads of `specs` on the frozen encoder's features of fresh views of `train`'s
    rows (crops drawn from (seed, epoch, row)); returns (groups, inputs, last-epoch losses)."""
    layout = train.layout
    dims = {f: layout.get(f).shape[1] for f in cfg.feature_sets}
    groups = build_groups(cfg, specs, dims, num_classes, device=device, seed=seed)
    inputs = head_inputs(cfg, groups, dims, device)
    encoder, spec = train.encoder.to(device).eval(), train.spec
    views = PretrainViews(Subset(build_dataset(spec, "train"), train.rows.tolist()), train.size, crop_scale=CROP_SCALE,
                          in_chans=encoder.in_chans, mean=spec.mean, std=spec.std, horizontal_flip=True, seed=seed,
                          interpolation=INTERPOLATION)
    bs, steps_per_epoch, epochs = schedule(cfg, len(train))
    g = torch.Generator().manual_seed(seed)  # drawn as DataLoader(shuffle=True, batch_size=bs, drop_last=True) draws
    pieces = Pieces(BatchSampler(RandomSampler(views, generator=g), bs, drop_last=True), train.extract.get("batch_size", bs))
    loader = DataLoader(views, batch_sampler=pieces, num_workers=train.extract.get("workers", 0), generator=g)
    forward_dtype = train.extract.get("forward_dtype", "float32")  # --dtype: the views' forward as the eval splits' was

    def batches(epoch: int):
        views.set_epoch(epoch)
        for x, y in view_batches(encoder, loader, rows=bs, device=device, forward_dtype=forward_dtype):
            feats = Features(x, y, encoder.embed_dim)
            yield (lambda f, nm, feats=feats: inputs[f, nm](feats.get(f), train=True)), y.to(device)

    losses = train_heads(cfg, groups, batches, epochs=epochs, steps_per_epoch=steps_per_epoch, console=console, what=what)
    return groups, inputs, losses


def fit_augmented(cfg: GridConfig, train: AugmentedTrain, evals: dict[str, Features], *, num_classes: int, device: torch.device,
                  seed: int = 0, console: Console | None = None) -> GridResult:
    """One head (MAE's protocol): trained on all of `train`, nothing chosen. Several: trained
    together on `train` less a held-out part, the best on held-out centre crops chosen, and
    (`cfg.refit`) retrained on all of `train`. The lr grid is never grown: each round would be
    another pass of the encoder over train every epoch. Each split of `evals` is only reported."""
    specs, held, fit, held_idx = cfg.specs(), None, train, None
    if len(specs) > 1:
        fit_idx, held_idx = holdout_split(train.labels, cfg.heldout, seed=seed)
        fit = train.subset(fit_idx)
    n_held = "" if held_idx is None else f" ({len(held_idx)} held out)"
    groups, inputs, losses = train_augmented(cfg, fit, specs, num_classes=num_classes, device=device, seed=seed, console=console,
                                             what=f"heads: {len(specs)} on augmented views of {len(fit)} train rows{n_held}")
    if held_idx is not None:
        held = evaluate(groups, inputs, train.subset(held_idx).centre(), device=device)
    best = specs[0] if held is None else max(held, key=lambda s: held[s][0])
    scored = {name: evaluate(groups, inputs, data, device=device) for name, data in evals.items()}
    rows, chosen, refit_rows = score_rows(groups, losses, scored, held=held, round_=0), {n: sc[best] for n, sc in scored.items()}, None
    if held is not None and cfg.refit:
        groups, inputs, _ = train_augmented(cfg, train, [best], num_classes=num_classes, device=device, seed=seed, console=console,
                                            what=f"heads: refit of the chosen {best.name} on augmented views of all {len(train)} train rows")
        chosen, refit_rows = {name: evaluate(groups, inputs, data, device=device)[best] for name, data in evals.items()}, len(train)
    metrics = {"heldout_top1": None if held is None else held[best][0], **split_metrics(chosen)}
    bs, steps_per_epoch, epochs = schedule(cfg, len(fit))
    return GridResult(best=best, scores=rows, metrics=metrics, lrs=tuple(sorted(cfg.lrs)), refit_rows=refit_rows,
                      steps=steps_per_epoch * epochs, epochs=epochs, batch_size=bs)
