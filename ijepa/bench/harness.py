"""The training step of `ijepa pretrain`, set up on synthetic images for benchmarking.

Model, optimizer, autocast and step function are the Trainer's own (`build_method`,
`build_optimizer`, `optimizer_step`); only the data differs: one random image batch, and
masks drawn by the method's real collator before any timing starts (as loader workers do).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ijepa.devices import bf16_autocast, varlen_attention
from ijepa.training.compiled import bucket_masks, compile_modules
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

        `eager` runs the modules uncompiled (same weights): what a dispatch-mode probe
        (FLOP counter) must see, op by op. Such a probe's global module hooks make each
        `torch.compile` wrapper warn that they fire twice; they count nothing, so that warning
        is silenced here.
        """
        me, mp = self.masks[i % len(self.masks)]
        o = self.cfg.optimization
        with contextlib.ExitStack() as stack:
            if eager:
                stack.enter_context(torch.compiler.set_stance("force_eager"))
                stack.enter_context(warnings.catch_warnings())
                warnings.filterwarnings("ignore", message="Using `torch.compile\\(module\\)` when there are global hooks")
            loss, _ = optimizer_step(
                self.model, self.modules, self.opt, [(self.imgs, me, mp)],
                lr=o.lr, wd=o.weight_decay, momentum=o.ema[0], autocast=self.autocast,
            )
        return loss


def draw_masks(cfg: Config, method: str, n: int, device: torch.device, *, buckets: tuple[int, int] | None = None) -> list[Masks]:
    """n mask sets from the method's collator, moved to `device` (lengths cut to `buckets`, see `bucket_masks`)."""
    coll = build_collator(cfg, method)
    out = []
    for _ in range(n):
        _, me, mp = coll([(0, 0)] * cfg.data.batch_size)
        if buckets:
            me, mp = bucket_masks(me, mp, buckets)
        out.append(([m.to(device) for m in me], [m.to(device) for m in mp]))
    return out


def build_harness(
    cfg: Config, method: str, *, device: torch.device, n_masks: int = 1, seed: int = 0, compile_backend: str = "inductor",
    compile_form: str = "whole", buckets: tuple[int, int] | None = None,
) -> StepHarness:
    """`device` may be "meta" to count FLOPs of models too large to run here.

    With `meta.compile`: `compile_form` is one of `ijepa.training.compiled.FORMS` (the
    Trainer's is "whole"); `compile_backend` the Trainer's inductor, or "eager" (dynamo only)
    and "aot_eager" (+ AOTAutograd) for dry runs on CPUs where inductor's C++ build takes
    minutes. `buckets` cuts the masks' lengths, compiled or not (`bucket_masks`).
    """
    torch.manual_seed(seed)
    varlen_attention(device, method)
    with device:
        model = build_method(cfg, method)
    modules = dict(model.trainable())
    if cfg.meta.compile:
        modules = compile_modules(modules, compile_form, backend=compile_backend)
    opt = build_optimizer(model.trainable(), fused=device.type in ("cpu", "cuda"))
    autocast, bf16 = bf16_autocast(device, use_bfloat16=cfg.meta.use_bfloat16, cpu_bfloat16=cfg.meta.cpu_bfloat16)
    c, s = cfg.meta.in_chans, cfg.data.crop_size
    imgs = torch.randn(cfg.data.batch_size, c, s, s, device=device)
    masks = draw_masks(cfg, method, n_masks, device, buckets=buckets)
    return StepHarness(cfg, method, device, model, modules, opt, autocast, bf16, imgs, masks)
