"""Torch-free numeric helpers at the bottom of the layering: any stage may import them.

``loglog_line`` is the one least-squares line of the package, used for every log-log
power law (``train.tune`` fits lr against width, ``scaling.powerlaw`` fits y = a·x^b and
its bootstrap resamples). Its two methods give the same line up to rounding; each call
site keeps the one it was written with, so its numbers stay the same to the last bit.
"""

from __future__ import annotations

import math
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
      is NaN where Σ(x−x̄)² ≤ ``SXX_MIN``. Sums are numpy's (pairwise); with
      ``sequential=True`` (1-D inputs) the line is computed as a plain Python loop
      computes it, with the builtin ``sum`` and float arithmetic, which is not numpy's:
      ``sum`` adds floats with compensation from Python 3.12 on, and ``x ** 2`` is libm's
      ``pow``. That keeps ``train.tune``'s fit equal to its loop on every Python.
    - ``lstsq``: ``numpy.polyfit(lx, ly, 1)`` (a scaled least-squares solve) for 1-D inputs.
    """
    lx, ly = np.asarray(lx, float), np.asarray(ly, float)
    if method == "lstsq":
        slope, intercept = np.polyfit(lx, ly, 1)
        return intercept, slope
    if sequential:
        return _python_line(lx.tolist(), ly.tolist())
    n = lx.shape[-1]
    mx, my = lx.sum(axis=-1, keepdims=True) / n, ly.sum(axis=-1, keepdims=True) / n
    sxx = ((lx - mx) ** 2).sum(axis=-1)
    sxy = ((lx - mx) * (ly - my)).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(sxx > SXX_MIN, sxy / np.where(sxx > 0, sxx, 1.0), np.nan)
    return my[..., 0] - slope * mx[..., 0], slope


def _python_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """``loglog_line(..., sequential=True)``: the moments line in Python floats, the
    builtin ``sum`` adding them (its own way on each Python version)."""
    if not all(isinstance(v, float) for v in (*xs, *ys)):
        raise ValueError("sequential=True takes 1-D inputs")
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx if sxx > SXX_MIN else math.nan
    return my - slope * mx, slope
