"""The three I-JEPA networks of one checkpoint (or of a fresh random init), read back whole.

A checkpoint written by our trainer (keys `encoder`, `predictor`, `target_encoder`,
`config`) or an official one (same three keys, `module.` prefixes, no config): the shapes
come off the weights, so no config is needed, but ours supplies the heads, the mask settings
it trained with, its loss and its data statistics. The explorer shows them and the decoders
are trained on them; a file holding one encoder and no predictor is each one's own business.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ijepa.data import fashion_mnist
from ijepa.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ijepa.models.checkpoint import encoder_from_state, strip_prefix
from ijepa.models.predictor import VisionTransformerPredictor
from ijepa.models.registry import ARCHS
from ijepa.models.vit import VisionTransformer
from ijepa.training.config import Config, from_dict
from ijepa.training.step import encoder_from_config, predictor_from_config

PARTS = ("encoder", "predictor", "target_encoder")


@dataclass
class Networks:
    """Context encoder, predictor and target encoder, plus what their viewers need to know.

    Encoder-only (`predictor` None): `encoder` and `target_encoder` are the file's one encoder,
    and `encoder_only` says why the predictor's panels are hidden."""

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


def frozen(m: nn.Module) -> nn.Module:
    return m.eval().requires_grad_(False)


def networks_of(file: Path, ckpt: dict, *, num_heads: int | None = None) -> Networks | None:
    """All three networks of our or an official checkpoint (`ckpt`, read from `file` by
    `ijepa.models.checkpoint.open_checkpoint`); None where it lacks one of them."""
    if not all(k in ckpt for k in PARTS):
        return None
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
    return Networks(frozen(enc), frozen(pred), frozen(target), cfg, f"checkpoint {name}{when}", False)


def random_networks(cfg: Config) -> Networks:
    """The networks `ijepa pretrain` would start from under `cfg`, seeded by meta.seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.meta.seed)
        enc = encoder_from_config(cfg)  # the trainer's own builders: init and patch_embed_std included
        pred = predictor_from_config(cfg, enc)
    target = copy.deepcopy(enc)
    label = (f"RANDOM INIT (untrained) {cfg.meta.model_name} depth {enc.depth}, "
             f"patch {enc.patch_size}, {cfg.data.crop_size}px, seed {cfg.meta.seed}")
    return Networks(frozen(enc), frozen(pred), frozen(target), cfg, label, True)
