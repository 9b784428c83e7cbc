"""The training step of `ijepa pretrain`, set up on synthetic images for benchmarking.

Model, optimizer, autocast and step function are the Trainer's own (`build_method`,
`build_optimizer`, `optimizer_step`); only the data differs: one random image batch, and
masks drawn by the method's real collator before any timing starts (as loader workers do).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ijepa.devices import bf16_autocast, varlen_attention
from ijepa.training.config import Config
from ijepa.training.data import build_collator
from ijepa.training.loop import build_method, build_optimizer, optimizer_step

Masks = tuple[list[torch.Tensor], list[torch.Tensor]]


@dataclass
class StepHarness:
    cfg: Config
    method: str
    device: torch.device
    model: nn.Module
    modules: dict[str, nn.Module]
    opt: torch.optim.Optimizer
    autocast: torch.autocast
    bf16: bool
    imgs: torch.Tensor
    masks: list[Masks]

    @property
    def batch_size(self) -> int:
        return len(self.imgs)

    def step(self, i: int, *, eager: bool = False) -> torch.Tensor:
        """One optimizer step (forward, backward, AdamW, EMA) on mask set i (cycled).

        `eager` runs the uncompiled modules (same weights): what a dispatch-mode probe
        (FLOP counter, attention-kernel census) must see, op by op.
        """
        me, mp = self.masks[i % len(self.masks)]
        o = self.cfg.optimization
        modules = dict(self.model.trainable()) if eager else self.modules
        loss, _ = optimizer_step(
            self.model, modules, self.opt, [(self.imgs, me, mp)],
            lr=o.lr, wd=o.weight_decay, momentum=o.ema[0], autocast=self.autocast,
        )
        return loss


def draw_masks(cfg: Config, method: str, n: int, device: torch.device) -> list[Masks]:
    """n mask sets from the method's collator, moved to `device`."""
    coll = build_collator(cfg, method)
    out = []
    for _ in range(n):
        _, me, mp = coll([(0, 0)] * cfg.data.batch_size)
        out.append(([m.to(device) for m in me], [m.to(device) for m in mp]))
    return out


def build_harness(
    cfg: Config, method: str, *, device: torch.device, n_masks: int = 1, seed: int = 0, compile_backend: str = "inductor",
) -> StepHarness:
    """`device` may be "meta" to count FLOPs of models too large to run here.

    `compile_backend` (with `meta.compile`): the Trainer's is inductor; "eager" traces with
    dynamo only, for dry runs on CPUs where inductor's C++ build takes minutes.
    """
    torch.manual_seed(seed)
    varlen_attention(device, method)
    with device:
        model = build_method(cfg, method)
    modules = dict(model.trainable())
    if cfg.meta.compile:
        modules = {k: torch.compile(m, dynamic=True, backend=compile_backend) for k, m in modules.items()}
    opt = build_optimizer(model.trainable(), fused=device.type in ("cpu", "cuda"))
    autocast, bf16 = bf16_autocast(device, use_bfloat16=cfg.meta.use_bfloat16, cpu_bfloat16=cfg.meta.cpu_bfloat16)
    c, s = cfg.meta.in_chans, cfg.data.crop_size
    imgs = torch.randn(cfg.data.batch_size, c, s, s, device=device)
    masks = draw_masks(cfg, method, n_masks, device)
    return StepHarness(cfg, method, device, model, modules, opt, autocast, bf16, imgs, masks)
