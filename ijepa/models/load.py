"""`load_encoder`: the one way from a path to a frozen encoder and what identifies it.

A run dir, our checkpoint, an official I-JEPA checkpoint, a bare encoder state dict, a Hugging
Face IJepa directory or a timm I-JEPA ViT: the path is resolved, its format detected, `which`
mapped to a checkpoint key and the heads settled once (`ijepa.models.checkpoint` reads the
files). The encoder comes back with `encoder.source` (as timm's models carry their
`pretrained_cfg`): the file, format, key and the digest of the weights (`weights_digest`),
the one digest by which eval records, the feature cache and export's model card identify an
encoder.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ijepa.models.checkpoint import encoder_from_weights, open_checkpoint, weights_of
from ijepa.models.source import EncoderSource
from ijepa.models.vit import VisionTransformer
from ijepa.models.which import resolve_which


def weights_digest(encoder: torch.nn.Module) -> str:
    """sha256 over every tensor of the state dict (names, dtypes, shapes, bytes): the weights
    themselves, whichever file or run they came from. A few seconds for ViT-H; a digest of part
    of a file would let two checkpoints that differ only in their last blocks share it."""
    h = hashlib.sha256()
    for k, v in encoder.state_dict().items():
        v = v.detach().cpu().contiguous()
        h.update(f"{k}:{v.dtype}:{tuple(v.shape)}".encode())
        h.update(v.view(-1).view(torch.uint8).numpy().data if v.numel() else b"")
    return h.hexdigest()[:24]


def load_encoder(
    path: str | Path, which: str = "target_encoder", *, pos_embed: str = "resample", num_heads: int | None = None
) -> VisionTransformer:
    """Frozen encoder of a run dir, our checkpoint, an official I-JEPA checkpoint, a bare encoder
    state dict, a Hugging Face IJepa directory or a timm I-JEPA ViT (the last three hold one
    encoder, which then loads for either `which`: "target_encoder", or "context", alias
    "encoder", the official key).

    `forward(images)` returns the last block's LayerNorm-ed tokens [B, N, D]. At a grid other
    than the checkpoint's, `pos_embed="resample"` (default, as timm and DINOv2) resamples the
    stored table bicubically; "sincos" recomputes the sin-cos table. `num_heads`: only needed
    where no config gives them and the width is not a standard one. Non-finite weights (a
    diverged run) are refused, naming the first bad tensor.
    """
    key = resolve_which(which)
    file, fmt, ckpt = open_checkpoint(path)
    return encoder_from_checkpoint(file, fmt, ckpt, key, pos_embed=pos_embed, num_heads=num_heads)


def encoder_from_checkpoint(
    file: Path, fmt: str, ckpt: dict, which: str, *, pos_embed: str = "resample", num_heads: int | None = None
) -> VisionTransformer:
    """`load_encoder` of what `open_checkpoint` read, `which` a checkpoint key: for callers that
    use the checkpoint's other entries too (export's model card, the explorer's encoder-only
    page), so that the file is read once."""
    enc = encoder_from_weights(file, weights_of(file, fmt, ckpt, which), pos_embed=pos_embed, num_heads=num_heads)
    enc.source = EncoderSource(file, fmt, which, weights_digest(enc))
    return enc
