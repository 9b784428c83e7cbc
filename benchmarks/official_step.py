"""Speed of our I-JEPA step against an official-style step at identical math (issue 4).

The baseline is written from the description of the official trainer (REFERENCE.md,
issue 4), not from its source: unfused attention `softmax(q k^T * scale) v` in Python,
AdamW without foreach/fused kernels, an EMA that loops over parameters in Python, fp32 with
no GradScaler, the context repeated once per target block in the predictor, and
`loss.item()` every step (the official loss meter). Ours is the Trainer's own step
(`ijepa.bench.harness`). Both get the same weights, images and masks (drawn before timing,
as loader workers do); steps alternate A/B so load from other processes hits both alike.

    OMP_NUM_THREADS=2 python benchmarks/official_step.py --steps 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from ijepa.bench.flops import count_flops
from ijepa.bench.harness import StepHarness, build_harness
from ijepa.bench.throughput import collator_rate, spread
from ijepa.masks.apply import apply_masks, repeat_interleave_batch
from ijepa.models.pos_embed import sincos_2d
from ijepa.results.io import write_record
from ijepa.training.config import Config, from_dict


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential()
        self.mlp.fc1, self.mlp.act, self.mlp.fc2 = nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Encoder(nn.Module):
    def __init__(self, *, grid: int, patch: int, chans: int, dim: int, depth: int, heads: int) -> None:
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(chans, dim, patch, stride=patch)
        self.pos_embed = nn.Parameter(sincos_2d(dim, grid, grid).unsqueeze(0), requires_grad=False)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor, masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2) + self.pos_embed
        if masks is not None:
            x = apply_masks(x, masks)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class Predictor(nn.Module):
    def __init__(self, *, grid: int, dim: int, pdim: int, depth: int, heads: int) -> None:
        super().__init__()
        self.predictor_embed = nn.Linear(dim, pdim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, pdim))
        self.predictor_pos_embed = nn.Parameter(sincos_2d(pdim, grid, grid).unsqueeze(0), requires_grad=False)
        self.predictor_blocks = nn.ModuleList(Block(pdim, heads) for _ in range(depth))
        self.predictor_norm = nn.LayerNorm(pdim, eps=1e-6)
        self.predictor_proj = nn.Linear(pdim, dim)

    def forward(self, x: torch.Tensor, masks_x: list[torch.Tensor], masks: list[torch.Tensor]) -> torch.Tensor:
        b = len(x) // len(masks_x)
        x = self.predictor_embed(x)
        x = x + apply_masks(self.predictor_pos_embed.repeat(b, 1, 1), masks_x)
        n_ctx = x.shape[1]
        pos = apply_masks(self.predictor_pos_embed.repeat(b, 1, 1), masks)
        pos = repeat_interleave_batch(pos, b, repeat=len(masks_x))
        pred_tokens = self.mask_token.repeat(pos.size(0), pos.size(1), 1) + pos
        x = torch.cat([x.repeat(len(masks), 1, 1), pred_tokens], dim=1)
        for blk in self.predictor_blocks:
            x = blk(x)
        return self.predictor_proj(self.predictor_norm(x)[:, n_ctx:])


class OfficialStyleStep:
    """Encoder, predictor, target encoder and optimizer of the official trainer, same weights as `ours`."""

    def __init__(self, ours: StepHarness) -> None:
        cfg, enc = ours.cfg, ours.model.encoder
        grid = enc.grid[0]
        kw = dict(grid=grid, patch=enc.patch_size, chans=enc.in_chans, dim=enc.embed_dim, depth=enc.depth, heads=enc.num_heads)
        self.encoder, self.target_encoder = Encoder(**kw), Encoder(**kw)
        p = ours.model.predictor
        self.predictor = Predictor(grid=grid, dim=enc.embed_dim, pdim=p.predictor_embed_dim, depth=len(p.predictor_blocks), heads=p.num_heads)
        for mine, theirs in ((self.encoder, enc), (self.target_encoder, ours.model.target_encoder), (self.predictor, p)):
            mine.load_state_dict(theirs.state_dict(), strict=True)
        self.target_encoder.requires_grad_(False)
        groups = [
            {"params": [q for n, q in m.named_parameters() if q.requires_grad and ("bias" not in n and q.ndim != 1)]}
            for m in (self.encoder, self.predictor)
        ] + [
            {"params": [q for n, q in m.named_parameters() if q.requires_grad and ("bias" in n or q.ndim == 1)], "WD_exclude": True, "weight_decay": 0}
            for m in (self.encoder, self.predictor)
        ]
        self.opt = torch.optim.AdamW(groups, foreach=False, fused=False)
        self.cfg, self.imgs, self.masks = cfg, ours.imgs, ours.masks

    def loss(self, i: int) -> torch.Tensor:
        masks_enc, masks_pred = self.masks[i % len(self.masks)]
        with torch.no_grad():
            h = self.target_encoder(self.imgs)
            h = F.layer_norm(h, (h.size(-1),))
            h = repeat_interleave_batch(apply_masks(h, masks_pred), len(self.imgs), repeat=len(masks_enc))
        z = self.predictor(self.encoder(self.imgs, masks_enc), masks_enc, masks_pred)
        return F.smooth_l1_loss(z, h)

    def step(self, i: int) -> float:
        o = self.cfg.optimization
        for g in self.opt.param_groups:
            g["lr"] = o.lr
            if not g.get("WD_exclude"):
                g["weight_decay"] = o.weight_decay
        loss = self.loss(i)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad()
        with torch.no_grad():
            m = o.ema[0]
            for q, k in zip(self.encoder.parameters(), self.target_encoder.parameters(), strict=True):
                k.data.mul_(m).add_((1.0 - m) * q.detach().data)
        return loss.item()


def bench_config(*, batch: int, compile_: bool) -> Config:
    """vit_tiny at 224, patch 16, predictor depth 6 x 192, fp32: the issue's settings."""
    return from_dict({
        "data": {"crop_size": 224, "batch_size": batch},
        "mask": {"patch_size": 16},
        "meta": {"model_name": "vit_tiny", "in_chans": 3, "pred_depth": 6, "pred_emb_dim": 192,
                 "cpu_bfloat16": False, "use_bfloat16": False, "compile": compile_},
    })


