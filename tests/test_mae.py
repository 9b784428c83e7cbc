"""MAE in the shared framework: random masks, pixel targets, visible-only encoder, the loop."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from ijepa import load_encoder
from ijepa.masks.random import RandomMaskCollator
from ijepa.models.mae import normalized_pixels, patchify, unpatchify
from ijepa.training.config import from_dict
from ijepa.training.loop import build_method, build_optimizer, optimizer_step, pretrain
from ijepa.training.mae import MAE


def tiny_cfg(**meta):
    return from_dict({
        "data": {"crop_size": 16, "batch_size": 8},
        "mask": {"patch_size": 4, "mask_ratio": 0.75},
        "meta": {"model_name": "vit_tiny", "depth": 2, "in_chans": 1, "dec_depth": 1, "dec_emb_dim": 64, **meta},
    })


def test_random_masks_partition_the_grid_and_are_seeded():
    coll = RandomMaskCollator(32, 4, 0.75, seed=3)
    (keep,), (masked,) = coll.sample_masks(64, coll._generator(0))
    assert keep.shape == (64, 16) and masked.shape == (64, 48)
    both = torch.cat([keep, masked], 1).sort(1).values
    assert torch.equal(both, torch.arange(64).expand(64, -1))  # disjoint, and together every patch
    again = coll.sample_masks(64, coll._generator(0))[0][0]
    assert torch.equal(keep, again)
    assert not torch.equal(keep, coll.sample_masks(64, coll._generator(1))[0][0])
    assert len({tuple(r.tolist()) for r in keep}) == 64  # per image, not per batch


def test_random_masks_are_uniform_over_patches():
    coll = RandomMaskCollator(32, 4, 0.75)
    freq = torch.zeros(64)
    for b in range(40):
        (keep,), _ = coll.sample_masks(50, coll._generator(b))
        freq += torch.bincount(keep.flatten(), minlength=64)
    freq /= 40 * 50
    assert (freq - 0.25).abs().max() < 0.05  # 2000 draws per patch: std ~0.01


def test_collator_output_matches_the_multiblock_layout():
    coll = RandomMaskCollator(16, 4, 0.5)
    batch, masks_enc, masks_pred = coll([(torch.zeros(1, 16, 16), 0)] * 4)
    assert batch[0].shape == (4, 1, 16, 16) and len(masks_enc) == len(masks_pred) == 1
    with pytest.raises(ValueError, match="mask_ratio"):
        RandomMaskCollator(16, 4, 1.0)


def test_patchify_order_matches_the_patch_grid():
    x = torch.randn(2, 3, 8, 12)
    t = patchify(x, 4)
    assert t.shape == (2, 6, 48)
    r, c = 1, 2  # patch index r * grid_w + c
    expect = x[1, :, r * 4 : r * 4 + 4, c * 4 : c * 4 + 4].permute(1, 2, 0).reshape(-1)
    assert torch.equal(t[1, r * 3 + c], expect)
    assert torch.equal(unpatchify(t, 4, (2, 3), 3), x)
    n = normalized_pixels(x, 4)
    assert torch.allclose(n.mean(-1), torch.zeros(2, 6), atol=1e-5)
    assert torch.allclose(n.var(-1), torch.ones(2, 6), atol=1e-3)


def test_encoder_sees_only_visible_patches():
    torch.manual_seed(0)
    model = MAE(tiny_cfg()).eval()
    coll = RandomMaskCollator(16, 4, 0.75)
    _, masks_enc, masks_pred = coll([(torch.zeros(1, 16, 16), 0)] * 2)
    seen = []
    model.encoder.blocks[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1]))
    imgs = torch.randn(2, 1, 16, 16)
    loss, stats = model(imgs, masks_enc, masks_pred)
    assert seen == [4] and stats["pooled"].shape == (2, 192)
    # Repainting the masked patches changes the target (the loss) but not what the encoder saw.
    t = patchify(imgs, 4)
    t2 = t.clone()
    t2[torch.arange(2)[:, None], masks_pred[0]] = torch.randn(2, 12, 16)
    imgs2 = unpatchify(t2, 4, (4, 4), 1)
    z1, z2 = model.encoder(imgs, masks_enc), model.encoder(imgs2, masks_enc)
    assert torch.allclose(z1, z2)
    assert not torch.isclose(model(imgs2, masks_enc, masks_pred)[0], loss)


def test_mae_steps_fit_a_batch():
    torch.manual_seed(0)
    cfg = tiny_cfg()
    model = build_method(cfg, "mae")
    opt = build_optimizer(model.trainable(), fused=False)
    coll = RandomMaskCollator(16, 4, 0.75)
    (imgs, _), me, mp = coll([(torch.randn(1, 16, 16), 0) for _ in range(8)])
    auto = torch.autocast("cpu", enabled=False)
    losses = [
        float(optimizer_step(model, model.trainable(), opt, [(imgs, me, mp)], lr=3e-3, wd=0.0, momentum=0.996, autocast=auto)[0])
        for _ in range(25)
    ]
    assert losses[-1] < 0.6 * losses[0]
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        build_method(cfg, "nope")


def test_pretrain_mae_cli_checkpoint_loads_as_an_encoder_and_resumes(tmp_path, monkeypatch):
    import ijepa.cli.pretrain  # noqa: F401  (registers the command)
    from ijepa.cli import app

    monkeypatch.chdir(tmp_path)
    sets = [
        "data.subset=64", "data.batch_size=16", "data.num_workers=0", "optimization.max_steps=2",
        "meta.depth=1", "meta.dec_depth=1", "meta.dec_emb_dim=32", "logging.diag_every=0",
        "logging.online_probe=false", "logging.progress=false", "logging.write_tag=mae",
    ]
    res = CliRunner().invoke(app, ["pretrain", "--method", "mae", *[a for s in sets for a in ("--set", s)]])
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "mae"
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["method"] == "mae" and ckpt["step"] == 2
    for k, v in ckpt["encoder"].items():
        assert torch.equal(v, ckpt["target_encoder"][k])
    enc = load_encoder(run)
    assert enc(torch.randn(2, 1, 32, 32)).shape == (2, 64, 192)
    from ijepa.training.config import load_config

    cfg = load_config(None, [*sets[:-1], "logging.write_tag=mae", "optimization.max_steps=3"])
    pretrain(cfg, method="mae", resume=True)
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 3
    from ijepa.bench.flops import pretrain_compute

    rec = pretrain_compute(run, wall_s=5.0)
    assert rec["method"] == "mae" and rec["steps"] == 3 and rec["pretrain_flops"] == 3 * rec["flops_per_step"] > 0
