"""Our ViT + pyramid as an OpenMMLab backbone, and the registry hooks that expose it.

`IJepaPyramid` is plain PyTorch (it builds on `ijepa.evals.dense.backbone`), so it is tested
without mm*; `register()` adds it, a channel LayerNorm (`LN2d`, ViTDet's neck/head norm) and
`IJepaLayerDecayOptimWrapperConstructor` (our layer-wise lr decay) to whichever of
mmengine / mmdet / mmseg import.
"""

from __future__ import annotations

import importlib

import torch
from torch import nn

from ijepa.evals.core.encoders import EncoderSpec, build_encoder
from ijepa.evals.core.train import head_param_groups
from ijepa.evals.dense.backbone import (
    DenseBackbone,
    LayerNorm2d,
    MultiLevelPyramid,
    PyramidBackbone,
    SimpleFeaturePyramid,
)


class IJepaPyramid(nn.Module):
    """Images -> tuple of pyramid maps, finest first (what mmdet/mmseg heads take).

    `pyramid="simple"`: ViTDet (last block, scales 4, 2, 1, 0.5, `out_channels` wide,
    `top_block` adds stride 4p for 5-level RPN anchors). `pyramid="multilevel"`: BEiT/MAE
    UperNet neck over `taps` (`out_channels=0` keeps the encoder width).
    """

    def __init__(
        self, *, encoder: str | None = None, random_init: str | None = None, which: str = "target_encoder",
        img_size: int = 1024, patch_size: int = 16, in_chans: int = 3, depth: int = 0,
        pyramid: str = "simple", out_channels: int = 256, top_block: bool = True,
        taps: list[int] | None = None, mode: str = "finetune", init_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        if pyramid not in ("simple", "multilevel"):
            raise ValueError(f"IJepaPyramid pyramid must be 'simple' or 'multilevel', got {pyramid!r}")
        spec = EncoderSpec(encoder=encoder or None, random_init=random_init or None, which=which, img_size=img_size,
                           patch_size=patch_size, in_chans=in_chans, depth=depth)
        enc, self.encoder_id, _ = build_encoder(spec)
        if pyramid == "simple":
            dense = DenseBackbone(enc, taps=[enc.depth - 1] if taps is None else taps, mode=mode)
            neck = SimpleFeaturePyramid(enc.embed_dim, out_channels=out_channels, top_block=top_block)
        else:
            dense = DenseBackbone(enc, taps=taps, mode=mode)
            neck = MultiLevelPyramid(enc.embed_dim, out_channels=out_channels or None, top_block=top_block)
        self.body = PyramidBackbone(dense, neck)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.body(x).values())

    def init_weights(self) -> None:
        """Weights come from the checkpoint (or the seeded random init) at construction."""


def layer_decay_param_groups(model: nn.Module, lr: float, *, layer_decay: float, weight_decay: float) -> list[dict]:
    """Encoder groups of `model.backbone` (an IJepaPyramid) with layer-wise lr decay, then every
    other trainable parameter at `lr` (no weight decay on 1-D params)."""
    dense = model.backbone.body.backbone
    rest = nn.ModuleList([model.backbone.body.pyramid, *(m for n, m in model.named_children() if n != "backbone")])
    return dense.param_groups(lr, layer_decay=layer_decay, weight_decay=weight_decay) + head_param_groups(
        rest, lr, weight_decay=weight_decay
    )


def _constructor_class() -> type:
    from mmengine.optim import DefaultOptimWrapperConstructor
    from mmengine.registry import OPTIM_WRAPPERS, OPTIMIZERS

    class IJepaLayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
        """`paramwise_cfg=dict(decay_rate=0.7)`: our layer-wise lr decay for IJepaPyramid."""

        def __call__(self, model: nn.Module):
            model = getattr(model, "module", model)
            cfg = self.optimizer_cfg.copy()
            cfg["params"] = layer_decay_param_groups(
                model, cfg["lr"], layer_decay=(self.paramwise_cfg or {}).get("decay_rate", 1.0),
                weight_decay=cfg.get("weight_decay", 0.0),
            )
            wrapper = self.optim_wrapper_cfg.copy()
            wrapper.setdefault("type", "OptimWrapper")
            return OPTIM_WRAPPERS.build(wrapper, default_args=dict(optimizer=OPTIMIZERS.build(cfg)))

    return IJepaLayerDecayOptimWrapperConstructor


def register() -> list[str]:
    """Register in every importable OpenMMLab registry; return the packages registered in."""
    try:
        from mmengine.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
    except ImportError:
        return []
    OPTIM_WRAPPER_CONSTRUCTORS.register_module("IJepaLayerDecayOptimWrapperConstructor", module=_constructor_class(), force=True)
    if MODELS.get("LN2d") is None:
        MODELS.register_module("LN2d", module=LayerNorm2d)
    done = ["mmengine"]
    for pkg in ("mmdet", "mmseg"):
        try:
            registry = importlib.import_module(f"{pkg}.registry")
        except ImportError:
            continue
        registry.MODELS.register_module("IJepaPyramid", module=IJepaPyramid, force=True)
        done.append(pkg)
    return done
