"""End-to-end fine-tuning on a labelled subset, MAE/BEiT-style (the paper's IN-1k 1% number).

AdamW, layer-wise lr decay (0.75, timm's groups), linear warm-up then cosine (the one
supervised loop, `ijepa.evals.core.train`), label smoothing 0.1,
average-pooled last layer into a linear head. Augmentation is RandomResizedCrop (+ flip),
then, with `rand_augment` (the paper's recipe: MAE's rand-m9-mstd0.5-inc1), timm's RandAugment.
"""

from __future__ import annotations

import copy

import torch
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader, Subset

from ijepa.data import DataSpec, PretrainViews, build_dataset
from ijepa.evals.core.config import RAND_AUGMENT, FinetuneConfig
from ijepa.evals.core.features import split_batches
from ijepa.evals.core.heads import topk_correct
from ijepa.evals.core.train import ENCODER_GROUPS, DenseTrainConfig, layer_decay_groups, train_dense
from ijepa.models.vit import VisionTransformer
from ijepa.typedconfig import OptionError


class Classifier(nn.Module):
    def __init__(self, encoder: VisionTransformer, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.embed_dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=2e-5)  # MAE fine-tuning head init
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).mean(1))

    def group_matcher(self, coarse: bool = False) -> dict:
        return ENCODER_GROUPS


class EpochLoader:
    """Batches of `loader`, pass after pass, telling the views which epoch each pass is (so
    the one iteration-based loop sees fresh crops every epoch)."""

    def __init__(self, loader: DataLoader, views: PretrainViews) -> None:
        self.loader, self.views, self.epoch = loader, views, 0

    def __iter__(self):
        self.views.set_epoch(self.epoch)
        self.epoch += 1
        return iter(self.loader)


def train_views(spec: DataSpec, rows: torch.Tensor, cfg: FinetuneConfig, *, size: int, in_chans: int, seed: int) -> PretrainViews:
    """The fine-tuning crops of train rows `rows`: RandomResizedCrop, flip, then RandAugment if `cfg` names one."""
    if cfg.rand_augment is not None and not RAND_AUGMENT.ok(cfg.rand_augment):  # a config built in code: `load` checks the rest
        raise OptionError("finetune.rand_augment", cfg.rand_augment, str(RAND_AUGMENT))
    return PretrainViews(Subset(build_dataset(spec, "train"), rows.tolist()), size, crop_scale=cfg.crop_scale, in_chans=in_chans,
                         mean=spec.mean, std=spec.std, horizontal_flip=cfg.horizontal_flip, rand_augment=cfg.rand_augment, seed=seed)


def finetune(
    encoder: VisionTransformer, spec: DataSpec, rows: torch.Tensor, *, num_classes: int,
    cfg: FinetuneConfig, device: torch.device, seed: int = 0, val_rows: torch.Tensor | None = None,
    img_size: int | None = None, workers: int = 0, console: Console | None = None,
) -> tuple[float, float]:
    """Fine-tune a copy of `encoder` on train rows `rows` through the one supervised loop;
    (top-1, top-5) on the report split. Crops and the scored images are `img_size` (default:
    the encoder's), the frozen position table resampled to that grid as every eval does."""
    size = img_size or encoder.img_size
    torch.manual_seed(seed)
    model = Classifier(copy.deepcopy(encoder).requires_grad_(True), num_classes).to(device)
    model.encoder.pos_embed.requires_grad_(False)
    views = train_views(spec, rows, cfg, size=size, in_chans=encoder.in_chans, seed=seed)
    loader = DataLoader(views, batch_size=min(cfg.batch_size, len(rows)), shuffle=True, drop_last=len(rows) > cfg.batch_size,
                        num_workers=workers, generator=torch.Generator().manual_seed(seed))
    ce = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    groups = layer_decay_groups(model, weight_decay=cfg.weight_decay, layer_decay=cfg.layer_decay)
    train_cfg = DenseTrainConfig(max_iters=cfg.epochs * len(loader), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                 warmup_iters=cfg.warmup_epochs * len(loader))
    train_dense(model, EpochLoader(loader, views), lambda m, b: ce(m(b[0].to(device)), b[1].to(device)), param_groups=groups,
                cfg=train_cfg, device=device, console=console, desc="finetune")
    return evaluate_classifier(model, spec, device=device, rows=val_rows, img_size=size, workers=workers)


@torch.inference_mode()
def evaluate_classifier(
    model: Classifier, spec: DataSpec, *, device: torch.device, rows: torch.Tensor | None = None,
    img_size: int | None = None, workers: int = 0, batch_size: int = 256,
) -> tuple[float, float]:
    """(top-1, top-5) on the dataset's report split (or its `rows`)."""
    model.eval()
    enc = model.encoder
    data = split_batches(spec, spec.report_split, size=img_size or enc.img_size, in_chans=enc.in_chans, indices=rows, batch_size=batch_size, workers=workers)
    n, top1, top5 = len(data.labels), 0, 0
    for i, x in enumerate(data.batches):
        y = data.labels[i * batch_size : (i + 1) * batch_size].to(device)
        hits = topk_correct(model(x.to(device)).unsqueeze(1), y)
        top1, top5 = top1 + int(hits[1][0]), top5 + int(hits[5][0])
    return top1 / max(n, 1), top5 / max(n, 1)
