"""Load encoders from our runs, our checkpoints and official I-JEPA checkpoints.

The architecture is read off the weights (width, depth, patch, channels, grid), so an
official checkpoint needs no config. Heads cannot be read off weights: our checkpoints
carry their config; otherwise the official width -> heads table decides.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ijepa.models.registry import ARCHS
from ijepa.models.vit import VisionTransformer
from ijepa.training.checkpointing import strip_prefix

HEADS_BY_WIDTH = {a.embed_dim: a.num_heads for a in ARCHS.values()}
WHICH = ("target_encoder", "encoder")


def checkpoint_file(path: str | Path) -> Path:
    """A run directory resolves to its `checkpoint.pt`."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    return path


def read_checkpoint(path: str | Path) -> dict:
    path = checkpoint_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({e.__class__.__name__})") from None


def encoder_from_state(state: dict[str, torch.Tensor], *, num_heads: int | None = None) -> VisionTransformer:
    """Build a VisionTransformer whose shape matches `state` and load it (strict)."""
    state = strip_prefix(state)
    if "patch_embed.proj.weight" not in state:
        raise ValueError("state dict has no patch_embed.proj.weight: not a ViT encoder")
    w = state["patch_embed.proj.weight"]
    width, in_chans, patch = w.shape[0], w.shape[1], w.shape[-1]
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    grid = int(round(state["pos_embed"].shape[1] ** 0.5))
    mlp_ratio = state["blocks.0.mlp.fc1.weight"].shape[0] / width
    heads = num_heads or HEADS_BY_WIDTH.get(width) or max(1, width // 64)
    enc = VisionTransformer(
        img_size=grid * patch, patch_size=patch, in_chans=in_chans, embed_dim=width,
        depth=depth, num_heads=heads, mlp_ratio=mlp_ratio,
    )
    enc.load_state_dict(state, strict=True)
    return enc


def load_encoder(path: str | Path, which: str = "target_encoder") -> VisionTransformer:
    """Frozen-ready encoder from a run dir, our checkpoint or an official I-JEPA checkpoint.

    `forward(images)` returns the last block's LayerNorm-ed tokens [B, N, D].
    """
    if which not in WHICH:
        raise ValueError(f"which={which!r}: expected one of {', '.join(WHICH)}")
    ckpt = read_checkpoint(path)
    if which not in ckpt:
        raise KeyError(f"{checkpoint_file(path)}: no {which!r} weights (keys: {', '.join(map(str, ckpt))})")
    heads = None
    if isinstance(ckpt.get("config"), dict):
        heads = ARCHS[ckpt["config"]["meta"]["model_name"]].num_heads
    enc = encoder_from_state(ckpt[which], num_heads=heads)
    return enc.eval().requires_grad_(False)
