"""Correlations with bootstrap intervals, and partial rank correlation.

- Pearson r, Spearman ρ (Pearson r of average ranks) and Kendall τ-b (scipy), each
  with a percentile bootstrap 95% interval over runs (see ``bootstrap``; default 1000
  resamples, seeded) and scipy's two-sided p-value.
- Partial Spearman: ranks of x, y and every covariate; x-ranks and y-ranks are each
  regressed on the covariate ranks (with intercept) by least squares, and the Pearson
  correlation of the two residual vectors is reported (the rank version of the partial
  correlation, as in Conover, "Practical Nonparametric Statistics", 3rd ed. 1999, §5.4,
  and ``pingouin.partial_corr(method="spearman")``). Bootstrap interval as above.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from audioscale.scaling.bootstrap import bootstrap, resample_indices, summarise


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Pearson r of two (R, n) arrays; NaN where either row is constant."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-300, (a * b).sum(axis=1) / np.where(den > 0, den, 1), np.nan)


def _kendall(x: np.ndarray, y: np.ndarray) -> float:
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(stats.kendalltau(x, y).statistic)


def correlations(
    x: np.ndarray, y: np.ndarray, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> dict:
    """Pearson, Spearman and Kendall of (x, y) with percentile-bootstrap CIs and p-values."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = x.size
    out: dict = {"n": int(n)}
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        reason = f"n={n} < 3" if n < 3 else "a variable is constant"
        for name in ("pearson", "spearman", "kendall"):
            out[name] = {"value": None, "ci": None, "n": int(n), "note": reason}
        return out
    idx = resample_indices(n, n_resamples, seed)
    xs, ys = x[idx], y[idx]
    r = float(stats.pearsonr(x, y).statistic)
    out["pearson"] = summarise(r, _pearson_rows(xs, ys), level, n)
    out["pearson"]["p"] = float(stats.pearsonr(x, y).pvalue)
    rho = stats.spearmanr(x, y)
    rs = _pearson_rows(stats.rankdata(xs, axis=1), stats.rankdata(ys, axis=1))
    out["spearman"] = summarise(float(rho.statistic), rs, level, n)
    out["spearman"]["p"] = float(rho.pvalue)
    kt = stats.kendalltau(x, y)
    ks = np.array([_kendall(a, b) for a, b in zip(xs, ys, strict=True)])
    out["kendall"] = summarise(float(kt.statistic), ks, level, n)
    out["kendall"]["p"] = float(kt.pvalue)
    return out


def spearman_ci(
    x: np.ndarray, y: np.ndarray, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> dict:
    """Spearman ρ with percentile-bootstrap CI only (fast path, vectorised)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = x.size
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"value": None, "ci": None, "n": int(n), "note": "too few runs or constant"}
    idx = resample_indices(n, n_resamples, seed)
    rs = _pearson_rows(stats.rankdata(x[idx], axis=1), stats.rankdata(y[idx], axis=1))
    rho = stats.spearmanr(x, y)
    out = summarise(float(rho.statistic), rs, level, n)
    out["p"] = float(rho.pvalue)
    return out


def partial_spearman_value(x: np.ndarray, y: np.ndarray, covariates: np.ndarray) -> float:
    """Partial Spearman of x and y given the columns of ``covariates`` (n, k)."""
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    cov = np.atleast_2d(np.asarray(covariates, float).T).T
    design = np.column_stack([np.ones(len(x))] + [stats.rankdata(c) for c in cov.T])
    res_x = rx - design @ np.linalg.lstsq(design, rx, rcond=None)[0]
    res_y = ry - design @ np.linalg.lstsq(design, ry, rcond=None)[0]
    den = math.sqrt(float(res_x @ res_x) * float(res_y @ res_y))
    if den < 1e-12:
        return math.nan
    return float(res_x @ res_y) / den


def partial_spearman(
    x: np.ndarray,
    y: np.ndarray,
    covariates: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Partial Spearman with percentile-bootstrap CI; needs n ≥ k + 4 runs."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    cov = np.asarray(covariates, float).reshape(len(x), -1)
    n, k = cov.shape
    if n < k + 4:
        return {"value": None, "ci": None, "n": int(n), "note": f"n={n} < {k + 4} runs"}
    value = partial_spearman_value(x, y, cov)
    samples = bootstrap(lambda i: partial_spearman_value(x[i], y[i], cov[i]), n, n_resamples, seed)
    return summarise(value, samples, level, n)
