"""Encoder and predictor: shapes, masked compute, timm key compatibility, every registered size."""

from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer as TimmViT

from ijepa.masks import MultiBlockMaskCollator, apply_masks, repeat_interleave_batch
from ijepa.models.registry import ARCHS, create_encoder, create_predictor
from ijepa.models.vit import VisionTransformer


def tiny_encoder(depth: int = 2, *, img: int = 32, patch: int = 4, chans: int = 1) -> VisionTransformer:
    torch.manual_seed(0)
    return create_encoder("vit_tiny", img_size=img, patch_size=patch, in_chans=chans, depth=depth).eval()


def timm_twin(enc: VisionTransformer, num_classes: int = 0) -> TimmViT:
    """timm's ViT with I-JEPA's layout: no [cls], avg pool, final `norm` (not fc_norm)."""
    return TimmViT(
        img_size=enc.img_size, patch_size=enc.patch_size, in_chans=enc.in_chans, embed_dim=enc.embed_dim,
        depth=enc.depth, num_heads=enc.num_heads, mlp_ratio=enc.mlp_ratio, class_token=False,
        global_pool="avg", fc_norm=False, qkv_bias=True, num_classes=num_classes,
    ).eval()


def test_forward_shapes_and_any_input_size():
    enc = tiny_encoder()
    assert enc(torch.randn(3, 1, 32, 32)).shape == (3, 64, 192)
    # Non-square and larger inputs: positions are recomputed for the new grid.
    assert enc(torch.randn(2, 1, 16, 40)).shape == (2, 4 * 10, 192)


def test_output_is_layernormed():
    out = tiny_encoder()(torch.randn(2, 1, 32, 32))
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 64), atol=1e-4, rtol=0)


