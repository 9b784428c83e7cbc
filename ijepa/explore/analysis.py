"""What the page shows, computed: masks, per-patch prediction quality, PCA colours, neighbours.

Everything mirrors training (`ijepa.training.step.IJEPA.forward`): the same mask collator,
the same layer-normed target features and the same loss, on one image at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ijepa.masks import MultiBlockMaskCollator, apply_masks
from ijepa.training.config import MaskConfig
from ijepa.training.networks import Networks

MAX_TARGETS = 16


@dataclass(frozen=True)
class MaskSettings:
    """The multi-block collator knobs the page exposes (one context block, as in_1k configs)."""

    enc_mask_scale: tuple[float, float] = (0.85, 1.0)
    pred_mask_scale: tuple[float, float] = (0.15, 0.2)
    aspect_ratio: tuple[float, float] = (0.75, 1.5)
    npred: int = 4
    min_keep: int = 10
    allow_overlap: bool = False
    sampler: str = "official"  # the run's mask.sampler (not a page setting)

    @classmethod
    def from_config(cls, mask: MaskConfig) -> MaskSettings:
        return cls(tuple(mask.enc_mask_scale), tuple(mask.pred_mask_scale), tuple(mask.aspect_ratio),
                   mask.num_pred_masks, mask.min_keep, mask.allow_overlap, mask.sampler)

    def validate(self) -> MaskSettings:
        """Raise ValueError naming the setting that is out of range; return self."""
        for name in ("enc_mask_scale", "pred_mask_scale"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi <= 1:
                raise ValueError(f"{name}: expected 0 < min <= max <= 1, got ({lo}, {hi})")
        lo, hi = self.aspect_ratio
        if not 0 < lo <= hi <= 10:
            raise ValueError(f"aspect_ratio: expected 0 < min <= max <= 10, got ({lo}, {hi})")
        if not 1 <= self.npred <= MAX_TARGETS:
            raise ValueError(f"npred: expected 1..{MAX_TARGETS} target blocks, got {self.npred}")
        if self.min_keep < 0:
            raise ValueError(f"min_keep: expected >= 0, got {self.min_keep}")
        return self

    def collator(self, model: Networks) -> MultiBlockMaskCollator:
        return MultiBlockMaskCollator(
            input_size=model.img_size, patch_size=model.encoder.patch_size,
            enc_mask_scale=self.enc_mask_scale, pred_mask_scale=self.pred_mask_scale,
            aspect_ratio=self.aspect_ratio, nenc=1, npred=self.npred,
            min_keep=self.min_keep, allow_overlap=self.allow_overlap, sampler=self.sampler,
        )


@dataclass
class Analysis:
    """One image under one mask draw."""

    grid: tuple[int, int]
    context: torch.Tensor  # [Nc] patch indices the context encoder sees
    targets: list[torch.Tensor]  # npred x [Nt] patch indices to predict
    cos: torch.Tensor | None  # [npred, Nt] cosine(predictor output, layer-normed target feature)
    loss: float | None  # the training loss of this draw
    features: torch.Tensor  # [N, D] target-encoder patch features (for PCA and the decoder)
    predictions: torch.Tensor | None  # [npred, Nt, D] predictor outputs (for the decoder); None: encoder-only

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def context_fraction(self) -> float:
        return len(self.context) / self.num_patches

    @property
    def target_fraction(self) -> float:
        """Share of patches inside at least one target block (targets may overlap each other)."""
        return len(torch.unique(torch.cat(self.targets))) / self.num_patches

    @property
    def overlap(self) -> int:
        """Context patches that are also targets: none unless allowed or the collator relaxed."""
        return len(set(self.context.tolist()) & set(torch.cat(self.targets).tolist()))

    def heatmap(self) -> torch.Tensor:
        """[gh, gw] cosine per target patch (mean where target blocks overlap), NaN elsewhere."""
        total = torch.zeros(self.num_patches)
        count = torch.zeros(self.num_patches)
        for idx, c in zip(self.targets, self.cos, strict=True):
            total.index_add_(0, idx, c)
            count.index_add_(0, idx, torch.ones_like(c))
        heat = torch.where(count > 0, total / count.clamp(min=1), torch.nan)
        return heat.view(self.grid)


def context_explanation(settings: MaskSettings, model: Networks, draws: int = 200) -> str:
    """Why the context the encoder sees is much smaller than its block's scale says, with the
    context fraction measured over `draws` mask draws."""
    gh, gw = model.grid
    n = gh * gw
    if settings.sampler == "official":
        cap = (f"the official sampler keeps every block below the full grid, so the context block is at most "
               f"{gh - 1}x{gw - 1} = {(gh - 1) * (gw - 1)} of {n} patches")
    else:
        cap = f"the block may cover all {n} patches"
    cut = "then loses every patch of the" if not settings.allow_overlap else "keeps the patches of the (overlap allowed)"
    collator, g = settings.validate().collator(model), torch.Generator().manual_seed(0)
    fractions = [len(collator.sample_masks(1, g)[0][0][0]) / n for _ in range(draws)]
    return (f"The context block is drawn at {settings.enc_mask_scale[0]:g}-{settings.enc_mask_scale[1]:g} of the image, "
            f"but {cap}, and it {cut} {settings.npred} target blocks ({settings.pred_mask_scale[0]:g}-"
            f"{settings.pred_mask_scale[1]:g} of the image each): over {draws} draws the context averages "
            f"{100 * sum(fractions) / draws:.0f}% of the patches ({100 * min(fractions):.0f}-{100 * max(fractions):.0f}%).")


def sample_masks(settings: MaskSettings, model: Networks, seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(context indices [Nc], target indices npred x [Nt]) for one image, reproducible by seed."""
    g = torch.Generator().manual_seed(seed)
    masks_enc, masks_pred = settings.validate().collator(model).sample_masks(1, g)
    return masks_enc[0][0], [m[0] for m in masks_pred]


