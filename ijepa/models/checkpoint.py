"""Read encoders from our runs, our checkpoints and official I-JEPA checkpoints, in our layout
(`ijepa.models.load.load_encoder` is the way in).

The architecture is read off the weights (width, depth, patch, channels, grid), so an
official checkpoint needs no config. Heads cannot be read off weights, and are never guessed:
a config beside the weights says (our checkpoint's own, our run's config.yaml, HF's or timm's
config.json), else a standard width (192->3, 384->6, 768->12, 1024/1280/1408->16), else the
caller's `num_heads`; otherwise a one-line refusal. Hugging Face and timm files are read by
`ijepa.models.interop`.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import yaml

from ijepa.models import interop
from ijepa.models.registry import ARCHS
from ijepa.models.vit import VisionTransformer

HEADS_BY_WIDTH = {a.embed_dim: a.num_heads for a in ARCHS.values()}


def strip_prefix(state: dict[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Drop DDP's `module.` (and torch.compile's `_orig_mod.`) from state-dict keys."""
    out = {}
    for k, v in state.items():
        for p in (prefix, "_orig_mod."):
            if k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


def locate(path: str | Path) -> tuple[Path, str]:
    """(weights file, format) of a run dir (its `checkpoint.pt`), a checkpoint, or an HF or timm
    folder (its weights file) or file: the path resolved and its format detected once."""
    path = Path(path)
    if not path.is_dir():
        if not path.exists():
            raise FileNotFoundError(f"{path}: checkpoint not found")
        return path, interop.detect_format(path)
    fmt = interop.detect_format(path)
    return (path / "checkpoint.pt" if fmt == "torch" else interop.weights_file(path, fmt)), fmt


EXPECTED = "a dict with 'encoder'/'target_encoder' keys or an encoder state dict"


def torch_dict(file: Path) -> dict:
    """The dict a PyTorch checkpoint file holds; anything else (a bare tensor, a list) is a one-line error."""
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise ValueError(f"{file}: not a readable PyTorch checkpoint ({e.__class__.__name__})") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{file}: holds a {type(ckpt).__name__}, expected {EXPECTED}")
    return ckpt


def read_checkpoint(path: str | Path) -> dict:
    """The dict of a checkpoint or of a run dir's `checkpoint.pt`."""
    return torch_dict(locate(path)[0])


def open_checkpoint(path: str | Path) -> tuple[Path, str, dict]:
    """(weights file, format, checkpoint dict): the dict is empty for HF and timm files, which
    their own loaders read."""
    file, fmt = locate(path)
    return file, fmt, torch_dict(file) if fmt == "torch" else {}


def is_state_dict(ckpt: dict) -> bool:
    """A bare encoder state dict (e.g. `torch.save(encoder.state_dict())`), DDP prefix or not."""
    return all(isinstance(v, torch.Tensor) for v in ckpt.values()) and "patch_embed.proj.weight" in strip_prefix(ckpt)


def first_nonfinite(state: dict[str, torch.Tensor]) -> str | None:
    """Name of the first floating tensor holding a NaN or an inf (a diverged run), else None."""
    for k, v in state.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
            return k
    return None


STANDARD_HEADS = ", ".join(f"{w}->{h}" for w, h in HEADS_BY_WIDTH.items())


def resolve_heads(width: int, *, given: int | None, recorded: int | None) -> int:
    """Heads from the caller or a config beside the weights (which must agree), else a standard
    width; never a guess: a bare state dict of another width is refused."""
    if given is not None and recorded is not None and given != recorded:
        raise ValueError(f"its config says {recorded} attention heads, --num-heads says {given}")
    heads = given or recorded or HEADS_BY_WIDTH.get(width)
    if heads is None:
        raise ValueError(f"width {width} is not a standard one ({STANDARD_HEADS}) and no config beside "
                         "the weights gives the number of attention heads; pass --num-heads")
    if width % heads:
        raise ValueError(f"{heads} attention heads do not divide the width {width}")
    return heads


ENCODER_KEY = re.compile(r"(patch_embed\.proj|norm|blocks\.\d+\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2))\.(weight|bias)|pos_embed")
LAYOUT = ("I-JEPA ViT keys patch_embed.proj, pos_embed, blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}, "
          "norm (official, ours, timm with class_token=False, global_pool='avg', fc_norm=False)")


def check_layout(state: dict[str, torch.Tensor]) -> None:
    """One line naming keys outside the I-JEPA ViT layout (a class token, fc_norm, layer scale...)."""
    if "patch_embed.proj.weight" not in state:
        raise ValueError(f"state dict has no patch_embed.proj.weight: not a ViT encoder; expected {LAYOUT}")
    lacking = [k for k in ("pos_embed", "blocks.0.mlp.fc1.weight") if k not in state]
    if lacking:
        raise ValueError(f"state dict lacks {', '.join(lacking)}: not the layout accepted, {LAYOUT}")
    other = [k for k in state if not ENCODER_KEY.fullmatch(k)]
    if other:
        raise ValueError(f"state dict holds {', '.join(other[:6])}{', ...' if len(other) > 6 else ''}: "
                         f"not in the layout accepted, {LAYOUT}")