def test_masked_forward_computes_only_kept_tokens():
    enc = tiny_encoder(depth=1)
    x = torch.randn(2, 1, 32, 32)
    keep = [torch.tensor([[0, 5, 9, 63], [1, 2, 3, 4]]), torch.tensor([[10, 11, 12, 13], [60, 61, 62, 7]])]
    seen = []
    enc.blocks[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    out = enc(x, keep)
    assert seen == [torch.Size([4, 4, 192])]  # 2 masks x batch 2, 4 tokens each: never all 64
    # Kept tokens attend only among themselves: equal to running the blocks on the gather.
    tokens = apply_masks(enc.prepare_tokens(x), keep)
    torch.testing.assert_close(out, enc.norm(enc.blocks[0](tokens)))
    assert out.shape == (4, 4, 192)


def test_forward_intermediates_match_forward():
    enc = tiny_encoder(depth=3)
    x = torch.randn(2, 1, 32, 32)
    outs = enc.forward_intermediates(x, indices=2)
    assert len(outs) == 2 and all(o.shape == (2, 64, 192) for o in outs)
    torch.testing.assert_close(outs[-1], enc(x))
    first, last = enc.forward_intermediates(x, indices=[0, -1])
    torch.testing.assert_close(last, enc(x))
    raw = enc.forward_intermediates(x, indices=[0], norm=False)[0]
    torch.testing.assert_close(enc.norm(raw), first)
    torch.testing.assert_close(raw, enc.blocks[0](enc.prepare_tokens(x)))


def test_state_dict_loads_into_timm_and_back():
    enc = tiny_encoder(depth=2, img=32, patch=8, chans=3)
    ours = enc.state_dict()
    twin = timm_twin(enc)
    assert set(ours) == set(twin.state_dict())
    twin.load_state_dict(ours, strict=True)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(twin.forward_features(x), enc(x))
    # With a classifier head timm has keys we lack (head.*) and nothing else.
    headed = timm_twin(enc, num_classes=10)
    missing, unexpected = headed.load_state_dict(ours, strict=False)
    assert set(missing) == {"head.weight", "head.bias"} and not unexpected
    # And a timm-initialised model loads into ours unchanged.
    fresh = timm_twin(enc)
    other = tiny_encoder(depth=2, img=32, patch=8, chans=3)
    other.load_state_dict(fresh.state_dict(), strict=True)
    torch.testing.assert_close(other(x), fresh.forward_features(x))


@pytest.mark.parametrize("name", list(ARCHS))
def test_every_registered_size_constructs_on_meta(name):
    a = ARCHS[name]
    with torch.device("meta"):
        enc = create_encoder(name, img_size=224, patch_size=14)
        pred = create_predictor(enc, embed_dim=384, depth=2)
    assert (enc.embed_dim, enc.depth, enc.num_heads) == (a.embed_dim, a.depth, a.num_heads)
    assert enc.blocks[0].mlp.fc1.out_features == int(round(a.embed_dim * a.mlp_ratio))
    assert enc.pos_embed.shape == (1, 256, a.embed_dim)
    assert pred.predictor_proj.out_features == a.embed_dim and pred.num_heads == a.num_heads


def test_giant_is_official_width_and_mlp():
    with torch.device("meta"):
        enc = create_encoder("vit_giant", img_size=224, patch_size=14)
    assert (enc.embed_dim, enc.depth, enc.num_heads) == (1408, 40, 16)
    assert enc.blocks[0].mlp.fc1.weight.shape == (6144, 1408)  # 1408 * 48 / 11


@pytest.mark.parametrize("name", ["vit_small", "vit_base"])
def test_depth_override_runs(name):
    enc = create_encoder(name, img_size=32, patch_size=16, depth=1)
    assert enc.depth == 1 and enc(torch.randn(1, 3, 32, 32)).shape == (1, 4, ARCHS[name].embed_dim)


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(ValueError, match="vit_nope"):
        create_encoder("vit_nope")


def test_predictor_shapes_and_order_match_targets():
    enc = tiny_encoder(depth=1)
    torch.manual_seed(0)
    pred = create_predictor(enc, embed_dim=48, depth=1).eval()
    assert pred.num_heads == enc.num_heads
    coll = MultiBlockMaskCollator(input_size=32, patch_size=4, min_keep=4, npred=3, nenc=2)
    _, masks_enc, masks_pred = coll([torch.zeros(1)] * 5)
    x = torch.randn(5, 1, 32, 32)
    ctx = enc(x, masks_enc)
    out = pred(ctx, masks_enc, masks_pred)
    n_tgt = masks_pred[0].shape[1]
    assert out.shape == (3 * 2 * 5, n_tgt, enc.embed_dim)
    # Row r of the output predicts target block r // (nenc * B) of image r % B, from context
    # block (r // B) % nenc: check one row against a single-image, single-block pass.
    # The training targets (as IJEPA.forward gathers them) follow the same row order.
    h = enc(x)
    targets = repeat_interleave_batch(apply_masks(h, masks_pred), 5, repeat=2)
    assert targets.shape == out.shape
    for t, c, b in [(0, 0, 0), (2, 1, 4), (1, 0, 3)]:
        r = t * 2 * 5 + c * 5 + b
        single = pred(enc(x[b : b + 1], [masks_enc[c][b : b + 1]]), [masks_enc[c][b : b + 1]], [masks_pred[t][b : b + 1]])
        torch.testing.assert_close(out[r], single[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(targets[r], h[b, masks_pred[t][b]])


def test_predictor_depends_on_target_positions():
    enc = tiny_encoder(depth=1)
    pred = create_predictor(enc, embed_dim=48, depth=1).eval()
    ctx_idx = [torch.arange(20).unsqueeze(0)]
    ctx = enc(torch.randn(1, 1, 32, 32), ctx_idx)
    a = pred(ctx, ctx_idx, [torch.tensor([[40, 41]])])
    b = pred(ctx, ctx_idx, [torch.tensor([[41, 40]])])
    torch.testing.assert_close(a[0, 0], b[0, 1])  # queries are permutation-equivariant
    assert not torch.allclose(a[0, 0], a[0, 1])  # and distinguished by position
