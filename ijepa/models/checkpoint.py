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

HEADS_BY_WIDTH = {a.embed_dim: a.num_heads for a in ARCHS.values()}
WHICH = ("target_encoder", "encoder")


def strip_prefix(state: dict[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Drop DDP's `module.` (and torch.compile's `_orig_mod.`) from state-dict keys."""
    out = {}
    for k, v in state.items():
        for p in (prefix, "_orig_mod."):
            if k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


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
        depth=depth, num_heads=heads, mlp_ratio=mlp_ratio, pos_embed=pos_embed,
    )
    enc.load_state_dict(state, strict=True)
    return enc


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
    enc = encoder_from_state(state, num_heads=heads, pos_embed=pos_embed)
    return enc.eval().requires_grad_(False)
