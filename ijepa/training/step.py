"""The I-JEPA training objective: what one step computes, apart from the loop around it."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ijepa.masks.apply import apply_masks, repeat_interleave_batch
from ijepa.models.registry import create_encoder, create_predictor
from ijepa.training.config import Config
from ijepa.training.diagnostics import batch_std
from ijepa.training.ema import ema_update


class IJEPA(nn.Module):
    """Context encoder + predictor (trained) and an EMA target encoder (not trained)."""

    checkpoint_keys = ("encoder", "predictor", "target_encoder")

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.encoder = create_encoder(
            cfg.meta.model_name, img_size=cfg.data.crop_size, patch_size=cfg.mask.patch_size,
            in_chans=cfg.meta.in_chans, depth=cfg.meta.depth or None,
        )
        self.predictor = create_predictor(self.encoder, embed_dim=cfg.meta.pred_emb_dim, depth=cfg.meta.pred_depth)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.loss_fn = F.smooth_l1_loss if cfg.meta.loss == "smooth_l1" else F.mse_loss

    def trainable(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "predictor": self.predictor}

    def forward(
        self, imgs: torch.Tensor, masks_enc: list[torch.Tensor], masks_pred: list[torch.Tensor],
        *, encoder: nn.Module | None = None, predictor: nn.Module | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss and detached statistics; `encoder`/`predictor` may be their DDP wrappers."""
        encoder, predictor = encoder or self.encoder, predictor or self.predictor
        with torch.no_grad():
            h = self.target_encoder(imgs)
            pooled = h.mean(1)
            h = F.layer_norm(h, (h.size(-1),))
            h = apply_masks(h, masks_pred)
            h = repeat_interleave_batch(h, len(imgs), repeat=len(masks_enc))
        z = predictor(encoder(imgs, masks_enc), masks_enc, masks_pred)
        loss = self.loss_fn(z.float(), h.float())
        stats = {"target_std": batch_std(pooled), "pred_std": batch_std(z.detach())}
        return loss, {**stats, "pooled": pooled.detach()}

    def after_step(self, momentum: float) -> None:
        ema_update(self.target_encoder, self.encoder, momentum)

    def eval_encoder(self) -> nn.Module:
        """The encoder that evals score (the target encoder, as in the paper)."""
        return self.target_encoder
