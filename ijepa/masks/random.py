"""Random patch masking of MAE as a DataLoader collate function.

Each image keeps a uniformly random subset of its patches, chosen as MAE does: draw one
noise value per patch and keep the patches with the smallest values (argsort of noise).
The outputs have the multi-block collator's layout, so the training loop is the same for
both methods: (batch, [kept indices [B, K]], [masked indices [B, N - K]]). Every image keeps
the same number of patches, so nothing is truncated.
"""

from __future__ import annotations

import torch

from ijepa.masks.multiblock import MultiBlockMaskCollator


class RandomMaskCollator(MultiBlockMaskCollator):
    """Reuses the multi-block collator's per-batch seeding (seed, rank, epoch, batch index),
    so masks do not depend on worker scheduling and a resumed run sees the same masks."""

    def __init__(
        self,
        input_size: int | tuple[int, int] = (224, 224),
        patch_size: int = 16,
        mask_ratio: float = 0.75,
        *,
        seed: int = 0,
        rank: int = 0,
    ) -> None:
        super().__init__(input_size, patch_size, seed=seed, rank=rank)
        n = self.height * self.width
        self.num_keep = int(n * (1 - mask_ratio))
        if not 0.0 <= mask_ratio < 1.0 or not 0 < self.num_keep < n:
            raise ValueError(f"mask_ratio={mask_ratio}: must leave between 1 and {n - 1} of {n} patches visible")
        self.mask_ratio = mask_ratio

    def sample_masks(self, batch_size: int, g: torch.Generator) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """([kept [B, K]], [masked [B, N - K]]), each row sorted (gathers read memory in order)."""
        noise = torch.rand(batch_size, self.height * self.width, generator=g)
        order = torch.argsort(noise, dim=1)
        keep = order[:, : self.num_keep].sort(dim=1).values
        masked = order[:, self.num_keep :].sort(dim=1).values
        return [keep], [masked]
