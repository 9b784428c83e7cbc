"""I-JEPA predictor: a narrow ViT that maps context tokens to target-position embeddings.

Names follow the official `VisionTransformerPredictor` (`predictor_embed`, `mask_token`,
`predictor_pos_embed`, `predictor_blocks`, `predictor_norm`, `predictor_proj`).
"""

from __future__ import annotations

import torch
from torch import nn

from ijepa.masks.apply import apply_masks, repeat_interleave_batch
from ijepa.models.pos_embed import sincos_2d
from ijepa.models.vit import initialize, make_blocks


class VisionTransformerPredictor(nn.Module):
    def __init__(
        self,
        *,
        num_patches: int | tuple[int, int],
        embed_dim: int = 768,
        predictor_embed_dim: int = 384,
        depth: int = 6,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        init_std: float = 0.02,
        init: str = "official",
    ) -> None:
        super().__init__()
        grid = num_patches if isinstance(num_patches, tuple) else (int(num_patches**0.5),) * 2
        self.embed_dim, self.predictor_embed_dim, self.num_heads = embed_dim, predictor_embed_dim, num_heads
        self.predictor_embed = nn.Linear(embed_dim, predictor_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, predictor_embed_dim))
        self.predictor_pos_embed = nn.Parameter(
            sincos_2d(predictor_embed_dim, *grid).unsqueeze(0), requires_grad=False
        )
        self.predictor_blocks = make_blocks(predictor_embed_dim, depth, num_heads, mlp_ratio, drop_path_rate)
        self.predictor_norm = nn.LayerNorm(predictor_embed_dim, eps=1e-6)
        self.predictor_proj = nn.Linear(predictor_embed_dim, embed_dim)
        initialize(self, self.predictor_blocks, init, init_std)  # see ijepa.models.vit: "official" or "rescaled"
        nn.init.trunc_normal_(self.mask_token, std=init_std)

    def forward(
        self, x: torch.Tensor, masks_x: list[torch.Tensor], masks: list[torch.Tensor]
    ) -> torch.Tensor:
        """Predict the target tokens of every target block in one batched pass.

        x: context-encoder output [B * len(masks_x), Nc, D]. Returns
        [len(masks) * len(masks_x) * B, Nt, D]: target-block-major, then context-block, as the
        official code (targets must be gathered in the same order).
        """
        batch = len(x) // len(masks_x)
        x = self.predictor_embed(x)
        pos = self.predictor_pos_embed.expand(batch, -1, -1)
        x = x + apply_masks(pos, masks_x)
        n_ctx = x.size(1)
        queries = repeat_interleave_batch(apply_masks(pos, masks), batch, repeat=len(masks_x))
        queries = queries + self.mask_token
        x = x.repeat(len(masks), 1, 1)
        x = torch.cat([x, queries], dim=1)
        for blk in self.predictor_blocks:
            x = blk(x)
        x = self.predictor_norm(x[:, n_ctx:])
        return self.predictor_proj(x)
