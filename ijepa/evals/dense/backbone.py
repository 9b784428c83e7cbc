"""Our [cls]-free ViT as the backbone of dense protocols: taps -> maps -> pyramids.

API (shared by segmentation, depth, counting and detection):

- `DenseBackbone(encoder, *, taps=None, mode="frozen" | "finetune", norm=True)`:
  `forward(images [B, C, H, W])` -> list of `[B, D, H / p, W / p]` maps, one per tap, in the
  order of `taps` (a block may be tapped twice: shallow encoders still feed 4-level heads).
  H and W may be any multiple of the patch size: the encoder's `prepare_tokens` recomputes
  the fixed sin-cos table for the new grid (no interpolation, no [cls] slot; the official
  code's interpolation assumes one). Frozen mode runs the encoder in eval mode under
  `no_grad` whatever `.train()` says; fine-tune mode trains it, and
  `param_groups(lr, layer_decay=..., weight_decay=...)` gives MAE/BEiT layer-wise lr decay.
- `SimpleFeaturePyramid(embed_dim, ...)` (ViTDet) and `MultiLevelPyramid(embed_dim, ...)`
  (BEiT/MAE UperNet): list of maps -> `OrderedDict` {"0": stride p/4, "1": p/2, "2": p,
  "3": 2p [, "pool": 4p]}, with `out_channels` (what torchvision's detection heads read).
- `PyramidBackbone(backbone, pyramid)`: images -> that OrderedDict, `out_channels` set;
  drop-in `backbone=` for torchvision's `MaskRCNN`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import nn

from ijepa.evals.core.train import ENCODER_GROUPS, layer_decay_groups
from ijepa.models.vit import VisionTransformer

MODES = ("frozen", "finetune")


def default_taps(depth: int) -> list[int]:
    """BEiT/MAE tap rule: blocks at 1/3, 1/2, 2/3 and all of the depth ([3, 5, 7, 11] for 12,
    [7, 11, 15, 23] for 24); the last block is always included; shallow encoders repeat."""
    return [max(0, i) for i in (depth // 3 - 1, depth // 2 - 1, 2 * depth // 3 - 1, depth - 1)]


class DenseBackbone(nn.Module):
    """Encoder -> per-tap spatial maps, frozen or fine-tuned."""

    def __init__(
        self,
        encoder: VisionTransformer,
        *,
        taps: list[int] | None = None,
        mode: str = "frozen",
        norm: bool = True,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"backbone mode must be one of {MODES}, got {mode!r}")
        depth = encoder.depth
        taps = default_taps(depth) if taps is None else [t % depth for t in taps]
        if not taps or any(not 0 <= t < depth for t in taps):
            raise ValueError(f"taps must name blocks of a {depth}-block encoder, got {taps}")
        self.encoder, self.taps, self.mode, self.norm = encoder, taps, mode, norm
        self.embed_dim, self.patch_size = encoder.embed_dim, encoder.patch_size
        for name, p in encoder.named_parameters():
            # pos_embed is a fixed sin-cos table in both modes.
            p.requires_grad_(mode == "finetune" and name != "pos_embed")
        self.train(False)

    def train(self, mode: bool = True) -> DenseBackbone:
        super().train(mode)
        self.encoder.train(mode and self.mode == "finetune")
        return self

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """[B, C, H, W] -> [[B, D, H/p, W/p] per tap]."""
        p = self.patch_size
        H, W = images.shape[-2:]
        if H % p or W % p:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {p}")
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.mode == "finetune"):
            return self._maps(images, H // p, W // p)

    def _maps(self, images: torch.Tensor, h: int, w: int) -> list[torch.Tensor]:
        x = self.encoder.prepare_tokens(images)
        by_block: dict[int, torch.Tensor] = {}
        last = max(self.taps)
        for i, blk in enumerate(self.encoder.blocks[: last + 1]):
            x = blk(x)
            if i in self.taps:
                by_block[i] = self.encoder.norm(x) if self.norm else x
        B, _, D = x.shape
        return [by_block[t].transpose(1, 2).reshape(B, D, h, w) for t in self.taps]

    def group_matcher(self, coarse: bool = False) -> dict:
        return ENCODER_GROUPS

    def param_groups(self, lr: float, *, layer_decay: float = 1.0, weight_decay: float = 0.05) -> list[dict]:
        """MAE/BEiT layer-wise lr decay (timm's): patch embed = layer 0, block i = layer i + 1,
        final norm = depth + 1 (scale 1); lr * layer_decay ** (depth + 1 - layer). Biases and
        1-D params get no weight decay. Each group carries `lr_scale`, so a schedule can set
        `group["lr"] = lr_t * group["lr_scale"]`. Empty in frozen mode."""
        if self.mode == "frozen":
            return []
        groups = layer_decay_groups(self, weight_decay=weight_decay, layer_decay=layer_decay)
        return [{**g, "lr": lr * g["lr_scale"]} for g in groups]


def _out_convs(cin: int, cout: int) -> nn.Sequential:
    """ViTDet lateral + output convs: 1x1 -> LN -> 3x3 -> LN (no biases, as detectron2)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 1, bias=False), LayerNorm2d(cout),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), LayerNorm2d(cout),
    )


