"""The I-JEPA training objective: what one step computes, apart from the loop around it."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ijepa.masks.apply import apply_masks, repeat_interleave_batch
from ijepa.models.registry import create_encoder, create_predictor
from ijepa.models.vit import VisionTransformer
from ijepa.training.config import Config
from ijepa.training.diagnostics import batch_std
from ijepa.training.ema import ema_update
from ijepa.typedconfig import ConfigError


def encoder_from_config(cfg: Config) -> VisionTransformer:
    """The encoder every method trains, with the recipe's patch-embedding init if it sets one."""
    return create_encoder(
        cfg.meta.model_name, img_size=cfg.data.crop_size, patch_size=cfg.mask.patch_size,
        in_chans=cfg.meta.in_chans, depth=cfg.meta.depth or None, init=cfg.meta.init,
        patch_embed_std=cfg.meta.patch_embed_std,
    )


def predictor_from_config(cfg: Config, encoder: VisionTransformer) -> nn.Module:
    """The predictor every I-JEPA run trains (and the explorer shows at random init)."""
    return create_predictor(encoder, embed_dim=cfg.meta.pred_emb_dim, depth=cfg.meta.pred_depth, init=cfg.meta.init)


def variance_covariance(x: torch.Tensor, eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """VICReg's hinge on each dimension's batch std and its off-diagonal covariance penalty.

    C-JEPA (Mo & Tong, NeurIPS 2024) adds both to I-JEPA on the context features to keep
    them from collapsing; off by default (weights 0), the official objective is unchanged.
    """
    x = x - x.mean(0)
    std = torch.sqrt(x.var(0) + eps)
    var = F.relu(1.0 - std).mean()
    c = (x.T @ x) / (len(x) - 1)
    off = c - torch.diag(torch.diag(c))
    return var, off.pow(2).sum() / x.size(1)


def sigreg(x: torch.Tensor, *, slices: int = 256, knots: int = 17, t_max: float = 3.0) -> torch.Tensor:
    """LeJEPA's SIGReg (Balestriero & LeCun, 2025): how far `x` [N, D] is from an isotropic
    Gaussian, as the Epps-Pulley statistic of its projections on `slices` random unit directions
    (fresh each call), averaged; N * integral |ecf(t) - exp(-t^2/2)|^2 exp(-t^2/2) dt on [0, t_max]."""
    dirs = torch.randn(x.size(1), slices, device=x.device, dtype=x.dtype)
    proj = x @ (dirs / dirs.norm(dim=0, keepdim=True))
    t = torch.linspace(0, t_max, knots, device=x.device, dtype=x.dtype)
    tx = proj.unsqueeze(-1) * t  # [N, slices, knots]
    gauss = torch.exp(-t.square() / 2)
    err = (tx.cos().mean(0) - gauss).square() + tx.sin().mean(0).square()
    return torch.trapezoid(err * gauss, t, dim=-1).mean() * len(x)


class IJEPA(nn.Module):
    """Context encoder + predictor (trained) and an EMA target encoder (not trained)."""

    checkpoint_keys = ("encoder", "predictor", "target_encoder")

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.encoder = encoder_from_config(cfg)
        self.predictor = predictor_from_config(cfg, self.encoder)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.loss_fn = F.smooth_l1_loss if cfg.meta.loss == "smooth_l1" else F.mse_loss
        self.var_weight, self.cov_weight = cfg.meta.var_weight, cfg.meta.cov_weight
        self.sigreg_weight = cfg.meta.sigreg_weight
        self.target_layers = cfg.meta.target_layers
        if self.target_layers > len(self.encoder.blocks):
            raise ConfigError(f"meta.target_layers: {self.target_layers} exceeds the encoder's {len(self.encoder.blocks)} blocks")

    def trainable(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "predictor": self.predictor}

    def forward(
        self, imgs: torch.Tensor, masks_enc: list[torch.Tensor], masks_pred: list[torch.Tensor],
        *, encoder: nn.Module | None = None, predictor: nn.Module | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss and detached statistics; `encoder`/`predictor` may be their DDP wrappers."""
        encoder = self.encoder if encoder is None else encoder  # a compiled module has no truth value
        predictor = self.predictor if predictor is None else predictor
        with torch.no_grad():
            h = self.targets(imgs)
            pooled = h.mean(1)
            h = F.layer_norm(h, (h.size(-1),))
            h = apply_masks(h, masks_pred)
            h = repeat_interleave_batch(h, len(imgs), repeat=len(masks_enc))
        ctx = encoder(imgs, masks_enc)
        z = predictor(ctx, masks_enc, masks_pred)
        loss = self.loss_fn(z.float(), h.float())
        if (self.var_weight or self.cov_weight) and len(imgs) > 1:  # a batch of 1 has no spread
            var, cov = variance_covariance(ctx.mean(1).float())
            loss = loss + self.var_weight * var + self.cov_weight * cov
        if self.sigreg_weight and len(imgs) > 1:
            loss = loss + self.sigreg_weight * sigreg(ctx.mean(1).float())
        stats = {"target_std": batch_std(pooled), "pred_std": batch_std(z.detach())}
        return loss, {**stats, "pooled": pooled.detach()}

    def targets(self, imgs: torch.Tensor) -> torch.Tensor:
        """Target tokens: the official last-block output, or (target_layers > 1) the mean of the
        last K blocks, each layer-normed first, as data2vec builds its richer targets."""
        if self.target_layers == 1:
            return self.target_encoder(imgs)
        outs = self.target_encoder.forward_intermediates(imgs, self.target_layers, norm=False)
        return torch.stack([F.layer_norm(o, (o.size(-1),)) for o in outs]).mean(0)

    def after_step(self, momentum: float) -> None:
        ema_update(self.target_encoder, self.encoder, momentum)

    def eval_encoder(self) -> nn.Module:
        """The encoder that evals score (the target encoder, as in the paper)."""
        return self.target_encoder
