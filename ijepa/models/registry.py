"""Encoder sizes by name, as in the official code (width, depth, heads, mlp ratio)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ijepa.models.predictor import VisionTransformerPredictor
from ijepa.models.vit import VisionTransformer


@dataclass(frozen=True)
class Arch:
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0


ARCHS: dict[str, Arch] = {
    "vit_tiny": Arch(192, 12, 3),
    "vit_small": Arch(384, 12, 6),
    "vit_base": Arch(768, 12, 12),
    "vit_large": Arch(1024, 24, 16),
    "vit_huge": Arch(1280, 32, 16),
    "vit_giant": Arch(1408, 40, 16, 48 / 11),
}


def create_encoder(
    name: str,
    *,
    img_size: int = 224,
    patch_size: int = 16,
    in_chans: int = 3,
    depth: int | None = None,
    drop_path_rate: float = 0.0,
    init: str = "official",
    pos_embed: str = "sincos",
    patch_embed_std: float = 0.0,
) -> VisionTransformer:
    """Build a named encoder; `depth` overrides the named depth (small-scale recipes).

    `init` and `pos_embed`: see `ijepa.models.vit` ("official" init undoes the depth rescale,
    as official training does; "rescaled" keeps it). `patch_embed_std` (0: the init's own 0.02)
    redraws the patch projection, as a recipe's `meta.patch_embed_std` asks."""
    if name not in ARCHS:
        raise ValueError(f"unknown architecture {name!r}; expected one of {', '.join(ARCHS)}")
    a = ARCHS[name]
    enc = VisionTransformer(
        img_size=img_size,
        patch_size=patch_size,
        in_chans=in_chans,
        embed_dim=a.embed_dim,
        depth=depth or a.depth,
        num_heads=a.num_heads,
        mlp_ratio=a.mlp_ratio,
        drop_path_rate=drop_path_rate,
        init=init,
        pos_embed=pos_embed,
    )
    if patch_embed_std:
        nn.init.trunc_normal_(enc.patch_embed.proj.weight, std=patch_embed_std)
    return enc


PREDICTOR_MLP_RATIO = 4.0  # the official `vit_predictor`, whatever the encoder's (ViT-G: 48/11)


def create_predictor(
    encoder: VisionTransformer, *, embed_dim: int = 384, depth: int = 6, num_heads: int | None = None,
    init: str = "official",
) -> VisionTransformerPredictor:
    """Predictor matched to an encoder's grid and width; heads default to the encoder's."""
    return VisionTransformerPredictor(
        num_patches=encoder.grid,
        embed_dim=encoder.embed_dim,
        predictor_embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads or encoder.num_heads,
        mlp_ratio=PREDICTOR_MLP_RATIO,
        init=init,
    )
