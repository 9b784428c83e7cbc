"""Warm-up + cosine, the one lr schedule: pretraining's, the eval heads' and the decoder's.

A pure function of the step, free of torch: resuming needs no scheduler state, and the
evals' torch-free spec module (`ijepa.evals.core.config`) can use it.
"""

from __future__ import annotations

import math


def warmup_cosine(step: int, *, total: int, warmup: int = 0, start: float = 0.0, ref: float = 1.0, final: float = 0.0) -> float:
    """The value after `step` steps: linear from `start` to `ref` over `warmup` steps, then half
    a cosine from `ref` to `final` at `total`.

    Bit for bit the official I-JEPA `WarmupCosineSchedule` after `step` calls of its `step()`,
    past `total` too (its cosine climbs back there; only a pretraining run with
    `ipe_scale` < 1 gets that far).
    """
    if step < warmup:
        return start + step / warmup * (ref - start)
    progress = (step - warmup) / max(1, total - warmup)
    return max(final, final + (ref - final) * 0.5 * (1 + math.cos(math.pi * progress)))


def peak_held(step: int, warmup: int) -> int:
    """The `warmup_cosine` step of iteration `step` (0-based) in the eval heads and the decoder:
    a warm-up iteration counts itself, so the last one reaches the peak, and the cosine starts
    from the peak again at the next iteration."""
    return step + 1 if step < warmup else step
