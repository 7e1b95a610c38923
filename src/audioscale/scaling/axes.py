"""Does RankMe unify the scaling axes? Per-axis residuals and a leave-one-axis-out test.

RankMe (Garrido et al., ICML 2023, arXiv 2210.02885) is meant to be the one number
through which every scaling variable acts on downstream quality: if suite ≈ a·RankMeᵇ
holds, a run's width, depth, data volume, steps, clip length, mask ratio or
architecture should not matter once its RankMe is known. This module tests that claim
axis by axis on a study's trained runs.

Choices, all stated in fits.json:
- An axis is a set of result columns (``AXES``). Its *base* value is the most common
  value among the trained runs (the study's base config; ties go to the smaller value,
  compared as text when values are not numbers). A run *varies* an axis when any of the
  axis's columns differs from the base.
- The law is the log-log power law ``suite = a·RankMeᵇ`` (``powerlaw.fit_power``): two
  parameters, so it can be fitted on the few runs that keep an axis at its base.
- Leave-one-axis-out: fit on the runs that do not vary axis A, predict the runs that do.
  The error is the mean absolute error in suite points; the 95 % interval of each
  prediction is the percentile interval of the predictions of a bootstrap over the
  fitting runs (seeded). The verdict is "the law absorbs this axis" when the error is at
  most ``tolerance`` (0.02 suite points by default) and "this axis breaks it" otherwise;
  "not tested" when fewer than ``min_fit`` runs keep the axis at its base or none varies it.
- Per-axis residuals: the log residuals of the law fitted on all trained runs, averaged
  over the runs that vary each axis (a systematic sign says the axis shifts the law).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

import numpy as np

from audioscale.scaling.bootstrap import MAX_FAILED_FRACTION, resample_indices
from audioscale.scaling.powerlaw import fit_power, power_ols_batch
from audioscale.utils import finite_or_none, float_or_nan

AXES: dict[str, tuple[str, ...]] = {
    "width": ("width",),
    "depth": ("depth",),
    "data volume": ("data_hours",),
    "steps": ("examples_seen",),
    "clip length": ("clip_seconds",),
    "mask ratio": ("mask_ratio",),
    "architecture": ("family", "patch"),
}
TOLERANCE = 0.02
MIN_FIT = 4


def comparable(v: object) -> object:
    """Comparable form of a column value: numbers rounded to 9 digits (config values
    written through JSON and SQLite), other text as text, None / NaN as None."""
    x = finite_or_none(v)
    if x is not None:
        return round(x, 9)
    return str(v) if isinstance(v, str) else None


def _sort_key(v: object) -> tuple:
    return (0, v, "") if isinstance(v, float) else (1, 0.0, str(v))


def axis_value(r: dict, column: str) -> object:
    """A row's value on an axis column. Clip lengths are compared at 0.1 s: the model card
    records the clip cut to whole patches (1 s is 0.96 s with 16 x 16 patches), which is
    the patch axis, not the clip axis."""
    v = comparable(r.get(column))
    return round(v, 1) if column == "clip_seconds" and isinstance(v, float) else v


def base_config(
    rows: list[dict],
    columns: Iterable[str],
    value: Callable[[dict, str], object] = lambda r, c: r.get(c),
    order: Callable[[object], object] = str,
    skip_missing: bool = False,
) -> dict[str, object]:
    """The base config of a study: the most common ``value(row, column)`` of each column
    among ``rows``, ties to the first in ``order``; None when no row has a value.
    ``skip_missing`` leaves None out of the count (else "missing" can be the base)."""
    base: dict[str, object] = {}
    for c in columns:
        vals = [value(r, c) for r in rows]
        counts = Counter(v for v in vals if v is not None or not skip_missing)
        top = max(counts.values()) if counts else 0
        tied = sorted((v for v, k in counts.items() if k == top), key=order)
        base[c] = tied[0] if tied else None
    return base


def base_values(rows: list[dict]) -> dict[str, object]:
    """Most common value of every axis column among ``rows`` (ties: the smallest)."""
    columns = [c for cols in AXES.values() for c in cols]
    return base_config(rows, columns, value=axis_value, order=_sort_key)


def varies(rows: list[dict], base: dict[str, object]) -> dict[str, np.ndarray]:
    """Axis → boolean mask of the rows that differ from the base on that axis."""
    return {
        axis: np.array([any(axis_value(r, c) != base[c] for c in cols) for r in rows], bool)
        for axis, cols in AXES.items()
    }


def _xy(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    x = np.array([float_or_nan(r.get("rankme")) for r in rows], dtype=float)
    return x, np.array([float_or_nan(r.get("suite")) for r in rows], dtype=float)


def _predictions(
    x_fit: np.ndarray, y_fit: np.ndarray, x_new: np.ndarray, n_resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Point predictions, (lo, hi) 95 % bootstrap intervals, failed-resample fraction."""
    fit = fit_power(x_fit, y_fit)
    point = fit.predict(x_new) if fit.converged else np.full(x_new.shape, np.nan)
    idx = resample_indices(x_fit.size, n_resamples, seed)
    loga, b = power_ols_batch(np.log(x_fit)[idx], np.log(y_fit)[idx])
    pred = np.exp(loga[:, None] + b[:, None] * np.log(x_new)[None, :])
    ok = np.all(np.isfinite(pred), axis=1)
    failed = 1.0 - ok.mean() if ok.size else 1.0
    if ok.sum() < 2:
        return point, np.full((2, x_new.size), np.nan), failed
    return point, np.quantile(pred[ok], [0.025, 0.975], axis=0), float(failed)


