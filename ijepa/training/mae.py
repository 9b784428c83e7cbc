"""The MAE training objective, as a method module of the shared pretraining loop.

Same contract as `IJEPA` (step.py): the loop hands it images and the collator's two mask
lists, here ([kept], [masked]) from `RandomMaskCollator`. The encoder is the same
`VisionTransformer` as I-JEPA's and sees only the kept patches; the decoder reconstructs the
per-patch normalised pixels of the masked ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ijepa.masks.apply import apply_masks
from ijepa.models.mae import MAEDecoder, normalized_pixels
from ijepa.training.config import Config
from ijepa.training.diagnostics import batch_std
from ijepa.training.step import encoder_from_config


class MAE(nn.Module):
    """Encoder + decoder, both trained; no target network and no EMA.

    The checkpoint stores the encoder under `target_encoder` as well as `encoder` (torch.save
    writes shared storage once), so `ijepa.load_encoder` and every eval read MAE runs exactly
    like I-JEPA runs.
    """

    checkpoint_keys = ("encoder", "decoder", "target_encoder")

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.encoder = encoder_from_config(cfg)
        self.decoder = MAEDecoder(
            grid=self.encoder.grid, patch_size=cfg.mask.patch_size, in_chans=cfg.meta.in_chans,
            embed_dim=self.encoder.embed_dim, decoder_embed_dim=cfg.meta.dec_emb_dim, depth=cfg.meta.dec_depth,
            mlp_ratio=self.encoder.mlp_ratio,
        )
        self.norm_pix_loss = cfg.meta.norm_pix_loss

    @property
    def target_encoder(self) -> nn.Module:
        """The encoder itself: MAE has no separate target network."""
        return self.encoder

    def trainable(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "decoder": self.decoder}

    def forward(
        self, imgs: torch.Tensor, masks_enc: list[torch.Tensor], masks_pred: list[torch.Tensor],
        *, encoder: nn.Module | None = None, decoder: nn.Module | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean squared error on the masked patches' normalised pixels, and detached stats.

        `pooled` (for the online probe and the collapse check) is the mean over the visible
        tokens: free, unlike a second full-image forward, but noisier than I-JEPA's.
        """
        encoder = self.encoder if encoder is None else encoder  # a compiled module has no truth value
        decoder = self.decoder if decoder is None else decoder
        (keep,), (masked,) = masks_enc, masks_pred
        z = encoder(imgs, [keep])
        pred = decoder(z, keep, masked)
        with torch.no_grad():
            target = normalized_pixels(imgs.float(), self.decoder.patch_size, standardise=self.norm_pix_loss)
            target = apply_masks(target, [masked])
        loss = F.mse_loss(pred.float(), target)
        pooled = z.detach().mean(1)
        return loss, {"target_std": batch_std(pooled), "pred_std": batch_std(pred.detach()), "pooled": pooled}

    def after_step(self, momentum: float) -> None:
        """No target network to update."""

    def eval_encoder(self) -> nn.Module:
        return self.encoder
