"""Dense backbone adapter: taps, any input size (sin-cos recomputed, no [cls] slot), frozen vs
fine-tune, layer-wise lr decay, and both pyramids' scales and channels."""

from __future__ import annotations

import pytest
import torch

from ijepa.evals.dense.backbone import (
    DenseBackbone,
    MultiLevelPyramid,
    PyramidBackbone,
    SimpleFeaturePyramid,
    default_taps,
)
from ijepa.models.pos_embed import sincos_2d
from ijepa.models.registry import create_encoder


def encoder(depth: int = 2):
    torch.manual_seed(0)
    return create_encoder("vit_tiny", img_size=64, patch_size=8, in_chans=3, depth=depth)


def test_default_taps_match_beit_and_include_last():
    assert default_taps(12) == [3, 5, 7, 11]
    assert default_taps(24) == [7, 11, 15, 23]
    assert default_taps(2)[-1] == 1 and len(default_taps(2)) == 4


def test_maps_equal_the_encoders_tokens_at_any_size():
    enc = encoder().eval()
    bb = DenseBackbone(enc, taps=[0, -1])
    x = torch.randn(2, 3, 48, 80)  # not the encoder's 64x64: a 6x10 grid
    maps = bb(x)
    assert [m.shape for m in maps] == [(2, 192, 6, 10)] * 2
    ref = enc.forward_intermediates(x, [0, 1])
    for m, r in zip(maps, ref, strict=True):
        torch.testing.assert_close(m.flatten(2).transpose(1, 2), r)
    torch.testing.assert_close(maps[-1].flatten(2).transpose(1, 2), enc(x))


def test_positions_are_recomputed_for_the_new_grid_without_a_cls_slot():
    enc = encoder()
    x = torch.randn(1, 3, 48, 80)
    tokens = enc.prepare_tokens(x)
    patches = enc.patch_embed(x)
    assert tokens.shape[1] == 6 * 10  # no extra slot
    torch.testing.assert_close(tokens - patches, sincos_2d(192, 6, 10).unsqueeze(0))


def test_non_multiple_size_is_an_error():
    with pytest.raises(ValueError, match="multiple of the patch size 8"):
        DenseBackbone(encoder())(torch.randn(1, 3, 50, 64))


def test_frozen_gives_no_grad_and_stays_in_eval_mode():
    bb = DenseBackbone(encoder()).train()
    assert not bb.encoder.training
    assert not bb(torch.randn(1, 3, 16, 16))[0].requires_grad
    assert bb.param_groups(1e-3, layer_decay=0.5) == []


def test_finetune_layer_decay_groups():
    enc = encoder(depth=2)
    bb = DenseBackbone(enc, mode="finetune").train()
    assert bb.encoder.training and bb(torch.randn(1, 3, 16, 16))[-1].requires_grad
    groups = bb.param_groups(1.0, layer_decay=0.5, weight_decay=0.05)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}  # timm's layer-decay groups
    assert lr_of[id(enc.patch_embed.proj.weight)] == 0.125  # patch embed: 0.5 ** 3
    assert lr_of[id(enc.blocks[1].attn.qkv.weight)] == 0.5  # last block
    assert lr_of[id(enc.norm.weight)] == 1.0  # final norm
    assert all(g["weight_decay"] == 0.0 for g in groups if all(p.ndim == 1 for p in g["params"]))
    assert all(g["weight_decay"] == 0.05 for g in groups if all(p.ndim > 1 for p in g["params"]))
    named = {id(p) for g in groups for p in g["params"]}
    assert id(enc.pos_embed) not in named  # fixed sin-cos
    assert len(named) == sum(1 for n, _ in enc.named_parameters() if n != "pos_embed")


@pytest.mark.parametrize("cls", [SimpleFeaturePyramid, MultiLevelPyramid])
def test_pyramid_scales_and_out_channels(cls):
    bb = DenseBackbone(encoder())
    pyr = cls(192, out_channels=32, top_block=True)
    net = PyramidBackbone(bb, pyr)
    out = net(torch.randn(2, 3, 64, 96))  # 8x12 grid
    assert list(out) == ["0", "1", "2", "3", "pool"]
    assert [tuple(v.shape[-2:]) for v in out.values()] == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    assert net.out_channels == 32 and all(v.shape[1] == 32 for v in out.values())


def test_multilevel_needs_four_maps():
    with pytest.raises(ValueError, match="4 tapped maps"):
        MultiLevelPyramid(192)([torch.randn(1, 192, 4, 4)])
