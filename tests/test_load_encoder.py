"""`ijepa.load_encoder`: official I-JEPA checkpoints, our checkpoints and run dirs, clear errors."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from fixtures.pretrain import tiny_config
from rich.console import Console

import ijepa
from ijepa.evals.core.encoders import EncoderSpec, build_encoder
from ijepa.models.pos_embed import sincos_2d
from ijepa.models.registry import create_encoder, create_predictor
from ijepa.models.vit import VisionTransformer
from ijepa.training.loop import pretrain


def official_checkpoint(path, enc: VisionTransformer, target: VisionTransformer) -> None:
    """Exactly what the official `save_checkpoint` writes after DDP training."""
    pred = create_predictor(enc, embed_dim=48, depth=1)
    opt = torch.optim.AdamW(list(enc.parameters()) + list(pred.parameters()))
    module = lambda m: {f"module.{k}": v for k, v in m.state_dict().items()}  # noqa: E731
    torch.save({
        "encoder": module(enc), "predictor": module(pred), "target_encoder": module(target),
        "opt": opt.state_dict(), "scaler": None, "epoch": 300, "loss": 0.123,
        "batch_size": 128, "world_size": 16, "lr": 1e-3,
    }, path)


def pair(name: str = "vit_tiny", **kw) -> tuple[VisionTransformer, VisionTransformer]:
    torch.manual_seed(0)
    enc = create_encoder(name, **kw).eval()
    target = copy.deepcopy(enc)
    with torch.no_grad():
        for p in target.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return enc, target


@pytest.mark.parametrize(
    "name,kw",
    [("vit_tiny", dict(img_size=32, patch_size=8, in_chans=3, depth=2)),
     ("vit_small", dict(img_size=28, patch_size=14, in_chans=3, depth=1)),
     ("vit_tiny", dict(img_size=32, patch_size=4, in_chans=1, depth=1))],
)
def test_official_layout_infers_architecture(tmp_path, name, kw):
    enc, target = pair(name, **kw)
    path = tmp_path / "jepa-ep300.pth.tar"
    official_checkpoint(path, enc, target)
    loaded = ijepa.load_encoder(path)
    assert (loaded.embed_dim, loaded.depth, loaded.num_heads, loaded.patch_size, loaded.in_chans, loaded.grid) == (
        enc.embed_dim, enc.depth, enc.num_heads, enc.patch_size, enc.in_chans, enc.grid)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    x = torch.randn(2, kw["in_chans"], kw["img_size"], kw["img_size"])
    torch.testing.assert_close(loaded(x), target(x))
    torch.testing.assert_close(ijepa.load_encoder(path, which="encoder")(x), enc(x))


def test_mlp_ratio_is_read_off_the_weights(tmp_path):
    torch.manual_seed(0)
    enc = VisionTransformer(img_size=16, patch_size=8, in_chans=3, embed_dim=64, depth=1, num_heads=1, mlp_ratio=48 / 11)
    official_checkpoint(tmp_path / "c.pth", enc, enc)
    loaded = ijepa.load_encoder(tmp_path / "c.pth", num_heads=1)  # width 64: no standard heads
    assert loaded.blocks[0].mlp.fc1.out_features == enc.blocks[0].mlp.fc1.out_features
    x = torch.randn(1, 3, 16, 16)
    torch.testing.assert_close(loaded(x), enc(x))


def test_our_run_dir_and_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, "one", optimization={"max_steps": 2}, logging={"diag_every": 0, "online_probe": False})
    run = pretrain(cfg, console=Console(file=io.StringIO()))
    from_dir, from_file = ijepa.load_encoder(run), ijepa.load_encoder(run / "checkpoint.pt")
    state = torch.load(run / "checkpoint.pt", weights_only=True)["target_encoder"]
    for k, v in state.items():
        assert torch.equal(from_dir.state_dict()[k], v) and torch.equal(from_file.state_dict()[k], v)
    assert (from_dir.depth, from_dir.num_heads, from_dir.in_chans, from_dir.grid) == (1, 3, 1, (8, 8))
    assert from_dir(torch.randn(2, 1, 32, 32)).shape == (2, 64, 192)


def test_bad_paths_and_contents_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pt: checkpoint not found"):
        ijepa.load_encoder(tmp_path / "nowhere.pt")
    (tmp_path / "emptyrun").mkdir()
    with pytest.raises(FileNotFoundError, match="emptyrun/checkpoint.pt: checkpoint not found"):
        ijepa.load_encoder(tmp_path / "emptyrun")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not a readable PyTorch checkpoint"):
        ijepa.load_encoder(tmp_path / "junk.pt")
    torch.save({"encoder": {"module.fc.weight": torch.zeros(2, 2)}}, tmp_path / "other.pt")
    with pytest.raises(KeyError, match="other.pt: no 'target_encoder' weights"):
        ijepa.load_encoder(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a ViT encoder"):
        ijepa.load_encoder(tmp_path / "other.pt", which="encoder")
    with pytest.raises(ValueError, match="which='predictor'"):
        ijepa.load_encoder(tmp_path / "other.pt", which="predictor")


def positions(enc: VisionTransformer, h: int, w: int) -> torch.Tensor:
    """What the encoder adds to the patch embeddings of an h x w grid."""
    x = torch.randn(1, enc.in_chans, h * enc.patch_size, w * enc.patch_size)
    return enc.prepare_tokens(x) - enc.patch_embed(x)


def checkpoint_with_table(tmp_path, table: torch.Tensor):
    """An official-layout checkpoint (8x8 grid) whose stored position table is `table`."""
    enc, target = pair("vit_tiny", img_size=32, patch_size=4, in_chans=1, depth=1)
    for m in (enc, target):
        m.pos_embed.data.copy_(table)
    path = tmp_path / "grid8.pth.tar"
    official_checkpoint(path, enc, target)
    return path


def test_another_grid_resamples_the_stored_table_by_default(tmp_path):
    torch.manual_seed(1)
    table = torch.randn(1, 64, 192)  # not a sin-cos table: only resampling reproduces it
    loaded = ijepa.load_encoder(checkpoint_with_table(tmp_path, table))
    grid = table.reshape(1, 8, 8, 192).permute(0, 3, 1, 2)
    want = F.interpolate(grid, size=(6, 10), mode="bicubic", antialias=True).permute(0, 2, 3, 1).reshape(1, 60, 192)
    torch.testing.assert_close(positions(loaded, 6, 10), want, atol=1e-5, rtol=1e-5)
    # At the checkpoint's own grid resampling is the identity: the stored table, exactly.
    assert torch.equal(loaded._pos_embed(8, 8), table)
    torch.testing.assert_close(positions(loaded, 8, 8), table, atol=1e-5, rtol=0)
    assert loaded(torch.randn(2, 1, 24, 40)).shape == (2, 60, 192)


def test_sincos_option_recomputes_the_table_for_another_grid(tmp_path):
    table = torch.randn(1, 64, 192)
    loaded = ijepa.load_encoder(checkpoint_with_table(tmp_path, table), pos_embed="sincos")
    torch.testing.assert_close(positions(loaded, 6, 10), sincos_2d(192, 6, 10).unsqueeze(0), atol=1e-5, rtol=1e-5)
    assert torch.equal(loaded._pos_embed(8, 8), table)  # the stored table at its own grid
    with pytest.raises(ValueError, match="pos_embed='bilinear': expected one of resample, sincos"):
        ijepa.load_encoder(tmp_path / "grid8.pth.tar", pos_embed="bilinear")


def test_eval_spec_passes_pos_embed_and_keys_it(tmp_path):
    path = checkpoint_with_table(tmp_path, torch.randn(1, 64, 192))
    enc, name, key = build_encoder(EncoderSpec(encoder=str(path)))
    assert enc.pos_embed_mode == "resample" and name == "grid8.pth:target_encoder"
    enc2, name2, key2 = build_encoder(EncoderSpec(encoder=str(path), pos_embed="sincos"))
    assert enc2.pos_embed_mode == "sincos" and name2.endswith("-possincos") and key2 != key


def test_one_digest_names_the_weights_in_the_record_the_cache_and_the_source(tmp_path, monkeypatch):
    """The record's `encoder_key`, the feature cache's key and `encoder.source` hold one digest
    of the weights (`weights_digest`); `which` goes in as the user's word and comes out a key."""
    from fixtures.fmnist import write_fmnist

    from ijepa.evals.core import features
    from ijepa.evals.core.setup import frozen_splits, resolve_encoder
    from ijepa.models.load import weights_digest

    path, cached = checkpoint_with_table(tmp_path, torch.randn(1, 64, 192)), []
    real_key = features.cache_key
    monkeypatch.setattr(features, "cache_key", lambda **parts: cached.append(parts["weights"]) or real_key(**parts))
    _, _, info = frozen_splits(EncoderSpec(encoder=str(path), which="context"), f"fashion-mnist:{write_fmnist(tmp_path / 'fm')}",
                               cache_dir=None)
    enc = ijepa.load_encoder(path, which="encoder")
    digest = weights_digest(enc)
    assert enc.source.digest == digest and enc.source.which == "encoder" and enc.source.file == path
    assert info["encoder"] == "grid8.pth:encoder" and info["encoder_key"] == f"{digest[:16]}-encoder" == enc.source.key
    assert cached == [digest, digest]  # train and test
    assert resolve_encoder(enc)[2] == f"module-{digest[:16]}"  # the same weights in memory


