"""Gather helpers shared by the encoders, the predictor and the losses."""

from __future__ import annotations

import torch


def apply_masks(x: torch.Tensor, masks: list[torch.Tensor]) -> torch.Tensor:
    """Keep the tokens named by each mask; masks are stacked along the batch.

    x: [B, N, D]; each mask: [B, K] patch indices. Returns [B * len(masks), K, D], mask-major,
    the layout of the official `apply_masks`.
    """
    out = []
    for m in masks:
        idx = m.unsqueeze(-1).expand(-1, -1, x.size(-1))
        out.append(torch.gather(x, dim=1, index=idx))
    return torch.cat(out, dim=0)


def repeat_interleave_batch(x: torch.Tensor, batch_size: int, repeat: int) -> torch.Tensor:
    """Repeat each chunk of `batch_size` rows `repeat` times (official helper, same order)."""
    n = len(x) // batch_size
    return torch.cat(
        [torch.cat([x[i * batch_size : (i + 1) * batch_size]] * repeat, dim=0) for i in range(n)],
        dim=0,
    )
