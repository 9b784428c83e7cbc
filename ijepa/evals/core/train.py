"""The one supervised training loop: segmentation, depth, counting, detection and low-shot
fine-tuning supply only a loss (and their batches).

Iteration-based (dense recipes count iterations; fine-tuning converts epochs): AdamW, linear
warm-up then cosine to `min_lr`, per-group `lr_scale` (layer-wise decay from timm's
`param_groups_layer_decay`), a rich progress bar, and an eval callback every `eval_every`
iterations and at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from rich.console import Console
from torch import nn

from ijepa.evals.core.config import DenseTrainConfig
from ijepa.progress import progress
from ijepa.schedule import peak_held, warmup_cosine

Batch = dict[str, Any]


def lr_at(cfg: DenseTrainConfig, it: int) -> float:
    """Linear warm-up from 0, then cosine from cfg.lr to cfg.min_lr at max_iters (a factor
    first: each param group scales the lr by its own `lr_scale`)."""
    factor = warmup_cosine(peak_held(it, cfg.warmup_iters), total=cfg.max_iters, warmup=cfg.warmup_iters)
    if it < cfg.warmup_iters:
        return cfg.lr * factor
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * factor


# timm group matcher of an encoder held as `.encoder` (fine-tuning classifier, dense backbone):
# patch embedding and position table = layer 0, block i = layer i + 1, the final norm and any
# head = the top layer (lr scale 1): MAE/BEiT layer-wise decay.
ENCODER_GROUPS = {"stem": r"^encoder\.(?:pos_embed|patch_embed)", "blocks": r"^encoder\.blocks\.(\d+)", "top": r"^encoder\.norm|^head"}


def layer_decay_groups(model: nn.Module, *, weight_decay: float, layer_decay: float) -> list[dict]:
    """timm's `param_groups_layer_decay` (no decay on 1-D params; each group carries
    `lr_scale`), for a module that defines `group_matcher` (e.g. `ENCODER_GROUPS`)."""
    from timm.optim import param_groups_layer_decay

    return param_groups_layer_decay(model, weight_decay=weight_decay, layer_decay=layer_decay)


def head_param_groups(module: nn.Module, lr: float, *, weight_decay: float) -> list[dict]:
    """Trainable params of a head, split so biases and norms (1-D) get no weight decay."""
    params = [p for p in module.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [
        {"params": ps, "lr": lr, "lr_scale": 1.0, "weight_decay": wd, "name": f"head.{n}"}
        for ps, wd, n in ((decay, weight_decay, "decay"), (no_decay, 0.0, "no_decay")) if ps
    ]


def to_device(batch: Batch, device: torch.device) -> Batch:
    """Tensors of a dict batch to `device`; any other batch is left to the loss function."""
    if not isinstance(batch, dict):
        return batch
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _forever(loader: Iterable[Batch]) -> Iterator[Batch]:
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the training set is empty: no batch to train on")


def train_dense(
    model: nn.Module,
    loader: Iterable[Batch],
    loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
    *,
    param_groups: list[dict],
    cfg: DenseTrainConfig,
    device: torch.device,
    evaluate: Callable[[], dict[str, float]] | None = None,
    console: Console | None = None,
    desc: str = "dense",
) -> list[dict[str, float]]:
    """Train `model` for cfg.max_iters steps of `loss_fn(model, batch)`; return the history
    (one row per eval: iteration, mean loss since the last eval, lr, and the eval's metrics)."""
    opt = torch.optim.AdamW(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    params = [p for g in param_groups for p in g["params"]]
    history: list[dict[str, float]] = []
    losses: list[float] = []
    batches = _forever(loader)
    t0 = time.perf_counter()
    with progress(console, desc, enabled=cfg.progress) as bar:
        task = bar.add_task(desc, total=cfg.max_iters, rate="")
        for it in range(cfg.max_iters):
            lr = lr_at(cfg, it)
            for g in opt.param_groups:
                g["lr"] = lr * g.get("lr_scale", 1.0)
            model.train()
            loss = loss_fn(model, to_device(next(batches), device))
            if not torch.isfinite(loss):
                raise ValueError(f"{desc}: loss is {loss.item()} at iteration {it} (lower --lr?)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            losses.append(loss.item())
            bar.update(task, advance=1, rate=f"loss {losses[-1]:.4f} lr {lr:.2e}")
            last = it + 1 == cfg.max_iters
            if last or (cfg.eval_every and (it + 1) % cfg.eval_every == 0):
                row = {"iter": it + 1, "loss": sum(losses) / len(losses), "lr": lr, "elapsed_s": time.perf_counter() - t0}
                losses.clear()
                if evaluate is not None:
                    model.eval()
                    with torch.no_grad():
                        row.update(evaluate())
                history.append(row)
    return history
