"""`ijepa.load_encoder`: official I-JEPA checkpoints, our checkpoints and run dirs, clear errors."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from fixtures.pretrain import tiny_config
from rich.console import Console

import ijepa
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
    loaded = ijepa.load_encoder(tmp_path / "c.pth")
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
