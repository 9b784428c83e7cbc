"""MAE's light decoder and the pixel-target helpers (after MAE's `models_mae.py`).

The encoder is the shared `VisionTransformer`, run on the visible patches only through its
`masks` argument; mask tokens exist only here, in the decoder. Names follow MAE
(`decoder_embed`, `mask_token`, `decoder_pos_embed`, `decoder_blocks`, `decoder_norm`,
`decoder_pred`).
"""

from __future__ import annotations

import torch
from torch import nn

from ijepa.masks.apply import apply_masks
from ijepa.models.pos_embed import sincos_2d
from ijepa.models.vit import make_blocks


def patchify(imgs: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, N, p * p * C], patches row-major like the patch embedding."""
    b, c, h, w = imgs.shape
    gh, gw = h // patch_size, w // patch_size
    x = imgs.reshape(b, c, gh, patch_size, gw, patch_size)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, gh * gw, patch_size * patch_size * c)


def unpatchify(x: torch.Tensor, patch_size: int, grid: tuple[int, int], in_chans: int) -> torch.Tensor:
    """Inverse of `patchify` (for looking at reconstructions)."""
    b, (gh, gw), p = len(x), grid, patch_size
    x = x.reshape(b, gh, gw, p, p, in_chans).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, in_chans, gh * p, gw * p)


def normalized_pixels(imgs: torch.Tensor, patch_size: int, eps: float = 1e-6, *, standardise: bool = True) -> torch.Tensor:
    """MAE's `norm_pix_loss` target: each patch standardised by its own mean and variance
    (`standardise=False`: the patch's pixels as they are, MAE's other target)."""
    t = patchify(imgs, patch_size)
    if not standardise:
        return t
    mean, var = t.mean(-1, keepdim=True), t.var(-1, keepdim=True)
    return (t - mean) / (var + eps) ** 0.5


class MAEDecoder(nn.Module):
    """Visible-token features -> pixel predictions at the masked positions."""

    def __init__(
        self,
        *,
        grid: tuple[int, int],
        patch_size: int,
        in_chans: int,
        embed_dim: int,
        decoder_embed_dim: int = 512,
        depth: int = 8,
        num_heads: int | None = None,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        heads = num_heads or max(1, decoder_embed_dim // 32)  # MAE: 512 wide, 16 heads
        if decoder_embed_dim % heads:
            raise ValueError(f"decoder width {decoder_embed_dim} is not divisible by {heads} heads")
        self.grid, self.patch_size, self.in_chans = grid, patch_size, in_chans
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(sincos_2d(decoder_embed_dim, *grid).unsqueeze(0), requires_grad=False)
        self.decoder_blocks = make_blocks(decoder_embed_dim, depth, heads, mlp_ratio, 0.0)
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size * patch_size * in_chans)
        self.apply(_mae_init)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """x: encoder output [B, K, D] at patches `keep` [B, K] -> predictions [B, M, p*p*C]
        for the patches `masked` [B, M]. The blocks see all N tokens (mask tokens elsewhere)."""
        x = self.decoder_embed(x)
        b, n, d = len(x), self.grid[0] * self.grid[1], x.size(-1)
        full = self.mask_token.to(x.dtype).expand(b, n, d)
        x = full.scatter(1, keep.unsqueeze(-1).expand(-1, -1, d), x)
        x = x + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        x = apply_masks(self.decoder_norm(x), [masked])
        return self.decoder_pred(x)


def _mae_init(m: nn.Module) -> None:
    """MAE's init: xavier-uniform linears, zero biases, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
