"""The three I-JEPA networks of one checkpoint (or of a fresh random init), for inspection.

A checkpoint written by our trainer (keys `encoder`, `predictor`, `target_encoder`,
`config`) or an official one (same three keys, `module.` prefixes, no config) is read; the
shapes come off the weights, so no config is needed, but ours supplies the heads, the mask
settings it trained with, its loss and its data statistics.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ijepa.data import fashion_mnist
from ijepa.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ijepa.models import interop
from ijepa.models.checkpoint import checkpoint_file, encoder_from_state, read_checkpoint
from ijepa.models.predictor import VisionTransformerPredictor
from ijepa.models.registry import ARCHS
from ijepa.models.vit import VisionTransformer
from ijepa.training.checkpointing import strip_prefix
from ijepa.training.config import Config, from_dict
from ijepa.training.step import encoder_from_config, predictor_from_config

PARTS = ("encoder", "predictor", "target_encoder")


@dataclass
class ExploreModel:
    """Context encoder, predictor and target encoder, plus what the page needs to know."""

    encoder: VisionTransformer
    predictor: VisionTransformerPredictor
    target_encoder: VisionTransformer
    cfg: Config  # mask defaults, loss and data statistics
    label: str  # shown on the page: the checkpoint, or "RANDOM INIT ..."
    random_init: bool

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
        return mean_std_of(self.cfg)


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


def load_explore_model(path: str | Path) -> ExploreModel:
    """All three networks of a run dir, our checkpoint or an official I-JEPA checkpoint."""
    file = checkpoint_file(path)
    fmt = interop.detect_format(file)
    if fmt != "torch":
        raise ValueError(f"{file}: a {fmt} model holds one encoder and no predictor; explore needs encoder, "
                         "predictor and target_encoder (a run dir or an official I-JEPA checkpoint)")
    ckpt = read_checkpoint(file)
    missing = [k for k in PARTS if k not in ckpt]
    if missing:
        raise KeyError(f"{file}: no {', '.join(missing)} weights (keys: {', '.join(map(str, ckpt))}); "
                       "explore needs encoder, predictor and target_encoder")
    cfg, heads = Config(), None  # official checkpoints: official mask defaults, ImageNet statistics
    if isinstance(ckpt.get("config"), dict):
        cfg = from_dict(ckpt["config"])
        heads = ARCHS[cfg.meta.model_name].num_heads
    enc = encoder_from_state(ckpt["encoder"], num_heads=heads)
    target = encoder_from_state(ckpt["target_encoder"], num_heads=heads)
    pred = predictor_from_state(ckpt["predictor"], num_heads=enc.num_heads)
    cfg.mask.patch_size = enc.patch_size
    name = file.parent.name if file.name == "checkpoint.pt" else file.stem
    when = next((f", {k} {ckpt[k]}" for k in ("step", "epoch") if k in ckpt), "")
    return ExploreModel(_frozen(enc), _frozen(pred), _frozen(target), cfg, f"checkpoint {name}{when}", False)


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
