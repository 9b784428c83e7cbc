"""The encoder an eval scores, from the command-line contract every eval shares.

`--encoder PATH` (run dir, our checkpoint, official checkpoint) or `--random-init ARCH`
with `--img-size/--patch-size/--in-chans/--depth`: the random-init baseline is the same
architecture, seeded, so every table can show it beside the trained encoder.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from ijepa.models.checkpoint import checkpoint_file, load_encoder
from ijepa.models.registry import create_encoder
from ijepa.models.vit import VisionTransformer


@dataclass(frozen=True)
class EncoderSpec:
    encoder: str | None = None  # path
    random_init: str | None = None  # arch name
    which: str = "target_encoder"
    img_size: int = 32
    patch_size: int = 4
    in_chans: int = 1
    depth: int = 0
    seed: int = 0


def file_digest(path: Path, limit: int = 1 << 24) -> str:
    """sha256 over size + the first 16 MiB: identifies a checkpoint cheaply and stably."""
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as f:
        h.update(f.read(limit))
    return h.hexdigest()[:16]


def build_encoder(spec: EncoderSpec) -> tuple[VisionTransformer, str, str]:
    """(frozen encoder in eval mode, human-readable id, cache key)."""
    if (spec.encoder is None) == (spec.random_init is None):
        raise ValueError("give exactly one of --encoder PATH or --random-init ARCH")
    if spec.encoder is not None:
        path = checkpoint_file(spec.encoder)
        enc = load_encoder(path, which=spec.which)
        return enc, f"{path.parent.name if path.name == 'checkpoint.pt' else path.stem}:{spec.which}", f"{file_digest(path)}-{spec.which}"
    torch.manual_seed(spec.seed)
    enc = create_encoder(spec.random_init, img_size=spec.img_size, patch_size=spec.patch_size, in_chans=spec.in_chans, depth=spec.depth or None)
    name = f"random:{spec.random_init}-d{enc.depth}-p{spec.patch_size}-{spec.img_size}-c{spec.in_chans}-s{spec.seed}"
    return enc.eval().requires_grad_(False), name, name
