"""FLOPs of one training step: counted on the real step, and in closed form.

The count uses `torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions and
attention; elementwise work such as AdamW, EMA, GELU and LayerNorm is not counted, as is
usual). The closed form counts the same matmuls from the architecture and the mask sizes;
`ijepa bench flops` reports both, so a change to the step that silently adds work shows up.

Attention backward: the fused kernels (flash / memory-efficient / CPU flash) recompute the
score matrix, 5 batched matmuls against the forward's 2; the math path (meta device, or
the official-style unfused attention) does 4.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from ijepa.results.schema import NO_SPLIT

aten = torch.ops.aten


def _cpu_sdpa(q, k, v, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(q, k, v)


def _cpu_sdpa_backward(grad_out, q, k, v, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, q, k, v)


# FlopCounterMode knows the CUDA attention kernels but not the CPU flash kernel.
CPU_ATTENTION = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward,
}


def count_flops(fn) -> int:
    """FLOPs of everything `fn()` runs, forward and backward."""
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter:
        fn()
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class Cost:
    """Forward FLOPs split by how their backward scales."""

    linear: int = 0  # matmuls and convs: backward = 2x (input grad + weight grad)
    attention: int = 0  # q k^T and attn v

    def __add__(self, o: Cost) -> Cost:
        return Cost(self.linear + o.linear, self.attention + o.attention)

    @property
    def forward(self) -> int:
        return self.linear + self.attention

    def train(self, *, fused_attention: bool) -> int:
        """Forward + backward FLOPs."""
        return 3 * self.linear + self.attention * (7 if fused_attention else 6) // 2


def linear(rows: int, fan_in: int, fan_out: int) -> Cost:
    return Cost(linear=2 * rows * fan_in * fan_out)


def blocks(seqs: int, tokens: int, dim: int, depth: int, hidden: int) -> Cost:
    """`depth` pre-norm transformer blocks on `seqs` sequences of `tokens` tokens."""
    per = linear(seqs * tokens, dim, 3 * dim) + linear(seqs * tokens, dim, dim)
    per = per + linear(seqs * tokens, dim, hidden) + linear(seqs * tokens, hidden, dim)
    per = per + Cost(attention=4 * seqs * tokens * tokens * dim)
    return Cost(per.linear * depth, per.attention * depth)


def encoder_cost(enc, batch: int, tokens: int, seqs: int | None = None) -> tuple[Cost, Cost]:
    """(patch embedding over all N patches, blocks over `tokens` kept tokens per sequence)."""
    n = enc.grid[0] * enc.grid[1]
    patch = linear(batch * n, enc.in_chans * enc.patch_size**2, enc.embed_dim)
    hidden = enc.blocks[0].mlp.fc1.out_features
    return patch, blocks(seqs or batch, tokens, enc.embed_dim, enc.depth, hidden)


def inference_flops(enc) -> int:
    """Encoder forward on one full image."""
    patch, body = encoder_cost(enc, 1, enc.grid[0] * enc.grid[1])
    return (patch + body).forward


def ijepa_step_cost(model, masks_enc: list[torch.Tensor], masks_pred: list[torch.Tensor], *, fused_attention: bool) -> dict[str, int]:
    """Target encoder forward on all patches; context encoder on its kept tokens and the
    predictor on context + target tokens (context repeated per target block), both trained."""
    enc, pred = model.encoder, model.predictor
    b, nenc, npred = len(masks_enc[0]), len(masks_enc), len(masks_pred)
    kc, kt = masks_enc[0].shape[1], masks_pred[0].shape[1]
    tp, tb = encoder_cost(model.target_encoder, b, enc.grid[0] * enc.grid[1])
    cp, cb = encoder_cost(enc, b, kc, seqs=b * nenc)
    dim, pdim, rows = enc.embed_dim, pred.predictor_embed_dim, b * nenc * npred
    hidden = pred.predictor_blocks[0].mlp.fc1.out_features if len(pred.predictor_blocks) else 0
    pc = linear(b * nenc * kc, dim, pdim) + blocks(rows, kc + kt, pdim, len(pred.predictor_blocks), hidden)
    pc = pc + linear(rows * kt, pdim, dim)
    # The patch embedding sees images that need no gradient: its backward is the weight grad only.
    parts = {
        "target_encoder": (tp + tb).forward,
        "encoder": 2 * cp.forward + cb.train(fused_attention=fused_attention),
        "predictor": pc.train(fused_attention=fused_attention),
    }
    return {**parts, "total": sum(parts.values())}


def mae_step_cost(model, masks_enc: list[torch.Tensor], masks_pred: list[torch.Tensor], *, fused_attention: bool) -> dict[str, int]:
    """Encoder on the visible tokens, decoder on all N (mask tokens included), both trained."""
    enc, dec = model.encoder, model.decoder
    (keep,), (masked,) = masks_enc, masks_pred
    b, k, m = len(keep), keep.shape[1], masked.shape[1]
    ep, eb = encoder_cost(enc, b, k)
    ddim, n = dec.decoder_embed.out_features, enc.grid[0] * enc.grid[1]
    hidden = dec.decoder_blocks[0].mlp.fc1.out_features if len(dec.decoder_blocks) else 0
    dc = linear(b * k, enc.embed_dim, ddim) + blocks(b, n, ddim, len(dec.decoder_blocks), hidden)
    dc = dc + linear(b * m, ddim, dec.decoder_pred.out_features)
    parts = {"encoder": 2 * ep.forward + eb.train(fused_attention=fused_attention), "decoder": dc.train(fused_attention=fused_attention)}
    return {**parts, "total": sum(parts.values())}


STEP_COSTS = {"ijepa": ijepa_step_cost, "mae": mae_step_cost}


def step_flops(method: str, model, masks: tuple[list[torch.Tensor], list[torch.Tensor]], *, fused_attention: bool) -> dict[str, int]:
    """Closed-form FLOPs of one training step of `method` with these masks, by module."""
    return STEP_COSTS[method](model, *masks, fused_attention=fused_attention)


def measure_flops(cfg, *, method: str, device: torch.device) -> dict:
    """FLOPs per step and per image, counted and closed-form, plus encoder inference FLOPs.

    `device` "meta" counts models too big to run here; there attention takes the math path.
    """
    from ijepa.bench.harness import build_harness

    h = build_harness(cfg, method, device=device)
    fused = device.type != "meta"
    counted = count_flops(lambda: h.step(0))
    closed = step_flops(method, h.model, h.masks[0], fused_attention=fused)
    enc = h.model.eval_encoder()
    x = torch.zeros(1, enc.in_chans, cfg.data.crop_size, cfg.data.crop_size, device=device)
    with torch.no_grad():
        inf_counted = count_flops(lambda: enc(x))
    me, mp = h.masks[0]
    b = h.batch_size
    return {
        "flops_per_step": counted, "flops_per_image": counted / b,
        "flops_per_step_closed_form": closed["total"], "closed_form_rel_diff": closed["total"] / counted - 1,
        "closed_form_parts": closed, "gflops_per_image": counted / b / 1e9,
        "inference_flops_per_image": inf_counted, "inference_flops_closed_form": inference_flops(enc),
        "ctx_len": me[0].shape[1], "tgt_len": mp[0].shape[1], "attention": "fused" if fused else "math",
    }


def mean_step_flops(cfg, method: str, n_masks: int = 20) -> float:
    """Closed-form cost of one step averaged over the run's masks, after checking it against the counter."""
    from ijepa.bench.harness import build_harness

    h = build_harness(cfg, method, device=torch.device("cpu"), n_masks=n_masks)
    closed = [step_flops(method, h.model, m, fused_attention=True)["total"] for m in h.masks]
    counted = count_flops(lambda: h.step(0))
    if abs(closed[0] / counted - 1) > 0.02:
        raise RuntimeError(f"{method}: closed-form FLOPs {closed[0]:.3e} disagree with the counter's {counted:.3e}")
    return sum(closed) / len(closed)


