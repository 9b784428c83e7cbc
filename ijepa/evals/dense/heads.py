"""Dense heads over `DenseBackbone` maps: every head maps (maps, out size) -> [B, K, H, W].

- `LinearHead`: DINOv2's linear protocols (BatchNorm + 1x1 conv on concatenated taps, an
  optional x`upsample`, an optional global token: the mean of the patch tokens, our
  stand-in for the [cls] token DINOv2 concatenates). DINOv2 upsamples the features before
  the 1x1 conv; we upsample its logits (identical maps for a linear map and bilinear
  upsampling; only BatchNorm's batch statistics differ), 16x cheaper at x4.
- `UperNetHead`: BEiT/MAE's neck (`MultiLevelPyramid`) + segmentation_models_pytorch's
  `UPerNetDecoder` (PSP + FPN + fusion). smp expects 6 maps ([1, 1/2, 1/4, ..., 1/32]) and
  skips the first two, so two placeholders stand in for the levels a ViT does not have.
- `DPTHead`: DPT reassemble (the same 4-level neck) + RefineNet fusion, written here because
  smp's `DPTDecoder` reassembles with integer strides p/4 ... p/32 (wrong for patch 14, our
  ViT-H/14) and fuses by fixed x2 upsampling (input sizes must be multiples of 32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ijepa.evals.dense.backbone import MultiLevelPyramid
from ijepa.extras import missing_extra


def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x if tuple(x.shape[-2:]) == tuple(size) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class LinearHead(nn.Module):
    """BN + 1x1 conv on the concatenation of `num_maps` taps (+ the mean token)."""

    def __init__(self, embed_dim: int, out: int, *, num_maps: int = 1, upsample: int = 1, mean_token: bool = False) -> None:
        super().__init__()
        self.num_maps, self.scale, self.mean_token = num_maps, upsample, mean_token
        cin = embed_dim * num_maps * (2 if mean_token else 1)
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, out, 1)
        nn.init.normal_(self.conv.weight, std=0.01)
        nn.init.zeros_(self.conv.bias)

    def forward(self, maps: list[torch.Tensor], size: tuple[int, int] | None) -> torch.Tensor:
        """Logits at `size` (None: at the patch grid x upsample)."""
        maps = maps[-self.num_maps:]
        if self.mean_token:
            maps = [t for m in maps for t in (m, m.mean(dim=(2, 3), keepdim=True).expand_as(m))]
        x = self.conv(self.bn(torch.cat(maps, dim=1)))
        if self.scale > 1:  # after the 1x1 conv: the same logits (both linear), 16x cheaper
            x = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return x if size is None else upsample(x, size)


class UperNetHead(nn.Module):
    """4 taps -> MultiLevelPyramid -> smp UPerNetDecoder -> dropout + 1x1 classifier."""

    def __init__(self, embed_dim: int, out: int, *, channels: int = 512) -> None:
        super().__init__()
        self.neck = MultiLevelPyramid(embed_dim)
        try:
            from segmentation_models_pytorch.decoders.upernet.decoder import UPerNetDecoder
        except ImportError:
            raise missing_extra("segmentation-models-pytorch", "the UperNet head") from None
        self.decoder = UPerNetDecoder([0, 0] + [embed_dim] * 4, encoder_depth=5, decoder_channels=channels)
        self.cls = nn.Sequential(nn.Dropout2d(0.1), nn.Conv2d(channels, out, 1))

    def forward(self, maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        levels = list(self.neck(maps).values())
        return upsample(self.cls(self.decoder([None, None, *levels])), size)


class ResidualConvUnit(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DPTHead(nn.Module):
    """DPT: 4 taps reassembled at strides p/4, p/2, p, 2p (`features` channels), fused
    coarse-to-fine by residual conv units, then conv -> upsample to the image -> conv."""

    def __init__(self, embed_dim: int, out: int, *, features: int = 256) -> None:
        super().__init__()
        self.neck = MultiLevelPyramid(embed_dim, out_channels=features)
        self.rcu_lateral = nn.ModuleList(ResidualConvUnit(features) for _ in range(4))
        self.rcu_fused = nn.ModuleList(ResidualConvUnit(features) for _ in range(4))
        self.head1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.head2 = nn.Sequential(nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, out, 1))

    def forward(self, maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        levels = list(self.neck(maps).values())[::-1]  # coarsest first
        fused = None
        for lvl, lat, out in zip(levels, self.rcu_lateral, self.rcu_fused, strict=True):
            x = lat(lvl)
            if fused is not None:
                x = x + upsample(fused, x.shape[-2:])
            fused = out(x)
        return self.head2(upsample(self.head1(fused), size))


class DenseModel(nn.Module):
    """backbone + head: images [B, C, H, W] -> head output at the image size."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images), images.shape[-2:])
