"""What `ijepa explore` opens: the three networks of a run or checkpoint, or one encoder alone.

A run dir, our checkpoint or an official one opens with all three networks
(`ijepa.training.networks`). A file holding one encoder and no predictor (a Hugging Face or
timm I-JEPA model, an encoder state dict) opens encoder-only: `predictor` is None and the page
shows what needs no prediction (masks, PCA, neighbours), saying why.
"""

from __future__ import annotations

import re
from pathlib import Path

from ijepa.models import interop
from ijepa.models.checkpoint import open_checkpoint
from ijepa.models.load import encoder_from_checkpoint
from ijepa.training.config import Config, from_dict
from ijepa.training.networks import Networks, networks_of


def load_explore_model(path: str | Path, *, num_heads: int | None = None) -> Networks:
    """All three networks of a run dir, our checkpoint or an official I-JEPA checkpoint; the one
    encoder of a Hugging Face or timm I-JEPA model or of an encoder state dict (encoder-only)."""
    file, fmt, ckpt = open_checkpoint(path)
    return networks_of(file, ckpt, num_heads=num_heads) or encoder_only_model(file, fmt, ckpt, num_heads)


FORMAT_NAMES = {"hf": "Hugging Face IJepa model", "timm": "timm I-JEPA ViT"}
PUBLIC = "the public Hugging Face and timm I-JEPA weights are the official checkpoints' context encoder"


def encoder_only_model(file: Path, fmt: str, ckpt: dict, num_heads: int | None) -> Networks:
    """The one encoder of `file` (a checkpoint without a predictor: its target encoder, else its
    encoder), with the sentence the page shows instead of the predictor's panels."""
    which = "encoder" if "encoder" in ckpt and "target_encoder" not in ckpt else "target_encoder"
    enc = encoder_from_checkpoint(file, fmt, ckpt, which, num_heads=num_heads)
    if enc.grid[0] != enc.grid[1]:
        raise ValueError(f"{file}: a {enc.grid[0]}x{enc.grid[1]} patch grid; explore shows square grids only")
    cfg = from_dict(ckpt["config"]) if isinstance(ckpt.get("config"), dict) else Config()
    cfg.mask.patch_size = enc.patch_size
    kind, whose, stats = describe(file, fmt, ckpt, which)
    name = file.stem if fmt == "torch" else file.parent.name
    model = Networks(enc, None, enc, cfg, f"{kind} {name} (encoder only)", False, normalisation=stats)
    mean, std = model.mean_std
    model.encoder_only = (f"Encoder only: this {kind} holds one encoder and no predictor, so the prediction-vs-target "
                          f"cosine and the decoded predictions are hidden; the PCA and the neighbours use that encoder "
                          f"({whose}), on inputs normalised with mean {list(mean)}, std {list(std)}.")
    return model


def describe(file: Path, fmt: str, ckpt: dict, which: str) -> tuple[str, str, tuple | None]:
    """(what the file is, which encoder it holds, its input statistics or None: the recipe's)."""
    if fmt == "torch":
        if which in ckpt:
            return "checkpoint without a predictor", f"its {which}", None
        return "encoder state dict", "which one, context or target, the file does not say", None
    card, stats = model_card_facts(file)
    return FORMAT_NAMES[fmt], (f"its model card says {card}" if card else PUBLIC), stats or foreign_normalisation(file, fmt)


def model_card_facts(file: Path) -> tuple[str | None, tuple | None]:
    """(which encoder, (mean, std)) from the README.md `ijepa export` writes beside the weights."""
    card = file.parent / "README.md"
    text = card.read_text(errors="replace") if card.is_file() else ""
    which = re.search(r"^- Encoder: \*\*(\w+)\*\*", text, re.M)
    stats = re.search(r"normalised with mean \[([^\]]*)\], std \[([^\]]*)\]", text)
    as_floats = lambda s: tuple(float(v) for v in s.split(","))  # noqa: E731
    return (which[1] if which else None), ((as_floats(stats[1]), as_floats(stats[2])) if stats else None)


def foreign_normalisation(file: Path, fmt: str) -> tuple | None:
    """Input statistics a Hugging Face folder (`preprocessor_config.json`) or timm's config.json
    (`pretrained_cfg`) records; None (ImageNet's, as the public weights) where none is recorded."""
    cfg_file = file.parent / "preprocessor_config.json" if fmt == "hf" else interop.timm_weights(file)[1]
    if cfg_file is None or not cfg_file.is_file():
        return None
    cfg = interop.read_json(cfg_file)
    mean, std = (cfg.get("image_mean"), cfg.get("image_std")) if fmt == "hf" else (
        cfg.get("pretrained_cfg", {}).get("mean"), cfg.get("pretrained_cfg", {}).get("std"))
    return (tuple(mean), tuple(std)) if mean and std else None
