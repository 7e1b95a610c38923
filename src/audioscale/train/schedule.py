"""Learning-rate schedules: linear warm-up, then cosine decay or warmup–stable–decay (WSD).

``lr_at(step)`` for the update with 0-based index ``step`` of ``total`` updates; ``lo`` is
``min_lr_frac * peak``.

- Warm-up, both schedules: ``step < warmup`` gives ``peak * (step + 1) / warmup`` (the
  first update already moves, the last warm-up update reaches ``peak``).
- ``cosine`` (``cooldown is None``): ``lo + (peak - lo) * (1 + cos(pi * p)) / 2`` with
  ``p = (step - warmup) / max(1, total - warmup - 1)`` running from 0 to 1, so the final
  update uses exactly ``lo``. The MAE recipe (He et al. 2022, "Masked Autoencoders Are
  Scalable Vision Learners"; cosine decay from Loshchilov & Hutter 2017, SGDR).
- ``wsd`` (``cooldown`` an int): ``peak`` until the decay start ``total - cooldown``,
  then over the last ``cooldown`` updates ``lo + (peak - lo) * (1 - g(q))`` with
  ``q = (step - start + 1) / cooldown`` in (0, 1] and ``g(q) = q`` (``linear``) or
  ``sqrt(q)`` (``1-sqrt``), so the final update uses exactly ``lo``. ``cooldown = 0``
  never decays: the constant-lr trunk that WSD branches share. Hägele et al. 2024
  ("Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations", arXiv
  2405.18392) find a 10–20 % cooldown of the (1 - sqrt) shape matching a cosine run of
  the same length; MiniCPM (Hu et al. 2024, arXiv 2404.06395) introduced the schedule.

Because the WSD lr before the decay start does not depend on ``total``, a WSD run of any
budget equals, update for update, a constant-lr trunk up to its decay start followed by
its own cooldown (``train.trunk``). Each schedule is a pure function of the step, so a
resumed run needs no scheduler state beyond the step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SHAPES = ("linear", "1-sqrt")


@dataclass(frozen=True)
class Schedule:
    peak: float
    warmup: int
    total: int
    min_lr_frac: float = 0.0
    cooldown: int | None = None  # None: cosine; an int: WSD's decay length (0: no decay)
    shape: str = "1-sqrt"  # WSD's decay shape (SHAPES)

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"cooldown shape {self.shape!r} is not one of {SHAPES}")

    @property
    def decay_start(self) -> int:
        """The first update whose lr is below ``peak`` after warm-up (WSD)."""
        return self.total if self.cooldown is None else self.total - self.cooldown

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.peak * (step + 1) / self.warmup
        lo = self.peak * self.min_lr_frac
        if self.cooldown is None:
            p = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup - 1))
            return lo + (self.peak - lo) * 0.5 * (1.0 + math.cos(math.pi * p))
        if step < self.decay_start:
            return self.peak
        q = min(1.0, (step - self.decay_start + 1) / self.cooldown)
        return lo + (self.peak - lo) * (1.0 - (q if self.shape == "linear" else math.sqrt(q)))


def cooldown_steps(total: int, fraction: float) -> int:
    """WSD's decay length for a run of ``total`` updates: ``round(fraction * total)``, at
    least 1 update and at most ``total``."""
    return min(total, max(1, round(fraction * total)))
