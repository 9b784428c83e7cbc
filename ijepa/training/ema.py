"""Target-encoder EMA with one fused `_foreach` call instead of a Python loop per tensor."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online (trainable params only)."""
    pairs = [(t, o) for t, o in zip(target.parameters(), online.parameters(), strict=True) if o.requires_grad]
    torch._foreach_lerp_([t for t, _ in pairs], [o for _, o in pairs], 1.0 - momentum)
