"""The encoder an eval scores, from the command-line contract every eval shares.

`--encoder PATH` (run dir, our checkpoint, official checkpoint) or `--random-init ARCH`
with `--img-size/--patch-size/--in-chans/--depth`: the random-init baseline is the same
architecture, seeded, so every table can show it beside the trained encoder. `--raw-pixels`
is no encoder: the evals on pooled features score the pixels themselves by the same heads
(`ijepa.evals.core.setup.frozen_splits`); the others refuse it here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ijepa.models.load import load_encoder
from ijepa.models.registry import create_encoder
from ijepa.models.vit import VisionTransformer


@dataclass(frozen=True)
class EncoderSpec:
    encoder: str | None = None  # path
    random_init: str | None = None  # arch name
    which: str = "target_encoder"  # as the user gave it ("context" too): `load_encoder` maps it
    img_size: int = 32
    patch_size: int = 4
    in_chans: int = 1
    depth: int = 0
    seed: int = 0
    pos_embed: str = "resample"  # another input grid (dense evals): resample the table or "sincos"
    init: str = "official"  # random init only: "official" (as official training) or "rescaled"
    patch_embed_std: float = 0.0  # random init only: a recipe's `meta.patch_embed_std` (0 = the official 0.02)
    num_heads: int | None = None  # a bare state dict of a non-standard width: its heads (never guessed)
    raw_pixels: bool = False  # no encoder: the pixels are the features (pooled-feature evals only)


def check_choice(spec: EncoderSpec) -> None:
    """One source of features: a checkpoint, a random-init architecture, or the raw pixels."""
    if (spec.encoder is not None) + (spec.random_init is not None) + spec.raw_pixels != 1:
        raise ValueError("give exactly one of --encoder PATH, --random-init ARCH or --raw-pixels")


def build_encoder(spec: EncoderSpec) -> tuple[VisionTransformer, str, str]:
    """(frozen encoder in eval mode, human-readable id, the records' `encoder_key`: a loaded
    encoder's weights digest and key, a random init's recipe).

    Dense evals feed other grids than the checkpoint's; `spec.pos_embed` decides their
    position table. "sincos" (not the default) is named in the id and key, so features
    computed one way are never reused for the other."""
    check_choice(spec)
    if spec.raw_pixels:
        raise ValueError("--raw-pixels: only the evals on pooled features (linear, knn, lowshot by logreg or heads) score "
                         "raw pixels; this one needs an encoder")
    tag = "" if spec.pos_embed == "resample" else f"-pos{spec.pos_embed}"
    if spec.encoder is not None:
        enc = load_encoder(spec.encoder, spec.which, pos_embed=spec.pos_embed, num_heads=spec.num_heads)
        src, tag = enc.source, tag + (f"-h{spec.num_heads}" if spec.num_heads else "")
        folder = src.file.name == "checkpoint.pt" or Path(spec.encoder).is_dir()  # a run, HF or timm folder: its name
        return enc, f"{src.file.parent.name if folder else src.file.stem}:{src.which}{tag}", f"{src.key}{tag}"
    torch.manual_seed(spec.seed)
    enc = create_encoder(spec.random_init, img_size=spec.img_size, patch_size=spec.patch_size, in_chans=spec.in_chans,
                         depth=spec.depth or None, init=spec.init, pos_embed=spec.pos_embed,
                         patch_embed_std=spec.patch_embed_std)  # as the trainer builds it: a recipe's random init is its own
    if spec.patch_embed_std:
        tag += f"-pe{spec.patch_embed_std:g}"
    if spec.init != "official":
        tag += f"-{spec.init}"
    name = f"random:{spec.random_init}-d{enc.depth}-p{spec.patch_size}-{spec.img_size}-c{spec.in_chans}-s{spec.seed}{tag}"
    # The key names the init: features cached before the default became "official" (they
    # were drawn with the rescale) are never read back as the new init's.
    return enc.eval().requires_grad_(False), name, f"{name}-init{spec.init}"
