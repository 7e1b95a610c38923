"""Nonparametric bootstrap over runs, with percentile intervals.

Method: resample the runs (rows) with replacement, ``n_resamples`` times (default 1000,
seeded with ``numpy.random.default_rng(seed)``), recompute the statistic on every
resample, and report the percentile interval: the (1 − level)/2 and (1 + level)/2
quantiles of the resampled values (Efron & Tibshirani, "An Introduction to the
Bootstrap", 1993, ch. 13). Resamples on which the statistic is undefined (a fit that
fails, a correlation of constant values) are dropped and counted in ``n_failed``. The
survivors are a selection (the resamples a fit could not handle are usually the
extreme ones), so every summary reports ``failed_fraction`` = n_failed / n_resamples,
and above ``MAX_FAILED_FRACTION`` (20 %) no interval is given: ``ci`` is None,
``ci_status`` is "refused" and ``ci_reason`` says why. A caller may refuse an interval
for its own reason too (``refuse``), e.g. a compute-optimal allocation whose point
optimum lies on the search edge.

For a law fitted on a designed grid (the joint law L(N, D) over the study's sizes and
budgets) resampling the runs also resamples the design: a resample that misses a whole
size or budget cannot identify the law at all, and fails. There ``residual_resamples``
gives the fixed-design alternative, the residual bootstrap (Efron & Tibshirani 1993,
§9.5; Davison & Hinkley, "Bootstrap Methods and their Application", 1997, §6.2 and
Algorithm 6.4 for prediction): the runs stay where they were trained and only their
scatter about the fit is resampled.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from audioscale.utils import finite_or_none

METHOD = "percentile bootstrap over runs (Efron & Tibshirani 1993, ch. 13)"


def resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n) integer indices drawn with replacement; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_resamples, n))


MAX_FAILED_FRACTION = 0.2
RESIDUAL_METHOD = "residual bootstrap over the fixed design (Davison & Hinkley 1997, §6.2)"


def residual_resamples(
    fitted: np.ndarray, observed: np.ndarray, n_params: int, n_resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Responses for a residual bootstrap, and one fresh error per resample.

    The residuals e = observed − fitted are centred and inflated by sqrt(n / (n − p)),
    p = ``n_params`` (a fit of p parameters leaves residuals smaller than its errors;
    Davison & Hinkley 1997, eq. 6.9 without leverages). Resample r is fitted + n of them
    drawn with replacement, shape (n_resamples, n); the second array holds one more draw
    per resample, the error of a new observation (for prediction intervals). Both in the
    space the law was fitted in (log for the joint law). Deterministic for a seed.
    """
    fitted, observed = np.asarray(fitted, float), np.asarray(observed, float)
    e = observed - fitted
    n = e.size
    e = (e - e.mean()) * math.sqrt(n / max(n - n_params, 1))
    draws = e[np.random.default_rng(seed).integers(0, n, size=(n_resamples, n + 1))]
    return fitted + draws[:, :n], draws[:, n]


def failed_fraction(samples: np.ndarray) -> float:
    """Fraction of resamples (rows) whose statistic is not finite."""
    samples = np.asarray(samples, dtype=float)
    if samples.shape[0] == 0:
        return 1.0
    bad = ~np.isfinite(samples)
    if samples.ndim > 1:
        bad = bad.any(axis=tuple(range(1, samples.ndim)))
    return float(bad.mean())


def percentile_ci(
    samples: np.ndarray, level: float = 0.95, max_failed: float = MAX_FAILED_FRACTION
) -> tuple[float, float] | None:
    """Percentile interval of the finite entries of ``samples`` (along axis 0).

    Returns None when more than ``max_failed`` of the entries are not finite (or fewer
    than two are).
    """
    samples = np.asarray(samples, dtype=float)
    finite = np.isfinite(samples)
    if samples.size == 0 or finite.sum() < 2 or failed_fraction(samples) > max_failed:
        return None
    alpha = (1.0 - level) / 2.0
    lo, hi = np.nanquantile(np.where(finite, samples, np.nan), [alpha, 1 - alpha], axis=0)
    return float(lo), float(hi)


def summarise(
    value: float,
    samples: np.ndarray,
    level: float = 0.95,
    n: int | None = None,
    max_failed: float = MAX_FAILED_FRACTION,
) -> dict:
    """A JSON-ready estimate: point value, percentile CI, resample counts, the failed
    fraction, whether the interval was refused (and why), and the method."""
    samples = np.asarray(samples, dtype=float)
    n_res = int(samples.shape[0])
    n_failed = int((~np.isfinite(samples)).sum())
    frac = n_failed / n_res if n_res else 1.0
    ci = percentile_ci(samples, level, max_failed)
    out = {
        "value": finite_or_none(value),
        "ci": [ci[0], ci[1]] if ci is not None else None,
        "level": level,
        "n_resamples": n_res,
        "n_failed": n_failed,
        "failed_fraction": frac,
        "max_failed_fraction": max_failed,
        "ci_status": "ok",
        "method": "percentile bootstrap",
    }
    if ci is None:
        if n_res == 0:
            refuse(out, "no resamples")
        elif frac > max_failed:
            refuse(out, f"{frac:.0%} of {n_res} resamples failed (above {max_failed:.0%})")
        else:
            refuse(out, f"only {n_res - n_failed} of {n_res} resamples gave a value")
    if n is not None:
        out["n"] = int(n)
    return out


def refuse(estimate: dict, reason: str) -> dict:
    """Mark an estimate's interval as not available, with the reason (in place)."""
    estimate["ci"] = None
    estimate["ci_status"] = "refused"
    estimate["ci_reason"] = reason
    return estimate


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
