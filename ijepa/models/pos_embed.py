"""Fixed 2-D sin-cos position embeddings (MAE / I-JEPA layout, no [cls] slot)."""

from __future__ import annotations

import torch


def _sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    out = pos.reshape(-1).to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_2d(dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """Return a [grid_h * grid_w, dim] table, row-major like the patch sequence.

    Matches the official `get_2d_sincos_pos_embed` (first half of the channels encodes the
    column, second half the row), so released checkpoints see the embeddings they were
    trained with. Any grid shape works, which is what resolution changes need.
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs a width divisible by 4, got {dim}")
    gw, gh = torch.meshgrid(
        torch.arange(grid_w, dtype=torch.float64),
        torch.arange(grid_h, dtype=torch.float64),
        indexing="xy",
    )
    emb = torch.cat([_sincos_1d(dim // 2, gw), _sincos_1d(dim // 2, gh)], dim=1)
    return emb.float()
