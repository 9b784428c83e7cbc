"""Vision Transformer encoder of I-JEPA: no [cls] token, fixed 2-D sin-cos positions.

State-dict names follow timm's `VisionTransformer` and the official I-JEPA encoder
(`patch_embed.proj`, `pos_embed`, `blocks.N.*`, `norm`), so both load without renaming.

Init (`init=`, config `meta.init`), for the encoder and the predictor alike:
- "official" (default): what official *training* starts from. The official constructors
  divide each block's `attn.proj` and `mlp.fc2` by sqrt(2 * layer), but `helper.init_model`
  then re-initialises every Linear (trunc-normal 0.02, zero bias) and LayerNorm (1, 0), which
  undoes that: every Linear starts at std 0.02 whatever its depth.
- "rescaled": the official constructor's init alone, rescale kept (std 0.02 / sqrt(2 * layer)).

Position embeddings at another grid than the stored table's (`pos_embed=`): "sincos"
recomputes the fixed sin-cos table for the new grid (a freshly built model's default: its
table is that function); "resample" interpolates the stored table bicubically (timm's
`resample_abs_pos_embed`, no prefix tokens), the default of `load_encoder` and of every
eval, as timm and DINOv2 do for loaded weights.
"""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING

import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import Block
from torch import nn

from ijepa.masks.apply import apply_masks
from ijepa.models.pos_embed import sincos_2d

if TYPE_CHECKING:
    from ijepa.models.source import EncoderSource


class PatchEmbed(nn.Module):
    """Non-overlapping patches by a strided convolution (`proj`, as timm and the official code)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Official I-JEPA init: trunc-normal linears/convs, unit LayerNorms, zero biases."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.trunc_normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


INITS = ("official", "rescaled")
POS_EMBEDS = ("resample", "sincos")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(choices)}")


def initialize(module: nn.Module, blocks: nn.ModuleList, init: str, std: float) -> None:
    """Trunc-normal init of `module`; "rescaled" then shrinks the blocks' output projections."""
    check_choice("init", init, INITS)
    module.apply(partial(init_weights, std=std))
    if init == "rescaled":
        rescale_blocks(blocks)


def rescale_blocks(blocks: nn.ModuleList) -> None:
    """Divide each residual branch's output projection by sqrt(2 * layer_id) (official init)."""
    for layer_id, blk in enumerate(blocks, start=1):
        blk.attn.proj.weight.data.div_(math.sqrt(2.0 * layer_id))
        blk.mlp.fc2.weight.data.div_(math.sqrt(2.0 * layer_id))


def make_blocks(dim: int, depth: int, num_heads: int, mlp_ratio: float, drop_path: float) -> nn.ModuleList:
    dpr = torch.linspace(0, drop_path, depth, device="cpu").tolist()  # cpu: works under a meta device
    norm = partial(nn.LayerNorm, eps=1e-6)
    return nn.ModuleList(
        Block(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, drop_path=d, norm_layer=norm)
        for d in dpr
    )


class VisionTransformer(nn.Module):
    """I-JEPA context/target encoder.

    `forward(x, masks)` embeds patches, adds positions, keeps only the tokens named by
    `masks` (a list of [B, K] index tensors, stacked along the batch) and runs the blocks on
    them alone: the context encoder never pays for the tokens it does not see.
    """

    source: EncoderSource | None = None  # where `load_encoder` read it; None for one built here

    def __init__(
        self,
        *,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        init_std: float = 0.02,
        init: str = "official",
        pos_embed: str = "sincos",
    ) -> None:
        super().__init__()
        check_choice("pos_embed", pos_embed, POS_EMBEDS)
        self.pos_embed_mode = pos_embed
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.embed_dim, self.num_heads, self.mlp_ratio = embed_dim, num_heads, mlp_ratio
        self.num_features = embed_dim
        h, w = (img_size, img_size) if isinstance(img_size, int) else img_size  # (h, w): HF/timm grids
        self.grid = (h // patch_size, w // patch_size)
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.pos_embed = nn.Parameter(
            sincos_2d(embed_dim, *self.grid).unsqueeze(0), requires_grad=False
        )
        self.blocks = make_blocks(embed_dim, depth, num_heads, mlp_ratio, drop_path_rate)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        initialize(self, self.blocks, init, init_std)

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def _pos_embed(self, h: int, w: int) -> torch.Tensor:
        """The table for an h x w grid: the stored one, resampled or recomputed elsewhere."""
        if (h, w) == self.grid:
            return self.pos_embed
        check_choice("pos_embed", self.pos_embed_mode, POS_EMBEDS)
        if self.pos_embed_mode == "sincos":
            return sincos_2d(self.embed_dim, h, w).unsqueeze(0).to(self.pos_embed)
        # No [cls] slot to set aside (the official interpolation wrongly assumes one).
        return resample_abs_pos_embed(self.pos_embed, new_size=[h, w], old_size=list(self.grid), num_prefix_tokens=0)

    def prepare_tokens(self, x: torch.Tensor, masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        x = self.patch_embed(x) + self._pos_embed(h, w)
        if masks is not None:
            x = apply_masks(x, masks)
        return x

    def forward(self, x: torch.Tensor, masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        """[B, C, H, W] -> LayerNorm-ed last-block tokens [B (* len(masks)), N, D]."""
        x = self.prepare_tokens(x, masks)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward_intermediates(
        self, x: torch.Tensor, indices: int | list[int] = 4, *, norm: bool = True
    ) -> list[torch.Tensor]:
        """Tokens after the chosen blocks (last n if an int), each through the final norm."""
        take = range(self.depth - indices, self.depth) if isinstance(indices, int) else indices
        take = {i % self.depth for i in take}
        x = self.prepare_tokens(x)
        outs = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in take:
                outs.append(self.norm(x) if norm else x)
            if i >= max(take):
                break
        return outs
