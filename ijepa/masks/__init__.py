"""Mask samplers (multi-block for I-JEPA, random for MAE) and the gather helper."""

from ijepa.masks.apply import apply_masks, repeat_interleave_batch
from ijepa.masks.multiblock import MultiBlockMaskCollator

__all__ = ["MultiBlockMaskCollator", "apply_masks", "repeat_interleave_batch"]