def leave_one_axis_out(
    rows: list[dict],
    tolerance: float = TOLERANCE,
    min_fit: int = MIN_FIT,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """Per axis: fit on the runs at its base, predict the runs that vary it."""
    x, y = _xy(rows)
    good = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    rows = [r for r, g in zip(rows, good, strict=True) if g]
    x, y = x[good], y[good]
    base = base_values(rows)
    masks = varies(rows, base)
    out: dict = {
        "law": "suite = a * rankme^b (log-log), fitted on the runs at the axis's base value",
        "tolerance": tolerance,
        "base": {c: base[c] for cols in AXES.values() for c in cols},
        "axes": {},
    }
    for axis, vary in masks.items():
        out["axes"][axis] = _axis_test(rows, x, y, vary, tolerance, min_fit, n_resamples, seed)
    return out


def _axis_test(
    rows: list[dict],
    x: np.ndarray,
    y: np.ndarray,
    vary: np.ndarray,
    tolerance: float,
    min_fit: int,
    n_resamples: int,
    seed: int,
) -> dict:
    """One axis: fit on the runs that keep it at its base, predict those that ``vary`` it."""
    keep = ~vary
    res: dict = {"n_vary": int(vary.sum()), "n_fit": int(keep.sum())}
    if vary.sum() == 0 or keep.sum() < min_fit:
        why = "no run varies it" if vary.sum() == 0 else f"< {min_fit} runs at its base"
        res.update(verdict="not tested", reason=why)
        return res
    point, (lo, hi), failed = _predictions(x[keep], y[keep], x[vary], n_resamples, seed)
    if not np.all(np.isfinite(point)):
        res.update(verdict="not tested", reason="the power law did not fit the base runs")
        return res
    if failed > MAX_FAILED_FRACTION:  # the contract of every interval: refuse it
        lo, hi = np.full_like(point, np.nan), np.full_like(point, np.nan)
    err = np.abs(point - y[vary])
    inside = (y[vary] >= lo) & (y[vary] <= hi)
    res.update(
        mae=float(np.mean(err)),
        max_error=float(np.max(err)),
        inside_interval=int(inside.sum()),
        failed_resamples=failed,
        runs=[
            {
                "run_id": r.get("run_id"),
                "measured": float(m),
                "predicted": float(p),
                "lo": float(a),
                "hi": float(b),
            }
            for r, m, p, a, b in zip(
                [r for r, v in zip(rows, vary, strict=True) if v],
                y[vary],
                point,
                lo,
                hi,
                strict=True,
            )
        ],
    )
    res["verdict"] = (
        "the law absorbs this axis" if res["mae"] <= tolerance else "this axis breaks it"
    )
    return res


def axis_residuals(rows: list[dict]) -> dict:
    """Mean log residual of the all-runs power law over the runs varying each axis."""
    x, y = _xy(rows)
    good = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    rows = [r for r, g in zip(rows, good, strict=True) if g]
    x, y = x[good], y[good]
    if x.size < 3:
        return {"note": "fewer than 3 trained runs with RankMe and suite"}
    fit = fit_power(x, y)
    if not fit.converged:
        return {"note": f"power law not fitted: {fit.message}"}
    resid = np.log(y) - np.log(fit.predict(x))
    out: dict = {}
    for axis, vary in varies(rows, base_values(rows)).items():
        if vary.any():
            out[axis] = {
                "n": int(vary.sum()),
                "mean_log_residual": float(resid[vary].mean()),
                "base_mean_log_residual": float(resid[~vary].mean()) if (~vary).any() else None,
            }
    return out
