"""Hugging Face transformers and timm I-JEPA encoders, to and from our layout.

Our encoder's state dict already is timm's I-JEPA ViT (`class_token=False, global_pool="avg",
fc_norm=False`: the final norm on every token, as the official encoder); HF's `IJepaModel`
renames every tensor and splits qkv. Reading goes through each library's own loader for HF
(so every checkpoint naming it knows loads) and through the config beside the weights for
timm; the architecture (heads, grid, LayerNorm eps) comes from those configs, never a guess.
Writing builds the library's model, loads our weights strictly and checks its features equal
ours before anything is saved; what a format cannot carry is refused in one line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ijepa.models.vit import VisionTransformer

ACCEPTED = ("accepted: a run dir or checkpoint.pt of ours, an official .pth.tar, an encoder state dict, "
            "a Hugging Face IJepa directory (config.json + model.safetensors or pytorch_model.bin), "
            "or a timm I-JEPA ViT (.safetensors / state dict, or a timm directory with config.json)")
HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TIMM_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
TIMM_HEAD = ("head.weight", "head.bias")  # a classifier after the pooling: not part of the encoder


@dataclass(frozen=True)
class Foreign:
    """An encoder state dict in our layout, plus what a config beside it recorded."""

    state: dict[str, torch.Tensor]
    num_heads: int | None = None
    grid: tuple[int, int] | None = None
    layer_norm_eps: float = 1e-6


def read_json(path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: holds a {type(cfg).__name__}, expected a model config object")
    return cfg


def config_kind(cfg_file: Path) -> str | None:
    """"hf" (an IJepa config.json), "timm" (timm's hub config) or None; another model is refused."""
    if not cfg_file.is_file():
        return None
    cfg = read_json(cfg_file)
    if cfg.get("model_type") == "ijepa":
        return "hf"
    if "architecture" in cfg:
        return "timm"
    raise ValueError(f"{cfg_file}: a config of model_type {cfg.get('model_type')!r}, not I-JEPA; {ACCEPTED}")


def detect_format(path: Path) -> str:
    """"torch" (ours, official, a bare state dict), "hf" or "timm", from the files alone."""
    path = Path(path)
    if path.is_dir():
        if (path / "checkpoint.pt").exists():
            return "torch"
        kind = config_kind(path / "config.json")
        if kind is None:
            raise FileNotFoundError(f"{path / 'checkpoint.pt'}: checkpoint not found (nor a config.json); {ACCEPTED}")
        return kind
    kind = config_kind(path.parent / "config.json") if path.name in HF_WEIGHTS else None
    if kind is not None:
        return kind
    return "timm" if path.suffix == ".safetensors" else "torch"


def drop_head(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm state dict without its classifier (saved with num_classes > 0)."""
    return {k: v for k, v in state.items() if k not in TIMM_HEAD}


def weights_file(folder: Path, fmt: str) -> Path:
    """The weights of an HF ("hf") or timm ("timm") folder, safetensors first."""
    names = HF_WEIGHTS if fmt == "hf" else TIMM_WEIGHTS
    found = [folder / f for f in names if (folder / f).is_file()]
    if not found:
        raise FileNotFoundError(f"{folder}: a {fmt} config.json but no weights ({' or '.join(names)})")
    return found[0]


# -- Hugging Face ----------------------------------------------------------------------------

HF_NAMES = [  # (ours, HF IJepaModel's modules as the locked transformers names them); {i}: block
    ("patch_embed.proj.", "embeddings.patch_embeddings.projection."),
    ("pos_embed", "embeddings.position_embeddings"),
    ("blocks.{i}.norm1.", "layers.{i}.layernorm_before."),
    ("blocks.{i}.norm2.", "layers.{i}.layernorm_after."),
    ("blocks.{i}.attn.proj.", "layers.{i}.attention.o_proj."),
    ("blocks.{i}.mlp.", "layers.{i}.mlp."),
    ("norm.", "layernorm."),
]
QKV = ("q_proj", "k_proj", "v_proj")


def rename(key: str, table: list[tuple[str, str]]) -> str | None:
    """`key` with the first matching prefix of `table` swapped, or None if none matches."""
    for src, dst in table:
        m = re.match(re.escape(src).replace(re.escape("{i}"), r"(\d+)"), key)
        if m:
            return dst.replace("{i}", m[1] if m.groups() else "") + key[m.end():]
    return None


def ours_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        m = re.fullmatch(r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)", k)
        if m:
            for name, part in zip(QKV, v.chunk(3), strict=True):
                out[f"layers.{m[1]}.attention.{name}.{m[2]}"] = part.clone()
        elif (hf := rename(k, HF_NAMES)) is not None:
            out[hf] = v
        else:
            raise ValueError(f"{k}: no Hugging Face IJepa counterpart")
    return out


def hf_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `ours_to_hf` (q, k, v joined into qkv); an unknown key is kept as is,
    so the layout check names it."""
    out, inverse = {}, [(hf, ours) for ours, hf in HF_NAMES]
    for k, v in state.items():
        m = re.fullmatch(r"layers\.(\d+)\.attention\.([qkv])_proj\.(weight|bias)", k)
        if m and m[2] == "q":
            parts = [state[f"layers.{m[1]}.attention.{n}.{m[3]}"] for n in QKV]
            out[f"blocks.{m[1]}.attn.qkv.{m[3]}"] = torch.cat(parts)
        elif not m:
            out[rename(k, inverse) or k] = v
    return out


def check_hf_config(cfg: Any, where: Path) -> None:
    """Refuse, in one line, an IJepa config our ViT would compute differently."""
    patch = cfg.patch_size if isinstance(cfg.patch_size, int) else tuple(cfg.patch_size)
    wrong = [f"hidden_act={cfg.hidden_act!r} (ours: 'gelu')" if cfg.hidden_act != "gelu" else "",
             "qkv_bias=false (ours: true)" if not cfg.qkv_bias else "",
             f"patch_size={list(patch)} (ours: square)" if not isinstance(patch, int) and patch[0] != patch[1] else "",
             f"head_dim={cfg.head_dim} (ours: hidden_size / heads)"
             if getattr(cfg, "head_dim", None) not in (None, cfg.hidden_size // cfg.num_attention_heads) else ""]
    wrong = [w for w in wrong if w]
    if wrong:
        raise ValueError(f"{where}: {', '.join(wrong)}: not an I-JEPA ViT this suite computes")


def hf_grid(cfg: Any) -> tuple[int, int]:
    patch = cfg.patch_size if isinstance(cfg.patch_size, int) else cfg.patch_size[0]
    h, w = (cfg.image_size, cfg.image_size) if isinstance(cfg.image_size, int) else cfg.image_size
    return h // patch, w // patch


def read_hf(path: Path) -> Foreign:
    """An `IJepaModel` or `IJepaForImageClassification` directory, loaded by transformers
    (local files only); missing or misshapen weights are refused, never left at random init."""
    from transformers import IJepaConfig, IJepaModel

    folder = path if path.is_dir() else path.parent
    weights_file(folder, "hf")
    cfg = IJepaConfig.from_pretrained(folder, local_files_only=True)
    check_hf_config(cfg, folder / "config.json")
    model, info = IJepaModel.from_pretrained(folder, local_files_only=True, output_loading_info=True)
    extra = [k for k in info["unexpected_keys"] if k.split(".")[0] not in ("classifier", "pooler")]
    for what, keys in (("lacks", info["missing_keys"]), ("holds unexpected", extra), ("has misshapen", info["mismatched_keys"])):
        if keys:
            keys = sorted(map(str, keys))
            raise ValueError(f"{folder}: {what} weights {', '.join(keys[:6])}{', ...' if len(keys) > 6 else ''}")
    state = {k: v.float() for k, v in model.state_dict().items() if not k.startswith("pooler.")}
    return Foreign(hf_to_ours(state), cfg.num_attention_heads, hf_grid(cfg), cfg.layer_norm_eps)


def to_hf(enc: VisionTransformer) -> nn.Module:
    """Our encoder as a Hugging Face `IJepaModel` (no pooler), its features checked equal."""
    from transformers import IJepaConfig, IJepaModel

    (gh, gw), p = enc.grid, enc.patch_size
    cfg = IJepaConfig(
        hidden_size=enc.embed_dim, num_hidden_layers=enc.depth, num_attention_heads=enc.num_heads,
        intermediate_size=enc.blocks[0].mlp.fc1.out_features, hidden_act="gelu", layer_norm_eps=enc.norm.eps,
        image_size=gh * p if gh == gw else [gh * p, gw * p], patch_size=p, num_channels=enc.in_chans, qkv_bias=True,
    )
    with torch.device("meta"):
        model = IJepaModel(cfg)
    model.load_state_dict(ours_to_hf(enc.state_dict()), strict=True, assign=True)
    check_same(enc, lambda x: model(x).last_hidden_state, "Hugging Face IJepaModel")
    return model.eval()


# -- timm ------------------------------------------------------------------------------------

def timm_weights(path: Path) -> tuple[Path, Path | None]:
    """(weights file, timm config.json or None) of a timm directory or weights file."""
    if path.is_dir():
        return weights_file(path, "timm"), path / "config.json"
    cfg = path.parent / "config.json"
    return path, cfg if config_kind(cfg) == "timm" else None


def load_tensors(file: Path) -> dict[str, torch.Tensor]:
    if file.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(file)
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{file}: not a readable safetensors file ({e})") from None
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise ValueError(f"{file}: not a readable PyTorch state dict ({e.__class__.__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{file}: not a state dict of tensors")
    return state


def timm_model(cfg_file: Path) -> nn.Module:
    """The timm model a hub config.json describes, built on the meta device (no weights)."""
    import timm

    cfg = read_json(cfg_file)
    args = {**cfg.get("model_args", {}), "num_classes": 0}
    try:
        return timm.create_model(cfg["architecture"], pretrained=False, device="meta", **args)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"{cfg_file}: timm cannot build {cfg['architecture']!r} ({e})") from None


def read_timm(path: Path) -> Foreign:
    """A timm ViT in the I-JEPA layout; heads, grid and eps from timm's config.json beside it
    (its `model_args`, else the architecture's defaults), or none known without one."""
    file, cfg_file = timm_weights(path)
    state = drop_head(load_tensors(file))
    if cfg_file is None:
        return Foreign(state)
    model = timm_model(cfg_file)
    act = model.blocks[0].mlp.act if len(model.blocks) else None
    if not isinstance(act, nn.GELU) or act.approximate != "none":
        raise ValueError(f"{cfg_file}: MLP activation {type(act).__name__}, not the exact GELU of I-JEPA")
    return Foreign(state, model.blocks[0].attn.num_heads, tuple(model.patch_embed.grid_size), model.norm.eps)


OFFICIAL_TIMM = {  # (width, depth, patch, image size) of the released I-JEPA weights -> timm name
    (1280, 32, 14, 224): "vit_huge_patch14_gap_224",
    (1280, 32, 16, 448): "vit_huge_patch16_gap_448",
    (1408, 40, 16, 224): "vit_giant_patch16_gap_224",
}
TIMM_GENERIC = "vit_base_patch16_gap_224"  # any other size: its shape all in model_args


def timm_args(enc: VisionTransformer) -> tuple[str, dict[str, Any]]:
    """(timm architecture, model_args) that rebuild our encoder: official name where one fits."""
    (gh, gw), p = enc.grid, enc.patch_size
    if enc.norm.eps != 1e-6:
        raise ValueError(f"timm's ViT config cannot carry layer_norm_eps={enc.norm.eps:g} (its LayerNorms use 1e-6)")
    img = gh * p if gh == gw else [gh * p, gw * p]
    args = dict(img_size=img, patch_size=p, in_chans=enc.in_chans, embed_dim=enc.embed_dim, depth=enc.depth,
                num_heads=enc.num_heads, mlp_ratio=enc.blocks[0].mlp.fc1.out_features / enc.embed_dim,
                class_token=False, global_pool="avg", fc_norm=False, dynamic_img_size=True)
    return OFFICIAL_TIMM.get((enc.embed_dim, enc.depth, p, img), TIMM_GENERIC), args


def to_timm(enc: VisionTransformer) -> nn.Module:
    """Our encoder as a timm VisionTransformer (no head), its features checked equal."""
    import timm

    arch, args = timm_args(enc)
    model = timm.create_model(arch, pretrained=False, num_classes=0, device="meta", **args)
    model.load_state_dict(enc.state_dict(), strict=True, assign=True)
    check_same(enc, model.forward_features, f"timm {arch}")
    return model.eval()


def check_same(enc: VisionTransformer, forward: Any, name: str) -> None:
    """Refuse to write a model whose features at the native size are not ours."""
    (gh, gw), p = enc.grid, enc.patch_size
    x = torch.randn(2, enc.in_chans, gh * p, gw * p, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = enc.eval()(x), forward(x)
    err = (ours - theirs).abs().max().item()
    if not err <= 1e-4 * max(1.0, ours.abs().max().item()):
        raise ValueError(f"{name} computes other features than ours (max |diff| {err:.2e}); nothing written")


def save_hf(enc: VisionTransformer, out: Path) -> None:
    """`IJepaModel.from_pretrained(out)` loads it: config.json + model.safetensors."""
    to_hf(enc).save_pretrained(out, safe_serialization=True)


def save_timm(enc: VisionTransformer, out: Path, *, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    """`timm.create_model("local-dir:" + out, pretrained=True)` loads it: timm's hub layout,
    config.json (architecture, model_args, the input size and normalisation) + model.safetensors."""
    from timm.models import save_for_hf

    (gh, gw), p = enc.grid, enc.patch_size
    data = dict(input_size=(enc.in_chans, gh * p, gw * p), mean=tuple(mean), std=tuple(std), crop_pct=1.0)
    save_for_hf(to_timm(enc), out, safe_serialization=True, data_config=data)