def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path):
    enc, target = pair("vit_tiny", img_size=32, patch_size=8, in_chans=3, depth=2)
    with torch.no_grad():
        target.blocks[1].mlp.fc1.weight[0, 0] = float("nan")
    official_checkpoint(tmp_path / "diverged.pth.tar", enc, target)
    with pytest.raises(ValueError, match=r"diverged.pth.tar: target_encoder weights are not finite "
                                         r"\(module.blocks.1.mlp.fc1.weight holds NaN or inf\)"):
        ijepa.load_encoder(tmp_path / "diverged.pth.tar")
    ijepa.load_encoder(tmp_path / "diverged.pth.tar", which="encoder")  # the finite one still loads
    with pytest.raises(ValueError, match="diverged.pth.tar: target_encoder weights are not finite"):
        build_encoder(EncoderSpec(encoder=str(tmp_path / "diverged.pth.tar")))


def test_a_file_holding_no_dict_is_a_one_line_error(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(ValueError, match="tensor.pt: holds a Tensor, expected a dict with 'encoder'/'target_encoder' keys "
                                         "or an encoder state dict") as e:
        ijepa.load_encoder(tmp_path / "tensor.pt")
    assert "\n" not in str(e.value)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="list.pt: holds a list, expected"):
        ijepa.load_encoder(tmp_path / "list.pt")
    torch.save({"target_encoder": torch.zeros(3)}, tmp_path / "inner.pt")
    with pytest.raises(ValueError, match="inner.pt: 'target_encoder' holds a Tensor, expected a state dict"):
        ijepa.load_encoder(tmp_path / "inner.pt")


