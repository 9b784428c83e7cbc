"""Per-iteration schedules of the official trainer, as pure functions of the step.

Pure functions (not stateful iterators as in the official code) make resuming trivial:
the value at step t depends on t alone.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ijepa.schedule import warmup_cosine
from ijepa.training.config import OptimizationConfig


@dataclass(frozen=True)
class Schedules:
    total_steps: int  # ipe_scale * epochs * iterations per epoch, as the official T_max
    warmup_steps: int
    start_lr: float
    lr: float
    final_lr: float
    weight_decay: float
    final_weight_decay: float
    ema: tuple[float, float]

    def lr_at(self, step: int) -> float:
        """Linear warm-up from start_lr, then cosine to final_lr.

        Step t (0-based) gets the official scheduler's value after its (t + 1)-th `step()` call.
        """
        return warmup_cosine(step + 1, total=self.total_steps, warmup=self.warmup_steps,
                             start=self.start_lr, ref=self.lr, final=self.final_lr)

    def wd_at(self, step: int) -> float:
        """Cosine increase from weight_decay to final_weight_decay (official: progress (t + 1) / T)."""
        progress = min(1.0, (step + 1) / max(1, self.total_steps))
        w0, w1 = self.weight_decay, self.final_weight_decay
        return w1 + (w0 - w1) * 0.5 * (1 + math.cos(math.pi * progress))

    def momentum_at(self, step: int) -> float:
        """Linear EMA momentum from ema[0] to ema[1]."""
        m0, m1 = self.ema
        return min(m1, m0 + step * (m1 - m0) / max(1, self.total_steps))


def scale_to_steps(o: OptimizationConfig, steps: int, ipe: int) -> OptimizationConfig:
    """The schedule over exactly `steps` optimizer steps, its shape kept: the same warm-up
    fraction, then cosine lr, EMA and weight-decay ramps that end at the last step.

    Whole epochs that cover the steps, the schedule squeezed into them by `ipe_scale` (as
    `ijepa.bench.flops.budget_config`); each value raised by ulps where the trainer's float
    product (`schedules_for`) would land just short and end the schedule a step early.
    """
    epochs = math.ceil(steps / ipe)
    scale = steps / (epochs * ipe)
    while int(scale * epochs * ipe) < steps:
        scale = math.nextafter(scale, math.inf)
    warmup_steps = max(1, round(steps * min(1.0, o.warmup / (o.ipe_scale * o.epochs))))
    warmup = warmup_steps / ipe
    while int(warmup * ipe) < warmup_steps:
        warmup = math.nextafter(warmup, math.inf)
    return dataclasses.replace(o, epochs=float(epochs), ipe_scale=scale, warmup=warmup, max_steps=steps)
