"""Attentive probe (V-JEPA's frozen evaluation): a learned query token cross-attends to the
frozen encoder's patch tokens (one attention block), a linear head reads the pooled token.

V-JEPA 2 trains many such probes (different lr / weight decay) in one pass over one frozen
forward; so does this: the last block's patch tokens are extracted once and cached, every
(lr, wd) probe sees the same batches through the one supervised loop (AdamW, warm-up +
cosine; each probe its own parameter groups, so they train independently). The probe is
chosen on a held-out part of train, retrained from scratch on all of train, and scored on the
report split.

    ijepa eval attentive --encoder runs/fmnist_vit_tiny --lrs 1e-3,3e-3 --wds 0.01,0.1
"""

from __future__ import annotations

import time
from dataclasses import fields
from itertools import product

import torch
from timm.layers import Mlp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ijepa.distributed import DistInfo
from ijepa.evals.core.features import CACHE_DIR, Tokens, extract_tokens
from ijepa.evals.core.fit import holdout_split
from ijepa.evals.core.heads import topk_correct
from ijepa.evals.core.setup import (
    EncoderLike,
    frozen_splits,
)
from ijepa.evals.core.train import DenseTrainConfig, train_dense
from ijepa.evals.entries.attentive import AttentiveSpec
from ijepa.evals.registry import Context, Record


class AttentiveProbe(nn.Module):
    """One query token, one cross-attention block (pre-norm attention + MLP, as V-JEPA's
    `AttentivePooler`), then a linear classifier on the pooled token."""

    def __init__(self, dim: int, num_classes: int, *, num_heads: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.query, std=0.02)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.mlp = Mlp(dim, 4 * dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        q = self.query.expand(len(tokens), -1, -1)
        kv = self.norm1(tokens)
        q = q + self.attn(q, kv, kv, need_weights=False)[0]
        q = q + self.mlp(self.norm2(q))
        return self.head(q[:, 0])


def train_probes(train: Tokens, settings: list[tuple[float, float]], *, num_classes: int, spec: AttentiveSpec,
                 device: torch.device, seed: int, console=None) -> nn.ModuleList:
    """One probe per (lr, wd), all trained on the same batches in one pass."""
    torch.manual_seed(seed)
    dim = train.tokens.shape[-1]
    probes = nn.ModuleList(AttentiveProbe(dim, num_classes, num_heads=spec.probe_heads or max(1, dim // 64)) for _ in settings).to(device)
    groups = []
    for probe, (lr, wd) in zip(probes, settings, strict=True):
        params = [p for p in probe.parameters()]
        groups += [{"params": [p for p in params if p.ndim > 1], "lr_scale": lr, "weight_decay": wd},
                   {"params": [p for p in params if p.ndim <= 1], "lr_scale": lr, "weight_decay": 0.0}]
    loader = DataLoader(TensorDataset(train.tokens, train.labels), batch_size=min(spec.batch_size, len(train)), shuffle=True,
                        drop_last=len(train) > spec.batch_size, generator=torch.Generator().manual_seed(seed))
    ce = nn.CrossEntropyLoss()

    def loss(model: nn.ModuleList, batch: list[torch.Tensor]) -> torch.Tensor:
        x, y = batch[0].to(device).float(), batch[1].to(device)
        return sum(ce(p(x), y) for p in model)

    cfg = DenseTrainConfig(max_iters=spec.epochs * len(loader), lr=1.0, weight_decay=0.0, warmup_iters=spec.warmup_epochs * len(loader))
    train_dense(probes, loader, loss, param_groups=groups, cfg=cfg, device=device, console=console, desc="attentive probes")
    return probes.eval()


@torch.no_grad()
def score(probes: nn.ModuleList, data: Tokens, *, device: torch.device, batch_size: int = 512) -> list[tuple[float, float]]:
    """(top-1, top-5) of every probe on `data`, as fractions."""
    hits = {1: torch.zeros(len(probes)), 5: torch.zeros(len(probes))}
    for i in range(0, len(data), batch_size):
        x = data.tokens[i : i + batch_size].to(device).float()
        logits = torch.stack([p(x) for p in probes], dim=1)  # [B, H, C]
        for k, v in topk_correct(logits, data.labels[i : i + batch_size].to(device)).items():
            hits[k] += v.cpu()
    n = max(len(data), 1)
    return [(float(hits[1][h]) / n, float(hits[5][h]) / n) for h in range(len(probes))]


def run_attentive(encoder: EncoderLike, spec: AttentiveSpec, *, device: torch.device | str = "cpu",
                  cache_dir=CACHE_DIR, console=None, group: DistInfo = DistInfo()) -> Record:
    """Pick (lr, wd) on held-out train, retrain it on all of train, score the report split."""
    t0, device = time.perf_counter(), torch.device(device)
    train, val, info = frozen_splits(encoder, spec.data, device=device, train_limit=spec.train_limit, val_limit=spec.val_limit,
                                     seed=spec.seed, img_size=spec.img_size, batch_size=spec.feature_batch_size, workers=spec.workers,
                                     cache_dir=cache_dir, console=console, extract=extract_tokens, chunk_rows=spec.chunk_rows,
                                     forward_dtype=spec.dtype, group=group)
    t1, num_classes = time.perf_counter(), info["num_classes"]
    settings = list(product(spec.lrs, spec.wds))
    fit_rows, held_rows = holdout_split(train.labels, spec.heldout, seed=spec.seed)
    probes = train_probes(train.subset(fit_rows), settings, num_classes=num_classes, spec=spec, device=device, seed=spec.seed, console=console)
    held = score(probes, train.subset(held_rows), device=device)
    best = max(range(len(settings)), key=lambda i: held[i][0])  # first of equals: the earlier setting
    final = train_probes(train, [settings[best]], num_classes=num_classes, spec=spec, device=device, seed=spec.seed, console=console)
    top1, top5 = score(final, val, device=device)[0]
    lr, wd = settings[best]
    return {
        "kind": "eval.attentive", **info, "protocol": "attentive-probe", "top1": top1, "top5": top5,
        "heldout_top1": held[best][0], "best_head": f"attentive/lr{lr:g}/wd{wd:g}", "best_lr": lr, "best_wd": wd,
        "heads": [{"lr": lr_, "wd": wd_, "heldout_top1": h[0]} for (lr_, wd_), h in zip(settings, held, strict=True)],
        "spec": {f.name: list(v) if isinstance(v := getattr(spec, f.name), tuple) else v for f in fields(spec)},
        "seed": spec.seed, "device": str(device), "fit_s": round(time.perf_counter() - t1, 2), "wall_s": round(time.perf_counter() - t0, 2),
    }


def run(encoder: EncoderLike, spec: AttentiveSpec, ctx: Context) -> Record:
    return run_attentive(encoder, spec, device=ctx.device, cache_dir=ctx.cache_dir, console=ctx.console, group=ctx.group)