def check_same_math(ours: StepHarness, base: OfficialStyleStep) -> float:
    """Relative difference of the two losses on the same weights, images and masks."""
    with torch.no_grad():
        me, mp = ours.masks[0]
        a, _ = ours.model(ours.imgs, me, mp)
        b = base.loss(0)
    return abs(float(a) / float(b) - 1)


def run(*, steps: int, warmup: int, batch: int, threads: int, compile_: bool) -> dict:
    torch.set_num_threads(threads)
    cfg = bench_config(batch=batch, compile_=compile_)
    ours = build_harness(cfg, "ijepa", device=torch.device("cpu"), n_masks=warmup + steps)
    base = OfficialStyleStep(ours)
    diff = check_same_math(ours, base)
    if diff > 1e-4:
        raise RuntimeError(f"the two steps disagree: losses differ by {diff:.2e} (relative)")
    load0 = os.getloadavg()
    for i in range(warmup):
        base.step(i)
        ours.step(i)
    t_base, t_ours = [], []
    for i in range(warmup, warmup + steps):
        for fn, out in ((base.step, t_base), (lambda j: float(ours.step(j)), t_ours)):
            t0 = time.perf_counter()
            fn(i)
            out.append(time.perf_counter() - t0)
    load1 = os.getloadavg()
    gflops = count_flops(lambda: ours.step(0)) / batch / 1e9
    coll = collator_rate(cfg, "ijepa", batches=10)
    ours_ips, base_ips = batch / statistics.median(t_ours), batch / statistics.median(t_base)
    return {
        "kind": "bench.official_step", "encoder": "ijepa-vit_tiny-224-vs-official", "method": "ijepa",
        "arch": "vit_tiny", "img_size": 224, "patch_size": 16, "batch_size": batch, "pred_depth": 6, "pred_emb_dim": 192,
        "dtype": "float32", "threads": threads, "compile": compile_, "steps": steps, "warmup": warmup,
        "img_per_s": ours_ips, "official_img_per_s": base_ips, "speedup": ours_ips / base_ips,
        "ours": spread(t_ours), "official": spread(t_base), "ours_step_times_s": t_ours, "official_step_times_s": t_base,
        "loss_rel_diff": diff, "gflops_per_image": gflops, "collator_batches_per_s": coll,
        "ours_steps_per_s": 1 / statistics.median(t_ours), "loadavg_before": load0, "loadavg_after": load1,
        "cpu_count": os.cpu_count(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    ap.add_argument("--compile", action="store_true", help="torch.compile our encoder and predictor")
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    rec = run(steps=a.steps, warmup=a.warmup, batch=a.batch, threads=a.threads, compile_=a.compile)
    print(f"official-style: {rec['official_img_per_s']:.2f} img/s   ours: {rec['img_per_s']:.2f} img/s   "
          f"speedup {rec['speedup']:.2f}x   ({rec['gflops_per_image']:.2f} GFLOPs/image, {a.threads} threads, "
          f"load {rec['loadavg_before'][0]:.1f} -> {rec['loadavg_after'][0]:.1f} on {rec['cpu_count']} CPUs)")
    print(f"mask collator: {rec['collator_batches_per_s']:.1f} batches/s vs {rec['ours_steps_per_s']:.2f} steps/s")
    if not a.no_record:
        print(write_record(rec))
    print(json.dumps({k: rec[k] for k in ("img_per_s", "official_img_per_s", "speedup")}))


if __name__ == "__main__":
    main()