def budget_config(cfg, steps: int, ipe: int, *, warmup_fraction: float | None = None):
    """The config with a schedule of exactly `steps` optimizer steps (cosine LR, EMA ramp and WD end there).

    Warm-up: `warmup_fraction` of the steps (a recipe's schedule shape, kept at every budget),
    else the config's own, capped at 10% of the run."""
    epochs = max(1, math.ceil(steps / ipe))
    o = cfg.optimization
    o.epochs, o.ipe_scale, o.max_steps = epochs, steps / (epochs * ipe), steps
    o.warmup = warmup_fraction * steps / ipe if warmup_fraction is not None else min(o.warmup, 0.1 * steps / ipe)
    return cfg


def pretrain_compute(run_dir: str | Path, *, n_masks: int = 20, wall_s: float | None = None) -> dict:
    """A `pretrain.compute` record for a finished run: its FLOPs and wall time.

    FLOPs = optimizer steps x the closed-form cost of a step, averaged over the masks of the
    run's first `n_masks` batches (its own collator and seed). Wall time: `wall_s` if given,
    else the log's elapsed time extrapolated to the last step (the log restarts on resume).
    """
    from ijepa.bench.harness import draw_masks
    from ijepa.models.checkpoint import read_checkpoint
    from ijepa.training.config import from_dict
    from ijepa.training.loop import build_method

    run_dir = Path(run_dir)
    ckpt = read_checkpoint(run_dir)
    cfg, method, steps = from_dict(ckpt["config"]), ckpt.get("method", "ijepa"), int(ckpt["step"])
    with torch.device("meta"):
        model = build_method(cfg, method)
    masks = draw_masks(cfg, method, n_masks, torch.device("cpu"))
    per_step = cfg.optimization.accum_steps * sum(step_flops(method, model, m, fused_attention=True)["total"] for m in masks) / n_masks
    if wall_s is None:
        with (run_dir / "log.csv").open() as f:
            last = list(csv.DictReader(f))[-1]
        wall_s = float(last["elapsed_s"]) * steps / float(last["step"])
    return {
        "kind": "pretrain.compute", "encoder": run_dir.name, "run": run_dir.name, "run_dir": str(run_dir), "method": method,
        **NO_SPLIT,
        "arch": cfg.meta.model_name, "depth": model.encoder.depth, "img_size": cfg.data.crop_size, "patch_size": cfg.mask.patch_size,
        "steps": steps, "batch_size": cfg.data.batch_size * cfg.optimization.accum_steps,
        "flops_per_step": per_step, "pretrain_flops": per_step * steps, "pretrain_wall_s": wall_s,
    }
