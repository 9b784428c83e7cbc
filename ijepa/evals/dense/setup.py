"""What every dense eval does around its own head and metric: the backbone from the shared
encoder contract, the loaders, and the results record. The run config they share (`DenseRun`,
one set of defaults; recipes and overrides load through `ijepa.typedconfig`) is in
`ijepa.evals.core.config`."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ijepa.evals.core.config import DenseRun
from ijepa.evals.core.encoders import EncoderSpec, build_encoder
from ijepa.evals.core.setup import check_img_size
from ijepa.evals.dense.backbone import DenseBackbone
from ijepa.evals.dense.data import stack


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
