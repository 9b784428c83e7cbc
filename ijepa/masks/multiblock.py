"""Multi-block masking of I-JEPA as a DataLoader collate function.

Follows the official `MaskCollator`: block sizes are drawn once per batch, positions per
image; the context block loses every target block; all masks are truncated to the batch
minimum so they stack. Two samplers of block shapes and positions:
- `sampler="official"` (default) reproduces the official statistics: one uniform draw sets
  both a block's scale and its aspect ratio (perfectly correlated), every block is capped
  below the full grid (`h < H`, `w < W`) and its corner is drawn with an exclusive upper
  bound (`randint(0, H - h)`), so no block touches the last row or column (at 224/16 the
  context block is always the 13x13 at the top-left);
- `sampler="uniform"` (ours): scale and aspect ratio are two independent draws, a block may
  span the whole grid and touch the last row and column.
Both differ from the official code where it is fragile:
- every batch draws from its own generator seeded by (seed, rank, epoch, batch index), so
  masks do not depend on worker scheduling and a resumed run sees the same masks;
- it never hangs: where a constraint cannot be met (a block no larger than `min_keep`, a
  context left with too few patches) it is relaxed in a fixed order and counted in
  `num_relaxed`, where the official sampler loops forever (e.g. crop 32 with patch 16).
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import default_collate, get_worker_info

SAMPLERS = ("official", "uniform")


class MultiBlockMaskCollator:
    def __init__(
        self,
        input_size: int | tuple[int, int] = (224, 224),
        patch_size: int = 16,
        enc_mask_scale: tuple[float, float] = (0.85, 1.0),
        pred_mask_scale: tuple[float, float] = (0.15, 0.2),
        aspect_ratio: tuple[float, float] = (0.75, 1.5),
        nenc: int = 1,
        npred: int = 4,
        min_keep: int = 10,
        allow_overlap: bool = False,
        seed: int = 0,
        rank: int = 0,
        sampler: str = "official",
    ) -> None:
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler={sampler!r}: expected one of {', '.join(SAMPLERS)}")
        self.sampler = sampler
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        self.height, self.width = size[0] // patch_size, size[1] // patch_size
        if self.height < 1 or self.width < 1:
            raise ValueError(f"input_size {size} is smaller than one patch of {patch_size}")
        self.enc_mask_scale, self.pred_mask_scale = enc_mask_scale, pred_mask_scale
        self.aspect_ratio = aspect_ratio
        self.nenc, self.npred, self.min_keep = nenc, npred, min_keep
        self.allow_overlap = allow_overlap
        self.seed, self.rank = seed, rank
        self.num_relaxed = 0
        self.set_epoch(0)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Call before building each epoch's iterator (workers copy the collator then)."""
        self.epoch, self.start_batch, self._calls = epoch, start_batch, 0

    def _batch_index(self) -> int:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        # The DataLoader hands batch b to worker b % nw, in order: this recovers b.
        b = self.start_batch + self._calls * nw + wid
        self._calls += 1
        return b

    def _generator(self, batch_index: int) -> torch.Generator:
        key = (((self.seed * 1_000_003 + self.rank) * 1_000_003 + self.epoch) * 1_000_003) + batch_index
        return torch.Generator().manual_seed(key % (2**63))

    def _block_size(self, g: torch.Generator, scale: tuple[float, float], ar_range: tuple[float, float]) -> tuple[int, int]:
        """(h, w) of a block; the official sampler reuses one draw and caps below the grid."""
        if self.sampler == "official":
            r_scale = r_ar = torch.rand(1, generator=g).item()
            cap_h, cap_w = max(1, self.height - 1), max(1, self.width - 1)
        else:
            r_scale, r_ar = torch.rand(2, generator=g).tolist()
            cap_h, cap_w = self.height, self.width
        s = scale[0] + r_scale * (scale[1] - scale[0])
        max_keep = int(self.height * self.width * s)
        ar = ar_range[0] + r_ar * (ar_range[1] - ar_range[0])
        h = int(round(math.sqrt(max_keep * ar)))
        w = int(round(math.sqrt(max_keep / ar)))
        # At least one patch: an empty block is where the official sampler hangs.
        return max(1, min(h, cap_h)), max(1, min(w, cap_w))

    def _corner(self, g: torch.Generator, h: int, w: int) -> tuple[int, int]:
        """Top-left corner; the official exclusive bound never reaches the last row/column."""
        extra = 0 if self.sampler == "official" else 1
        top = int(torch.randint(0, max(1, self.height - h + extra), (1,), generator=g))
        left = int(torch.randint(0, max(1, self.width - w + extra), (1,), generator=g))
        return top, left

    def _block(self, g: torch.Generator, size: tuple[int, int], allowed: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Place one block; returns (kept indices, complement map of the block)."""
        h, w = size
        allowed = allowed or []
        need = self.min_keep
        if h * w <= need:  # the block can never hold more than min_keep patches
            need = h * w - 1
            self.num_relaxed += 1
        # Relax in a fixed order: 20 positions per level, then drop the last constraint;
        # with no constraint left any position holds h * w > need patches, so this ends.
        for n_constraints in range(len(allowed), -1, -1):
            for _ in range(20):
                top, left = self._corner(g, h, w)
                mask = torch.zeros(self.height, self.width, dtype=torch.bool)
                mask[top : top + h, left : left + w] = True
                for region in allowed[:n_constraints]:
                    mask &= region
                idx = torch.nonzero(mask.flatten()).squeeze(1)
                if len(idx) > need:
                    break
            else:
                continue
            break
        if n_constraints < len(allowed):
            self.num_relaxed += 1
        complement = torch.ones(self.height, self.width, dtype=torch.bool)
        complement[top : top + h, left : left + w] = False
        return idx, complement

    def sample_masks(self, batch_size: int, g: torch.Generator) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Draw (context masks, target masks): lists of [B, K] index tensors."""
        p_size = self._block_size(g, self.pred_mask_scale, self.aspect_ratio)
        e_size = self._block_size(g, self.enc_mask_scale, (1.0, 1.0))
        enc, pred = [], []
        for _ in range(batch_size):
            targets, complements = [], []
            for _ in range(self.npred):
                idx, comp = self._block(g, p_size)
                targets.append(idx)
                complements.append(comp)
            allowed = None if self.allow_overlap else complements
            enc.append([self._block(g, e_size, allowed)[0] for _ in range(self.nenc)])
            pred.append(targets)
        min_enc = min(len(m) for ms in enc for m in ms)
        min_pred = min(len(m) for ms in pred for m in ms)
        masks_enc = [torch.stack([ms[i][:min_enc] for ms in enc]) for i in range(self.nenc)]
        masks_pred = [torch.stack([ms[i][:min_pred] for ms in pred]) for i in range(self.npred)]
        return masks_enc, masks_pred

    def __call__(self, batch: list) -> tuple[object, list[torch.Tensor], list[torch.Tensor]]:
        g = self._generator(self._batch_index())
        masks_enc, masks_pred = self.sample_masks(len(batch), g)
        return default_collate(batch), masks_enc, masks_pred
