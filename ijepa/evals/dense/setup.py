"""What every dense eval does around its own head and metric: the run config (one set of
defaults; recipes and overrides load through `ijepa.typedconfig`), the backbone from the
shared encoder contract, the loaders, and the results record."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader, Dataset

from ijepa.evals.core.encoders import EncoderSpec, build_encoder
from ijepa.evals.core.setup import check_img_size
from ijepa.evals.core.train import DenseTrainConfig
from ijepa.evals.dense.backbone import DenseBackbone
from ijepa.evals.dense.data import stack
from ijepa.typedconfig import COUNT, NON_NEGATIVE, POSITIVE, Range, checked

# The encoder of the dense fixtures (tests/fixtures: ade20k, nyu, fsc147, coco)
FIXTURE_ENCODER = ("--random-init", "vit_tiny", "--depth", "2", "--patch-size", "8", "--device", "cpu")


@dataclass(frozen=True)
class DenseRun:
    """Fields shared by segmentation, depth and counting (each task subclasses it)."""

    data: str = ""
    img_size: int = checked(512, COUNT)  # train crop side (a multiple of the patch size); eval resizes the short side to it
    batch_size: int = checked(16, COUNT)
    max_iters: int = checked(1000, COUNT)
    lr: float = checked(1e-3, POSITIVE)
    weight_decay: float = checked(0.01, NON_NEGATIVE)
    warmup_iters: int = checked(0, NON_NEGATIVE)
    layer_decay: float = checked(1.0, Range(gt=0, le=1))  # fine-tune mode only
    mode: Literal["frozen", "finetune"] = "frozen"
    taps: tuple[int, ...] | None = None  # None = DenseBackbone's default 4
    head: str = "linear"
    eval_every: int = checked(0, NON_NEGATIVE)
    max_eval_images: int | None = checked(None, COUNT)  # quick runs: score the first N images of each split
    workers: int = checked(0, NON_NEGATIVE)
    seed: int = 0
    progress: bool = True

    def train_config(self) -> DenseTrainConfig:
        return DenseTrainConfig(
            max_iters=self.max_iters, lr=self.lr, weight_decay=self.weight_decay, warmup_iters=self.warmup_iters,
            layer_decay=self.layer_decay, eval_every=self.eval_every, progress=self.progress,
        )


def dense_backbone(spec: EncoderSpec, run: DenseRun, device: torch.device) -> tuple[DenseBackbone, dict[str, Any]]:
    """(backbone on `device`, record fields naming the encoder)."""
    torch.manual_seed(run.seed)
    enc, name, key = build_encoder(spec)
    check_img_size(run.img_size, enc.patch_size)
    bb = DenseBackbone(enc, taps=list(run.taps) if run.taps else None, mode=run.mode).to(device)
    info = {
        "encoder": name, "encoder_key": key, "patch_size": enc.patch_size, "depth": enc.depth,
        "width": enc.embed_dim, "num_heads": enc.num_heads, "taps": bb.taps, "mode": run.mode, "head": run.head,
    }
    return bb, info


def train_loader(dataset: Dataset, run: DenseRun) -> DataLoader:
    g = torch.Generator().manual_seed(run.seed)
    return DataLoader(
        dataset, batch_size=run.batch_size, shuffle=True, drop_last=len(dataset) >= run.batch_size,
        num_workers=run.workers, collate_fn=stack, generator=g, persistent_workers=run.workers > 0,
    )


def item_rng() -> random.Random:
    """Per-item RNG drawn from torch's, so torch.manual_seed and loader workers seed it."""
    return random.Random(int(torch.randint(2**31 - 1, ())))


def eval_items(dataset: Dataset, limit: int | None) -> range:
    return range(len(dataset) if limit is None else min(limit, len(dataset)))


def base_record(kind: str, run: DenseRun, info: dict[str, Any], history: list[dict]) -> dict[str, Any]:
    fields = {k: v for k, v in dataclasses.asdict(run).items() if k not in ("progress", "workers")}
    return {"kind": kind, **info, "dataset": str(Path(run.data).resolve()), "config": fields, "history": history}