def state_grid(state: dict[str, torch.Tensor], grid: tuple[int, int] | None) -> tuple[int, int]:
    """The position table's grid: given by a config, else square (a bare table says no more)."""
    n = state["pos_embed"].shape[1]
    if grid is None:
        side = round(n**0.5)
        if side * side != n:
            raise ValueError(f"pos_embed holds {n} positions, not a square grid, and no config gives the grid")
        grid = (side, side)
    if grid[0] * grid[1] != n:
        raise ValueError(f"pos_embed holds {n} positions, not the {grid[0]}x{grid[1]} grid of its config")
    return grid


def encoder_from_state(
    state: dict[str, torch.Tensor], *, num_heads: int | None = None, recorded_heads: int | None = None,
    grid: tuple[int, int] | None = None, layer_norm_eps: float = 1e-6, pos_embed: str = "resample",
) -> VisionTransformer:
    """Build a VisionTransformer whose shape matches `state` and load it (strict).

    `num_heads` (the caller's) and `recorded_heads` (a config's) as `resolve_heads`; `grid` and
    `layer_norm_eps` from a config where one exists. `pos_embed`: what another input grid gets,
    the stored table resampled or sin-cos recomputed."""
    state = strip_prefix(state)
    check_layout(state)
    w = state["patch_embed.proj.weight"]
    width, in_chans, patch = w.shape[0], w.shape[1], w.shape[-1]
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    gh, gw = state_grid(state, grid)
    mlp_ratio = state["blocks.0.mlp.fc1.weight"].shape[0] / width
    enc = VisionTransformer(
        img_size=gh * patch if gh == gw else (gh * patch, gw * patch), patch_size=patch, in_chans=in_chans, embed_dim=width, depth=depth,
        num_heads=resolve_heads(width, given=num_heads, recorded=recorded_heads),
        mlp_ratio=mlp_ratio, pos_embed=pos_embed,
    )
    missing = sorted(set(enc.state_dict()) - set(state))
    if missing:
        raise ValueError(f"state dict lacks {', '.join(missing[:6])}: not the layout accepted, {LAYOUT}")
    try:
        enc.load_state_dict(state, strict=True)
    except RuntimeError as e:  # a tensor of another shape than its neighbours imply
        raise ValueError(str(e).strip().splitlines()[-1].strip()) from None
    for m in enc.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.eps = layer_norm_eps
    return enc


def heads_beside(file: Path, ckpt: dict) -> int | None:
    """Heads recorded with our checkpoint: its own config, else our run's config.yaml beside it."""
    cfg = ckpt.get("config")
    if not isinstance(cfg, dict) and (file.parent / "config.yaml").is_file():
        cfg = yaml.safe_load((file.parent / "config.yaml").read_text())
    name = cfg.get("meta", {}).get("model_name") if isinstance(cfg, dict) else None
    return ARCHS[name].num_heads if name in ARCHS else None


def weights_of(file: Path, fmt: str, ckpt: dict, which: str) -> interop.Foreign:
    """The `which` encoder's weights in our layout (`ckpt` from `open_checkpoint`), with what a
    config beside them records; non-finite weights are refused, naming the first bad tensor."""
    if fmt == "torch":
        foreign = interop.Foreign(torch_state(file, ckpt, which), heads_beside(file, ckpt))
    else:
        foreign = interop.read_hf(file) if fmt == "hf" else interop.read_timm(file)
    bad = first_nonfinite(foreign.state)
    if bad is not None:
        raise ValueError(f"{file}: {which if fmt == 'torch' else fmt} weights are not finite ({bad} holds NaN or inf)")
    return foreign


def encoder_from_weights(
    file: Path, foreign: interop.Foreign, *, pos_embed: str = "resample", num_heads: int | None = None
) -> VisionTransformer:
    """The frozen encoder of `weights_of`; any layout or heads problem names `file`."""
    try:
        enc = encoder_from_state(foreign.state, num_heads=num_heads, recorded_heads=foreign.num_heads, grid=foreign.grid,
                                 layer_norm_eps=foreign.layer_norm_eps, pos_embed=pos_embed)
    except ValueError as e:
        raise ValueError(f"{file}: {e}") from None
    return enc.eval().requires_grad_(False)


def torch_state(file: Path, ckpt: dict, which: str) -> dict[str, torch.Tensor]:
    """The `which` state dict of our/official checkpoint, or the file itself if a bare state dict."""
    if which in ckpt:
        state = ckpt[which]
    elif is_state_dict(ckpt):
        state = interop.drop_head(ckpt)
    else:
        keys = ", ".join(map(str, list(ckpt)[:12])) + (", ..." if len(ckpt) > 12 else "")
        raise KeyError(f"{file}: no {which!r} weights (keys: {keys}); expected {EXPECTED}")
    if not isinstance(state, dict):
        raise ValueError(f"{file}: {which!r} holds a {type(state).__name__}, expected a state dict")
    return state
