"""End-to-end fine-tuning on a labelled subset, MAE/BEiT-style (the paper's IN-1k 1% number).

AdamW, layer-wise lr decay (0.75), linear warm-up then cosine, label smoothing 0.1,
average-pooled last layer into a linear head. Augmentation is RandomResizedCrop (+ flip);
the paper's RandAugment is not applied.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader, Subset

from ijepa.data import DataSpec, PretrainViews, build_dataset
from ijepa.evals.core.features import progress, split_batches
from ijepa.models.vit import VisionTransformer


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    layer_decay: float = 0.75
    label_smoothing: float = 0.1
    warmup_epochs: int = 5
    crop_scale: tuple[float, float] = (0.3, 1.0)
    horizontal_flip: bool = True


class Classifier(nn.Module):
    def __init__(self, encoder: VisionTransformer, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.embed_dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=2e-5)  # MAE fine-tuning head init
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).mean(1))


def layer_id(name: str, depth: int) -> int:
    """0 for the patch embedding, i + 1 for block i, depth + 1 for the final norm and head."""
    if name.startswith("encoder.patch_embed") or name.startswith("encoder.pos_embed"):
        return 0
    if name.startswith("encoder.blocks."):
        return int(name.split(".")[2]) + 1
    return depth + 1


def param_groups(model: Classifier, *, weight_decay: float, layer_decay: float) -> list[dict]:
    """One AdamW group per (layer, decay?): lr scale layer_decay ** (depth + 1 - layer)."""
    depth = model.encoder.depth
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lid, decay = layer_id(name, depth), p.ndim > 1
        g = groups.setdefault((lid, decay), {"params": [], "weight_decay": weight_decay if decay else 0.0, "lr_scale": layer_decay ** (depth + 1 - lid)})
        g["params"].append(p)
    return list(groups.values())


def lr_at(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))


def finetune(
    encoder: VisionTransformer, spec: DataSpec, rows: torch.Tensor, *, num_classes: int,
    cfg: FinetuneConfig, device: torch.device, seed: int = 0, val_rows: torch.Tensor | None = None,
    workers: int = 0, console: Console | None = None,
) -> tuple[float, float]:
    """Fine-tune a copy of `encoder` on train rows `rows`; (top-1, top-5) on val."""
    torch.manual_seed(seed)
    model = Classifier(copy.deepcopy(encoder).requires_grad_(True), num_classes).to(device)
    model.encoder.pos_embed.requires_grad_(False)
    views = PretrainViews(Subset(build_dataset(spec, "train"), rows.tolist()), encoder.img_size, crop_scale=cfg.crop_scale,
                          in_chans=encoder.in_chans, mean=spec.mean, std=spec.std, horizontal_flip=cfg.horizontal_flip, seed=seed)
    loader = DataLoader(views, batch_size=min(cfg.batch_size, len(rows)), shuffle=True, drop_last=len(rows) > cfg.batch_size,
                        num_workers=workers, generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.AdamW(param_groups(model, weight_decay=cfg.weight_decay, layer_decay=cfg.layer_decay), lr=cfg.lr)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    total, warm = cfg.epochs * len(loader), cfg.warmup_epochs * len(loader)
    step = 0
    with progress(console, "finetune") as bar:
        task = bar.add_task("", total=cfg.epochs, rate="")
        for epoch in range(cfg.epochs):
            views.set_epoch(epoch)
            model.train()
            for x, y in loader:
                for g in opt.param_groups:
                    g["lr"] = cfg.lr * g["lr_scale"] * lr_at(step, total, warm)
                loss = loss_fn(model(x.to(device)), y.to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
            bar.update(task, advance=1, rate=f"loss {loss.item():.3f}")
    return evaluate_classifier(model, spec, device=device, rows=val_rows, workers=workers)


@torch.inference_mode()
def evaluate_classifier(
    model: Classifier, spec: DataSpec, *, device: torch.device, rows: torch.Tensor | None = None,
    workers: int = 0, batch_size: int = 256,
) -> tuple[float, float]:
    """(top-1, top-5) on the dataset's report split (or its `rows`)."""
    model.eval()
    enc = model.encoder
    n, labels, _, it = split_batches(spec, spec.report_split, size=enc.img_size, in_chans=enc.in_chans, indices=rows, batch_size=batch_size, workers=workers)
    top1 = top5 = 0
    for i, x in enumerate(it):
        y = labels[i * batch_size : (i + 1) * batch_size].to(device)
        top = model(x.to(device)).topk(min(5, model.head.out_features), dim=1).indices
        hit = top == y.view(-1, 1)
        top1, top5 = top1 + int(hit[:, 0].sum()), top5 + int(hit.any(1).sum())
    return top1 / max(n, 1), top5 / max(n, 1)