@torch.no_grad()
def analyse(model: Networks, x: torch.Tensor, context: torch.Tensor, targets: list[torch.Tensor]) -> Analysis:
    """Run the three networks on one normalised image x [1, C, H, W] as one training step would
    (an encoder-only model: its encoder alone, nothing predicted)."""
    device = x.device
    masks_enc = [context.unsqueeze(0).to(device)]
    masks_pred = [t.unsqueeze(0).to(device) for t in targets]
    h = model.target_encoder(x)
    if model.predictor is None:
        return Analysis(model.grid, context.cpu(), [t.cpu() for t in targets], None, None, h[0].float().cpu(), None)
    target = apply_masks(F.layer_norm(h, (h.size(-1),)), masks_pred)  # [npred, Nt, D]
    z = model.predictor(model.encoder(x, masks_enc), masks_enc, masks_pred)
    loss_fn = F.smooth_l1_loss if model.cfg.meta.loss == "smooth_l1" else F.mse_loss
    return Analysis(
        grid=model.grid, context=context.cpu(), targets=[t.cpu() for t in targets],
        cos=F.cosine_similarity(z.float(), target.float(), dim=-1).cpu(),
        loss=float(loss_fn(z.float(), target.float())), features=h[0].float().cpu(), predictions=z.float().cpu(),
    )


def pca_rgb(features: torch.Tensor, grid: tuple[int, int]) -> np.ndarray:
    """First three principal components of patch features as an RGB grid [gh, gw, 3] uint8.

    As in DINOv2's figures: each component min-max scaled to one colour channel; signs fixed
    (largest loading positive) so the colours do not flip between calls.
    """
    x = features.double() - features.double().mean(0, keepdim=True)
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    k = min(3, u.shape[1])
    proj = u[:, :k] * s[:k]
    signs = torch.sign(proj.gather(0, proj.abs().argmax(0, keepdim=True)))
    proj = proj * torch.where(signs == 0, 1.0, signs)
    lo, hi = proj.min(0).values, proj.max(0).values
    proj = (proj - lo) / (hi - lo).clamp(min=1e-12)
    rgb = torch.zeros(len(x), 3, dtype=torch.float64)
    rgb[:, :k] = proj
    return (rgb.view(*grid, 3).numpy() * 255).round().astype(np.uint8)


@torch.no_grad()
def pooled_features(model: Networks, x: torch.Tensor, *, batch_size: int = 32) -> torch.Tensor:
    """Average-pooled target-encoder output [B, D]: the feature the paper's evals use."""
    out = [model.target_encoder(x[i : i + batch_size]).mean(1) for i in range(0, len(x), batch_size)]
    return torch.cat(out).float().cpu()


def nearest(query: torch.Tensor, gallery: torch.Tensor, k: int, *, exclude: int | None = None) -> list[tuple[int, float]]:
    """Top-k (gallery row, cosine similarity) for a pooled feature, best first."""
    sims = F.cosine_similarity(gallery, query.unsqueeze(0), dim=-1)
    if exclude is not None:
        sims[exclude] = -torch.inf
    k = min(k, len(gallery) - (exclude is not None))
    top = torch.topk(sims, k) if k > 0 else None
    return [] if top is None else [(int(i), float(v)) for v, i in zip(top.values, top.indices, strict=True)]