def test_a_bare_encoder_state_dict_loads(tmp_path):
    enc, _ = pair("vit_tiny", img_size=32, patch_size=8, in_chans=3, depth=1)
    torch.save(enc.state_dict(), tmp_path / "bare.pt")
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(ijepa.load_encoder(tmp_path / "bare.pt")(x), enc(x))


def test_which_context_is_the_cli_word_for_the_official_encoder_key(tmp_path):
    """One vocabulary: `which="context"` in Python as on the CLI; "encoder" (the official key) stays an alias."""
    torch.manual_seed(0)
    enc, target = create_encoder("vit_tiny", img_size=16, patch_size=8, in_chans=1, depth=1), create_encoder(
        "vit_tiny", img_size=16, patch_size=8, in_chans=1, depth=1)
    torch.save({"encoder": enc.state_dict(), "target_encoder": target.state_dict()}, tmp_path / "ckpt.pt")
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        ctx, official = ijepa.load_encoder(tmp_path / "ckpt.pt", which="context")(x), ijepa.load_encoder(tmp_path / "ckpt.pt", which="encoder")(x)
        assert torch.equal(ctx, official) and not torch.equal(ctx, ijepa.load_encoder(tmp_path / "ckpt.pt")(x))
    with pytest.raises(ValueError, match="expected target_encoder or context"):
        ijepa.load_encoder(tmp_path / "ckpt.pt", which="predictor")