def _named(maps: list[torch.Tensor], top_block: bool) -> OrderedDict[str, torch.Tensor]:
    out = OrderedDict((str(i), m) for i, m in enumerate(maps))
    if top_block:  # torchvision's LastLevelMaxPool: the extra level its RPN anchors expect
        out["pool"] = F.max_pool2d(maps[-1], kernel_size=1, stride=2)
    return out


class SimpleFeaturePyramid(nn.Module):
    """ViTDet: from the LAST tap only, scales 4, 2, 1, 0.5 (deconvs / max-pool), each through
    1x1 + 3x3 convs with LayerNorm to `out_channels` (256). `top_block` adds the "pool" level
    (stride 4p) that torchvision's 5-size anchor generator expects."""

    def __init__(self, embed_dim: int, *, out_channels: int = 256, top_block: bool = False) -> None:
        super().__init__()
        d = embed_dim
        self.out_channels, self.top_block = out_channels, top_block
        self.scales = nn.ModuleList([
            nn.Sequential(
                nn.ConvTranspose2d(d, d // 2, 2, stride=2), LayerNorm2d(d // 2), nn.GELU(),
                nn.ConvTranspose2d(d // 2, d // 4, 2, stride=2), _out_convs(d // 4, out_channels),
            ),
            nn.Sequential(nn.ConvTranspose2d(d, d // 2, 2, stride=2), _out_convs(d // 2, out_channels)),
            _out_convs(d, out_channels),
            nn.Sequential(nn.MaxPool2d(2, 2), _out_convs(d, out_channels)),
        ])

    def forward(self, maps: list[torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        return _named([s(maps[-1]) for s in self.scales], self.top_block)


class MultiLevelPyramid(nn.Module):
    """BEiT/MAE UperNet neck: 4 taps -> x4 (deconv, BN, GELU, deconv), x2 (deconv), x1,
    /2 (max-pool), each at the encoder width as in BEiT; `out_channels` adds a 1x1 conv +
    LayerNorm to a common width (e.g. 256 for detection)."""

    def __init__(self, embed_dim: int, *, out_channels: int | None = None, top_block: bool = False) -> None:
        super().__init__()
        d = embed_dim
        self.out_channels, self.top_block = out_channels or d, top_block
        self.scales = nn.ModuleList([
            nn.Sequential(nn.ConvTranspose2d(d, d, 2, stride=2), nn.BatchNorm2d(d), nn.GELU(), nn.ConvTranspose2d(d, d, 2, stride=2)),
            nn.ConvTranspose2d(d, d, 2, stride=2),
            nn.Identity(),
            nn.MaxPool2d(2, 2),
        ])
        self.proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(d, out_channels, 1, bias=False), LayerNorm2d(out_channels)) if out_channels else nn.Identity()
            for _ in range(4)
        )

    def forward(self, maps: list[torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        if len(maps) != 4:
            raise ValueError(f"MultiLevelPyramid needs 4 tapped maps, got {len(maps)}")
        return _named([p(s(m)) for s, p, m in zip(self.scales, self.proj, maps, strict=True)], self.top_block)


class PyramidBackbone(nn.Module):
    """images -> OrderedDict of pyramid maps, with `out_channels` (torchvision detection)."""

    def __init__(self, backbone: DenseBackbone, pyramid: SimpleFeaturePyramid | MultiLevelPyramid) -> None:
        super().__init__()
        self.backbone, self.pyramid = backbone, pyramid
        self.out_channels = pyramid.out_channels

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.pyramid(self.backbone(images))
