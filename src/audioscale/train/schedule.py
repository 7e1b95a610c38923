"""Learning-rate schedule: linear warm-up, then cosine decay to ``min_lr_frac * peak``.

``lr_at(step)`` for the update with 0-based index ``step`` of ``total`` updates:

- ``step < warmup``: ``peak * (step + 1) / warmup`` (the first update already moves, the
  last warm-up update reaches ``peak``);
- after: ``min + (peak - min) * (1 + cos(pi * p)) / 2`` with
  ``p = (step - warmup) / max(1, total - warmup - 1)`` running from 0 to 1, so the final
  update uses exactly ``min_lr_frac * peak``.

This is the MAE recipe (He et al. 2022, "Masked Autoencoders Are Scalable Vision
Learners"; cosine decay from Loshchilov & Hutter 2017, SGDR). The schedule is a pure
function of the step, so a resumed run needs no scheduler state beyond the step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    peak: float
    warmup: int
    total: int
    min_lr_frac: float = 0.0

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.peak * (step + 1) / self.warmup
        lo = self.peak * self.min_lr_frac
        p = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup - 1))
        return lo + (self.peak - lo) * 0.5 * (1.0 + math.cos(math.pi * p))
