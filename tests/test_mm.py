"""Optional OpenMMLab backend: the backbone runs in plain PyTorch; the registry, optimizer
constructor and config tests run only where mmengine / mmdet / mmseg import (CI: skipped)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from ijepa.evals.mm.backbone import IJepaPyramid, layer_decay_param_groups

EVALS = Path(__file__).resolve().parents[1] / "evals"
TINY = dict(random_init="vit_tiny", depth=2, patch_size=8, img_size=64, in_chans=3)


def needs(pkg: str):
    return pytest.mark.skipif(importlib.util.find_spec(pkg) is None, reason=f"{pkg} not installed (optional backend)")


def test_simple_pyramid_gives_five_levels_finest_first():
    maps = IJepaPyramid(**TINY, out_channels=16)(torch.randn(2, 3, 64, 64))
    assert [m.shape[-1] for m in maps] == [32, 16, 8, 4, 2] and all(m.shape[:2] == (2, 16) for m in maps)


def test_multilevel_pyramid_keeps_encoder_width_for_upernet():
    maps = IJepaPyramid(**TINY, pyramid="multilevel", out_channels=0, top_block=False, mode="frozen")(torch.randn(1, 3, 64, 64))
    assert [tuple(m.shape[1:]) for m in maps] == [(192, 32, 32), (192, 16, 16), (192, 8, 8), (192, 4, 4)]


def test_layer_decay_groups_cover_every_trainable_parameter_once():
    model = nn.Module()
    model.backbone, model.rpn_head = IJepaPyramid(**TINY, out_channels=16), nn.Conv2d(16, 3, 1)
    groups = layer_decay_param_groups(model, 1e-3, layer_decay=0.5, weight_decay=0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    assert min(g["lr"] for g in groups) == pytest.approx(1e-3 * 0.5**3)


@needs("mmengine")
def test_optimizer_constructor_builds_adamw_with_layer_decay():
    from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

    from ijepa.evals.mm.backbone import register

    assert "mmengine" in register()
    model = nn.Module()
    model.backbone, model.rpn_head = IJepaPyramid(**TINY, out_channels=16), nn.Conv2d(16, 3, 1)
    build = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type="IJepaLayerDecayOptimWrapperConstructor", paramwise_cfg=dict(decay_rate=0.7),
        optim_wrapper_cfg=dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-4, weight_decay=0.1))))
    opt = build(model).optimizer
    assert isinstance(opt, torch.optim.AdamW)
    assert sorted({round(g["lr"] / 1e-4, 6) for g in opt.param_groups}) == [0.343, 0.49, 0.7, 1.0]


@needs("mmdet")
def test_mmdet_builds_our_backbone_and_parses_the_config(monkeypatch):
    from mmdet.registry import MODELS
    from mmengine.config import Config

    import ijepa.evals.mm.plugin  # noqa: F401  (registers)

    maps = MODELS.build(dict(type="IJepaPyramid", **TINY, out_channels=16))(torch.randn(1, 3, 64, 64))
    assert len(maps) == 5
    monkeypatch.setenv("IJEPA_ENCODER", "runs/some_run")
    cfg = Config.fromfile(str(EVALS / "mmdet_mask-rcnn_ijepa-vitb_coco.py"))
    assert cfg.model.backbone.type == "IJepaPyramid" and cfg.train_cfg.max_iters == 184375


@needs("mmseg")
def test_mmseg_builds_our_backbone_and_parses_the_config(monkeypatch):
    from mmengine.config import Config
    from mmseg.registry import MODELS

    import ijepa.evals.mm.plugin  # noqa: F401  (registers)

    maps = MODELS.build(dict(type="IJepaPyramid", **TINY, pyramid="multilevel", out_channels=0, top_block=False))(torch.randn(1, 3, 64, 64))
    assert len(maps) == 4
    monkeypatch.setenv("IJEPA_ENCODER", "runs/some_run")
    cfg = Config.fromfile(str(EVALS / "mmseg_upernet_ijepa-vitb_ade20k.py"))
    assert cfg.model.backbone.pyramid == "multilevel" and cfg.model.decode_head.num_classes == 150
