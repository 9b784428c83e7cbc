"""Load encoders from our runs, our checkpoints and official I-JEPA checkpoints.

The architecture is read off the weights (width, depth, patch, channels, grid), so an
official checkpoint needs no config. Heads cannot be read off weights: our checkpoints
carry their config; otherwise the official width -> heads table decides.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ijepa.models.registry import ARCHS
from ijepa.models.vit import POS_EMBEDS, VisionTransformer, check_choice
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


EXPECTED = "a dict with 'encoder'/'target_encoder' keys or an encoder state dict"


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's dict; anything else (a bare tensor, a list) is a one-line error."""
    path = checkpoint_file(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({e.__class__.__name__})") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: holds a {type(ckpt).__name__}, expected {EXPECTED}")
    return ckpt


def is_state_dict(ckpt: dict) -> bool:
    """A bare encoder state dict (e.g. `torch.save(encoder.state_dict())`), DDP prefix or not."""
    return all(isinstance(v, torch.Tensor) for v in ckpt.values()) and "patch_embed.proj.weight" in strip_prefix(ckpt)


def first_nonfinite(state: dict[str, torch.Tensor]) -> str | None:
    """Name of the first floating tensor holding a NaN or an inf (a diverged run), else None."""
    for k, v in state.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
            return k
    return None


def encoder_from_state(
    state: dict[str, torch.Tensor], *, num_heads: int | None = None, pos_embed: str = "resample"
) -> VisionTransformer:
    """Build a VisionTransformer whose shape matches `state` and load it (strict).

    `pos_embed`: what another input grid gets, the stored table resampled or sin-cos recomputed."""
    state = strip_prefix(state)
    for key in ("patch_embed.proj.weight", "pos_embed", "blocks.0.mlp.fc1.weight"):
        if not isinstance(state.get(key), torch.Tensor):
            raise ValueError(f"state dict has no {key} tensor: not a ViT encoder, or an incomplete one")
    w, table = state["patch_embed.proj.weight"], state["pos_embed"]
    if w.ndim != 4 or table.ndim != 3:
        raise ValueError(f"patch_embed.proj.weight {tuple(w.shape)} / pos_embed {tuple(table.shape)}: expected [D, C, p, p] / [1, N, D]")
    width, in_chans, patch = w.shape[0], w.shape[1], w.shape[-1]
    grid = int(round(table.shape[1] ** 0.5))
    if grid * grid != table.shape[1]:
        raise ValueError(f"pos_embed holds {table.shape[1]} positions, not a square grid (expected n x n)")
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    mlp_ratio = state["blocks.0.mlp.fc1.weight"].shape[0] / width
    heads = num_heads or HEADS_BY_WIDTH.get(width) or max(1, width // 64)
    enc = VisionTransformer(
        img_size=grid * patch, patch_size=patch, in_chans=in_chans, embed_dim=width,
        depth=depth, num_heads=heads, mlp_ratio=mlp_ratio, pos_embed=pos_embed,
    )
    check_keys(state, enc.state_dict())
    enc.load_state_dict(state, strict=True)
    return enc


def check_keys(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """What strict loading would refuse, as one line: the first missing, unexpected or
    misshapen tensor (torch's message lists them all over many lines)."""
    for what, keys in (("lacks", [k for k in expected if k not in state]), ("has unexpected", [k for k in state if k not in expected])):
        if keys:
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            raise ValueError(f"state dict {what} tensor {keys[0]}{more} for the ViT its shapes describe")
    for k, v in expected.items():
        if not isinstance(state[k], torch.Tensor) or state[k].shape != v.shape:
            got = tuple(state[k].shape) if isinstance(state[k], torch.Tensor) else type(state[k]).__name__
            raise ValueError(f"state dict tensor {k} has shape {got}, expected {tuple(v.shape)} for the ViT its shapes describe")


def load_encoder(path: str | Path, which: str = "target_encoder", *, pos_embed: str = "resample") -> VisionTransformer:
    """Frozen-ready encoder from a run dir, our checkpoint, an official I-JEPA checkpoint or a
    bare encoder state dict (which then loads for either `which`).

    `forward(images)` returns the last block's LayerNorm-ed tokens [B, N, D]. At a grid other
    than the checkpoint's, `pos_embed="resample"` (default, as timm and DINOv2) resamples the
    stored table bicubically; "sincos" recomputes the sin-cos table. Non-finite weights (a
    diverged run) are refused, naming the first bad tensor.
    """
    if which not in WHICH:
        raise ValueError(f"which={which!r}: expected one of {', '.join(WHICH)}")
    check_choice("pos_embed", pos_embed, POS_EMBEDS)
    file = checkpoint_file(path)
    ckpt = read_checkpoint(file)
    if which in ckpt:
        state = ckpt[which]
    elif is_state_dict(ckpt):
        state = ckpt
    else:
        keys = ", ".join(map(str, list(ckpt)[:12])) + (", ..." if len(ckpt) > 12 else "")
        raise KeyError(f"{file}: no {which!r} weights (keys: {keys}); expected {EXPECTED}")
    if not isinstance(state, dict):
        raise ValueError(f"{file}: {which!r} holds a {type(state).__name__}, expected a state dict")
    bad = first_nonfinite(state)
    if bad is not None:
        raise ValueError(f"{file}: {which} weights are not finite ({bad} holds NaN or inf)")
    heads = None
    if isinstance(ckpt.get("config"), dict):
        heads = ARCHS[ckpt["config"]["meta"]["model_name"]].num_heads
    try:
        enc = encoder_from_state(state, num_heads=heads, pos_embed=pos_embed)
    except ValueError as e:
        raise ValueError(f"{file}: {which} {e}") from None
    return enc.eval().requires_grad_(False)
