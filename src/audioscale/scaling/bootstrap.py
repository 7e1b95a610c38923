"""Nonparametric bootstrap over runs, with percentile intervals.

Method: resample the runs (rows) with replacement, ``n_resamples`` times (default 1000,
seeded with ``numpy.random.default_rng(seed)``), recompute the statistic on every
resample, and report the percentile interval: the (1 − level)/2 and (1 + level)/2
quantiles of the resampled values (Efron & Tibshirani, "An Introduction to the
Bootstrap", 1993, ch. 13). Resamples on which the statistic is undefined (a fit that
fails, a correlation of constant values) are dropped and counted in ``n_failed``; when
more than half fail no interval is reported, because the remaining ones would be a
biased selection.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

METHOD = "percentile bootstrap over runs (Efron & Tibshirani 1993, ch. 13)"


def resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n) integer indices drawn with replacement; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_resamples, n))


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile interval of the finite entries of ``samples`` (along axis 0).

    Returns None when fewer than half of the entries are finite.
    """
    samples = np.asarray(samples, dtype=float)
    finite = np.isfinite(samples)
    if samples.size == 0 or finite.sum() < max(2, samples.shape[0] / 2):
        return None
    alpha = (1.0 - level) / 2.0
    lo, hi = np.nanquantile(np.where(finite, samples, np.nan), [alpha, 1 - alpha], axis=0)
    return float(lo), float(hi)


def summarise(value: float, samples: np.ndarray, level: float = 0.95, n: int | None = None) -> dict:
    """A JSON-ready estimate: point value, percentile CI, resample counts and the method."""
    samples = np.asarray(samples, dtype=float)
    ci = percentile_ci(samples, level)
    out = {
        "value": _num(value),
        "ci": [ci[0], ci[1]] if ci is not None else None,
        "level": level,
        "n_resamples": int(samples.shape[0]),
        "n_failed": int((~np.isfinite(samples)).sum()),
        "method": "percentile bootstrap",
    }
    if n is not None:
        out["n"] = int(n)
    return out


def bootstrap(
    stat: Callable[[np.ndarray], float | np.ndarray],
    n: int,
    n_resamples: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Evaluate ``stat(idx)`` for each resample of run indices; failures become NaN.

    ``stat`` may return a scalar or a fixed-length vector; the result has shape
    (n_resamples,) or (n_resamples, k).
    """
    idx = resample_indices(n, n_resamples, seed)
    out = []
    width = None
    for row in idx:
        try:
            v = np.atleast_1d(np.asarray(stat(row), dtype=float))
        except (ValueError, FloatingPointError, np.linalg.LinAlgError, ZeroDivisionError):
            v = None
        if v is not None and width is None:
            width = v.size
        out.append(v)
    width = width or 1
    arr = np.full((n_resamples, width), np.nan)
    for i, v in enumerate(out):
        if v is not None and v.size == width:
            arr[i] = v
    return arr[:, 0] if width == 1 else arr


def _num(x: float) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None
