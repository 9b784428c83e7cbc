"""Speed of our I-JEPA step against an official-style step at identical math (issue 4).

The baseline is written from the description of the official trainer (REFERENCE.md,
issue 4), not from its source: unfused attention `softmax(q k^T * scale) v` in Python,
AdamW as the official code builds it (`AdamW(param_groups)`: torch's defaults, a per-tensor
loop on CPU and the foreach kernels on CUDA), an EMA that loops over parameters in Python,
the context repeated once per target block in the predictor, and `loss.item()` every step
(the official loss meter). With `--bf16` both steps run under bf16 autocast and the official
one adds its GradScaler (`init_opt`: `GradScaler() if use_bfloat16`, CUDA only), whose
`step` reads an inf flag back to the host. Ours is the Trainer's own step
(`ijepa.bench.harness`). Both get the same weights, images and masks (drawn before timing,
as loader workers do); steps alternate A/B so load from other processes hits both alike; on
CUDA each timed step starts and ends with a device synchronize, for both alike. The losses
are checked equal in fp32 before any timing.

    OMP_NUM_THREADS=2 python benchmarks/official_step.py --steps 10
    python benchmarks/official_step.py --device cuda --arch vit_huge14 --bf16 --batch 128
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ijepa.bench.flops import count_flops
from ijepa.bench.harness import StepHarness, build_harness
from ijepa.bench.throughput import (
    attention_backend,
    attention_kernels,
    collator_rate,
    device_name,
    host_syncs,
    sdpa_flags,
    spread,
)
from ijepa.masks.apply import apply_masks, repeat_interleave_batch
from ijepa.models.pos_embed import sincos_2d
from ijepa.results.io import write_record
from ijepa.results.schema import NO_SPLIT
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
        cfg, enc, device = ours.cfg, ours.model.encoder, ours.device
        grid = enc.grid[0]
        kw = dict(grid=grid, patch=enc.patch_size, chans=enc.in_chans, dim=enc.embed_dim, depth=enc.depth, heads=enc.num_heads)
        p = ours.model.predictor
        with device:
            self.encoder, self.target_encoder = Encoder(**kw), Encoder(**kw)
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
        self.opt = torch.optim.AdamW(groups)
        self.bf16 = ours.bf16
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16)
        self.scaler = torch.amp.GradScaler("cuda") if self.bf16 and device.type == "cuda" else None
        self.cfg, self.imgs, self.masks = cfg, ours.imgs, ours.masks

    def loss(self, i: int, *, autocast: bool = True) -> torch.Tensor:
        masks_enc, masks_pred = self.masks[i % len(self.masks)]
        with torch.autocast(self.imgs.device.type, dtype=torch.bfloat16, enabled=self.bf16 and autocast):
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
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            self.opt.step()
        self.opt.zero_grad()
        with torch.no_grad():
            m = o.ema[0]
            for q, k in zip(self.encoder.parameters(), self.target_encoder.parameters(), strict=True):
                k.data.mul_(m).add_((1.0 - m) * q.detach().data)
        return loss.item()


# Encoder/predictor sizes: the issue-4 CPU setting, the paper's ViT-B/16 (predictor 6 x 384)
# and the official ViT-H/14 config (12 x 384); "tiny" is for dry runs of the GPU check.
ARCHS = {
    "vit_tiny": {"model_name": "vit_tiny", "crop": 224, "patch": 16, "pred_depth": 6, "pred_emb_dim": 192},
    "vit_base16": {"model_name": "vit_base", "crop": 224, "patch": 16, "pred_depth": 6, "pred_emb_dim": 384},
    "vit_huge14": {"model_name": "vit_huge", "crop": 224, "patch": 14, "pred_depth": 12, "pred_emb_dim": 384},
    "tiny": {"model_name": "vit_tiny", "crop": 32, "patch": 8, "pred_depth": 1, "pred_emb_dim": 96, "depth": 2, "min_keep": 2},
}


def bench_config(*, batch: int, compile_: bool, arch: str = "vit_tiny", bf16: bool = False) -> Config:
    """One of `ARCHS` at `batch`; bf16 autocast on whichever device runs it, or fp32."""
    a = ARCHS[arch]
    mask = {"patch_size": a["patch"], **({"min_keep": a["min_keep"]} if "min_keep" in a else {})}
    return from_dict({
        "data": {"crop_size": a["crop"], "batch_size": batch},
        "mask": mask,
        "meta": {"model_name": a["model_name"], "depth": a.get("depth", 0), "in_chans": 3, "pred_depth": a["pred_depth"],
                 "pred_emb_dim": a["pred_emb_dim"], "cpu_bfloat16": bf16, "use_bfloat16": bf16, "compile": compile_},
    })


def check_same_math(ours: StepHarness, base: OfficialStyleStep, *, autocast: bool = False) -> float:
    """Relative difference of the two losses on the same weights, images and masks (fp32 unless `autocast`)."""
    with torch.no_grad():
        me, mp = ours.masks[0]
        with torch.autocast(ours.device.type, dtype=torch.bfloat16, enabled=ours.bf16 and autocast):
            a, _ = ours.model(ours.imgs, me, mp)
        b = base.loss(0, autocast=autocast)
    return abs(float(a) / float(b) - 1)


def timed(fn, device: torch.device) -> float:
    """Wall seconds of `fn()`; on CUDA from an idle device to the end of its work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def run(*, steps: int, warmup: int, batch: int, threads: int, compile_: bool, arch: str = "vit_tiny",
        device: torch.device | None = None, bf16: bool = False) -> dict:
    device = device or torch.device("cpu")
    torch.set_num_threads(threads)
    cfg = bench_config(batch=batch, compile_=compile_, arch=arch, bf16=bf16)
    ours = build_harness(cfg, "ijepa", device=device, n_masks=warmup + steps)
    base = OfficialStyleStep(ours)
    diff = check_same_math(ours, base)
    if diff > 1e-4:
        raise RuntimeError(f"the two steps disagree: losses differ by {diff:.2e} (relative)")
    diff_bf16 = check_same_math(ours, base, autocast=True) if ours.bf16 else None
    load0 = os.getloadavg()
    for i in range(warmup):
        base.step(i)
        ours.step(i)
    t_base, t_ours = [], []
    for i in range(warmup, warmup + steps):
        t_base.append(timed(lambda i=i: base.step(i), device))
        t_ours.append(timed(lambda i=i: float(ours.step(i)), device))
    load1 = os.getloadavg()
    syncs_ours, syncs_base = host_syncs(lambda: ours.step(0), device), host_syncs(lambda: base.step(0), device)
    kernels = attention_kernels(lambda: ours.step(0))  # ours only: the official math has no fused attention
    gflops = count_flops(lambda: ours.step(0, eager=True)) / batch / 1e9
    coll = collator_rate(cfg, "ijepa", batches=10)
    ours_ips, base_ips = batch / statistics.median(t_ours), batch / statistics.median(t_base)
    a = ARCHS[arch]
    return {
        "kind": "bench.official_step", "encoder": f"ijepa-{arch}-{a['crop']}-vs-official", "method": "ijepa", **NO_SPLIT,
        "arch": a["model_name"], "preset": arch, "depth": ours.model.encoder.depth, "img_size": a["crop"], "patch_size": a["patch"],
        "batch_size": batch, "pred_depth": a["pred_depth"], "pred_emb_dim": a["pred_emb_dim"],
        "dtype": "bfloat16" if ours.bf16 else "float32", "device": str(device), "device_name": device_name(device),
        "threads": threads, "compile": compile_, "steps": steps, "warmup": warmup, "torch": torch.__version__,
        "img_per_s": ours_ips, "official_img_per_s": base_ips, "speedup": ours_ips / base_ips,
        "ours": spread(t_ours), "official": spread(t_base), "ours_step_times_s": t_ours, "official_step_times_s": t_base,
        "loss_rel_diff": diff, "loss_rel_diff_bf16": diff_bf16, "official_grad_scaler": base.scaler is not None,
        "host_syncs_per_step_ours": syncs_ours, "host_syncs_per_step_official": syncs_base,
        "attention_kernels": kernels, "attention_backend": attention_backend(kernels), "sdpa_enabled": sdpa_flags(),
        "gflops_per_image": gflops, "collator_batches_per_s": coll,
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
    ap.add_argument("--arch", choices=sorted(ARCHS), default="vit_tiny", help="model sizes (default: the issue-4 CPU setting)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for both steps (+ the official GradScaler on CUDA)")
    ap.add_argument("--results", type=Path, default=None, help="results folder (default: results/)")
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    rec = run(steps=a.steps, warmup=a.warmup, batch=a.batch, threads=a.threads, compile_=a.compile, arch=a.arch,
              device=torch.device(a.device), bf16=a.bf16)
    print(f"{a.arch} {rec['dtype']} batch {a.batch} on {rec['device_name']}: official-style {rec['official_img_per_s']:.2f} img/s   "
          f"ours {rec['img_per_s']:.2f} img/s   speedup {rec['speedup']:.2f}x   ({rec['gflops_per_image']:.2f} GFLOPs/image, "
          f"{a.threads} threads, load {rec['loadavg_before'][0]:.1f} -> {rec['loadavg_after'][0]:.1f} on {rec['cpu_count']} CPUs)")
    print(f"mask collator: {rec['collator_batches_per_s']:.1f} batches/s vs {rec['ours_steps_per_s']:.2f} steps/s; "
          f"host syncs per step: ours {rec['host_syncs_per_step_ours']}, official {rec['host_syncs_per_step_official']}")
    if not a.no_record:
        print(write_record(rec, results_dir=a.results))
    print(json.dumps({k: rec[k] for k in ("img_per_s", "official_img_per_s", "speedup")}))


if __name__ == "__main__":
    main()
