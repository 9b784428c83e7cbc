"""The three I-JEPA networks of one checkpoint (or of a fresh random init), for inspection.

A checkpoint written by our trainer (keys `encoder`, `predictor`, `target_encoder`,
`config`) or an official one (same three keys, `module.` prefixes, no config) is read; the
shapes come off the weights, so no config is needed, but ours supplies the heads, the mask
settings it trained with, its loss and its data statistics. A file holding one encoder and
no predictor (a Hugging Face or timm I-JEPA model, an encoder state dict) opens encoder-only:
`predictor` is None and the page shows what needs no prediction (masks, PCA, neighbours).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ijepa.data import fashion_mnist
from ijepa.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ijepa.models import interop
from ijepa.models.checkpoint import encoder_from_state, open_checkpoint
from ijepa.models.load import encoder_from_checkpoint
from ijepa.models.predictor import VisionTransformerPredictor
from ijepa.models.registry import ARCHS
from ijepa.models.vit import VisionTransformer
from ijepa.training.checkpointing import strip_prefix
from ijepa.training.config import Config, from_dict
from ijepa.training.step import encoder_from_config, predictor_from_config

PARTS = ("encoder", "predictor", "target_encoder")


@dataclass
class ExploreModel:
    """Context encoder, predictor and target encoder, plus what the page needs to know.

    Encoder-only (`predictor` None): `encoder` and `target_encoder` are the file's one encoder,
    and `encoder_only` says on the page why the predictor's panels are hidden."""

    encoder: VisionTransformer
    predictor: VisionTransformerPredictor | None
    target_encoder: VisionTransformer
    cfg: Config  # mask defaults, loss and data statistics
    label: str  # shown on the page: the checkpoint, or "RANDOM INIT ..."
    random_init: bool
    encoder_only: str | None = None  # the page's sentence on why nothing predicted is shown
    normalisation: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # a foreign file's, else cfg's

    @property
    def img_size(self) -> tuple[int, int]:
        gh, gw = self.encoder.grid
        return gh * self.encoder.patch_size, gw * self.encoder.patch_size

    @property
    def grid(self) -> tuple[int, int]:
        return self.encoder.grid

    @property
    def in_chans(self) -> int:
        return self.encoder.in_chans

    @property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return self.normalisation or mean_std_of(self.cfg)


def mean_std_of(cfg: Config) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normalisation a recipe trains with (Fashion-MNIST's or ImageNet's)."""
    if cfg.data.dataset == "fashion-mnist":
        return fashion_mnist.MEAN, fashion_mnist.STD
    return IMAGENET_MEAN, IMAGENET_STD


def predictor_from_state(state: dict[str, torch.Tensor], *, num_heads: int) -> VisionTransformerPredictor:
    """Build a predictor whose shape matches `state` and load it (strict)."""
    state = strip_prefix(state)
    if "predictor_embed.weight" not in state:
        raise ValueError("state dict has no predictor_embed.weight: not an I-JEPA predictor")
    pred_dim, embed_dim = state["predictor_embed.weight"].shape
    depth = 1 + max((int(k.split(".")[1]) for k in state if k.startswith("predictor_blocks.")), default=-1)
    n = state["predictor_pos_embed"].shape[1]
    mlp_ratio = state["predictor_blocks.0.mlp.fc1.weight"].shape[0] / pred_dim if depth else 4.0
    pred = VisionTransformerPredictor(
        num_patches=n, embed_dim=embed_dim, predictor_embed_dim=pred_dim,
        depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
    )
    pred.load_state_dict(state, strict=True)
    return pred


def _frozen(m: nn.Module) -> nn.Module:
    return m.eval().requires_grad_(False)


def load_explore_model(path: str | Path, *, num_heads: int | None = None) -> ExploreModel:
    """All three networks of a run dir, our checkpoint or an official I-JEPA checkpoint; the one
    encoder of a Hugging Face or timm I-JEPA model or of an encoder state dict (encoder-only)."""
    file, fmt, ckpt = open_checkpoint(path)
    if not all(k in ckpt for k in PARTS):
        return encoder_only_model(file, fmt, ckpt, num_heads)
    cfg, heads = Config(), None  # official checkpoints: official mask defaults, ImageNet statistics
    if isinstance(ckpt.get("config"), dict):
        cfg = from_dict(ckpt["config"])
        heads = ARCHS[cfg.meta.model_name].num_heads
    enc = encoder_from_state(ckpt["encoder"], num_heads=num_heads, recorded_heads=heads)
    target = encoder_from_state(ckpt["target_encoder"], num_heads=num_heads, recorded_heads=heads)
    pred = predictor_from_state(ckpt["predictor"], num_heads=enc.num_heads)
    cfg.mask.patch_size = enc.patch_size
    name = file.parent.name if file.name == "checkpoint.pt" else file.stem
    when = next((f", {k} {ckpt[k]}" for k in ("step", "epoch") if k in ckpt), "")
    return ExploreModel(_frozen(enc), _frozen(pred), _frozen(target), cfg, f"checkpoint {name}{when}", False)


FORMAT_NAMES = {"hf": "Hugging Face IJepa model", "timm": "timm I-JEPA ViT"}
PUBLIC = "the public Hugging Face and timm I-JEPA weights are the official checkpoints' context encoder"


def encoder_only_model(file: Path, fmt: str, ckpt: dict, num_heads: int | None) -> ExploreModel:
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
    model = ExploreModel(enc, None, enc, cfg, f"{kind} {name} (encoder only)", False, normalisation=stats)
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


def random_explore_model(cfg: Config) -> ExploreModel:
    """The networks `ijepa pretrain` would start from under `cfg`, seeded by meta.seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.meta.seed)
        enc = encoder_from_config(cfg)  # the trainer's own builders: init and patch_embed_std included
        pred = predictor_from_config(cfg, enc)
    target = copy.deepcopy(enc)
    label = (f"RANDOM INIT (untrained) {cfg.meta.model_name} depth {enc.depth}, "
             f"patch {enc.patch_size}, {cfg.data.crop_size}px, seed {cfg.meta.seed}")
    return ExploreModel(_frozen(enc), _frozen(pred), _frozen(target), cfg, label, True)
