"""Torch-free numeric helpers at the bottom of the layering: any stage may import them.

``loglog_line`` is the one least-squares line of the package, used for every log-log
power law (``train.tune`` fits lr against width, ``scaling.powerlaw`` fits y = a·x^b and
its bootstrap resamples). Its two methods give the same line up to rounding; each call
site keeps the one it was written with, so its numbers stay the same to the last bit.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

SXX_MIN = 1e-12  # below this spread of x the moments slope is NaN (x does not vary)


def loglog_line(
    lx: np.ndarray,
    ly: np.ndarray,
    method: Literal["moments", "lstsq"] = "moments",
    sequential: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares line ``ly ≈ intercept + slope · lx``; returns (intercept, slope).

    In a log-log power law y = a·x^b, lx = log x, ly = log y, intercept = log a, slope = b.

    - ``moments``: slope = Σ(x−x̄)(y−ȳ) / Σ(x−x̄)², intercept = ȳ − slope·x̄, along the
      last axis, so (R, n) inputs give R lines at once (bootstrap resamples); the slope
      is NaN where Σ(x−x̄)² ≤ ``SXX_MIN``. Sums are numpy's (pairwise), or left to right
      as a plain loop adds with ``sequential=True`` (the two differ in the last bits from
      8 points on).
    - ``lstsq``: ``numpy.polyfit(lx, ly, 1)`` (a scaled least-squares solve) for 1-D inputs.
    """
    lx, ly = np.asarray(lx, float), np.asarray(ly, float)
    if method == "lstsq":
        slope, intercept = np.polyfit(lx, ly, 1)
        return intercept, slope

    def total(a: np.ndarray, keepdims: bool = False) -> np.ndarray:
        if sequential:
            return np.cumsum(a, axis=-1)[..., -1:] if keepdims else np.cumsum(a, axis=-1)[..., -1]
        return a.sum(axis=-1, keepdims=keepdims)

    n = lx.shape[-1]
    mx, my = total(lx, True) / n, total(ly, True) / n
    sxx = total((lx - mx) ** 2)
    sxy = total((lx - mx) * (ly - my))
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(sxx > SXX_MIN, sxy / np.where(sxx > 0, sxx, 1.0), np.nan)
    return my[..., 0] - slope * mx[..., 0], slope
