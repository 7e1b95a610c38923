"""Held-out validation of a fitted law: leave-one-out and fit-small-predict-large.

Errors are in the target's own units: absolute error |ŷ − y| per run, summarised by
the mean absolute error (MAE), plus the mean absolute relative error |ŷ − y| / |y|.
A fold whose fit fails is recorded with ``pred = None`` and left out of the means
(and counted in ``n_failed``), never replaced by a guess.

- Leave-one-out: for each run i, fit on the other n − 1 runs and predict run i.
- Fit-small-predict-large: runs whose compute (``train_flops`` by default) is at or
  below a cut (the median by default) form the training set; the rest are predicted.
  This is the question a user asks of a scaling law: does it extrapolate upwards?
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from audioscale.scaling.powerlaw import Fit

Fitter = Callable[..., Fit]


def _errors(run_ids: Sequence[str], y: np.ndarray, preds: list[float | None]) -> dict:
    per_run = []
    abs_err, rel_err = [], []
    for rid, yt, p in zip(run_ids, y, preds, strict=True):
        if p is None or not math.isfinite(p):
            per_run.append({"run_id": rid, "actual": float(yt), "pred": None, "abs_error": None})
            continue
        e = abs(p - float(yt))
        abs_err.append(e)
        if yt != 0:
            rel_err.append(e / abs(float(yt)))
        per_run.append({"run_id": rid, "actual": float(yt), "pred": float(p), "abs_error": e})
    return {
        "mae": float(np.mean(abs_err)) if abs_err else None,
        "mean_rel_error": float(np.mean(rel_err)) if rel_err else None,
        "max_abs_error": float(np.max(abs_err)) if abs_err else None,
        "n_predicted": len(abs_err),
        "n_failed": len(per_run) - len(abs_err),
        "per_run": per_run,
    }


def _predict_one(fit: Fit, xs: Sequence[np.ndarray], i: int | np.ndarray) -> np.ndarray | None:
    if not fit.converged:
        return None
    return np.atleast_1d(fit.predict(*(x[i] for x in xs)))


def leave_one_out(
    fitter: Fitter, xs: Sequence[np.ndarray], y: np.ndarray, run_ids: Sequence[str]
) -> dict:
    """LOO prediction errors of ``fitter(*xs, y)`` (xs: one array per input variable)."""
    xs = [np.asarray(x, float) for x in xs]
    y = np.asarray(y, float)
    n = y.size
    if n < 4:
        return {"method": "leave-one-out", "note": f"n={n} runs, need at least 4", "mae": None}
    preds: list[float | None] = []
    for i in range(n):
        keep = np.arange(n) != i
        fit = fitter(*(x[keep] for x in xs), y[keep])
        p = _predict_one(fit, xs, np.array([i]))
        preds.append(None if p is None else float(p[0]))
    out = _errors(run_ids, y, preds)
    out["method"] = "leave-one-out"
    out["n"] = n
    return out


def fit_small_predict_large(
    fitter: Fitter,
    xs: Sequence[np.ndarray],
    y: np.ndarray,
    run_ids: Sequence[str],
    compute: np.ndarray,
    cut: float | None = None,
    compute_name: str = "train_flops",
) -> dict:
    """Fit on runs with ``compute <= cut`` (median by default), predict the others."""
    xs = [np.asarray(x, float) for x in xs]
    y, compute = np.asarray(y, float), np.asarray(compute, float)
    ok = np.isfinite(compute)
    base = {"method": "fit-small-predict-large", "compute": compute_name}
    if ok.sum() < 4:
        return {**base, "note": f"{int(ok.sum())} runs with {compute_name}, need 4", "mae": None}
    cut_used = float(np.median(compute[ok])) if cut is None else float(cut)
    base["cut"] = cut_used
    base["cut_rule"] = "median" if cut is None else "given"
    train = ok & (compute <= cut_used)
    test = ok & (compute > cut_used)
    base["n_train"], base["n_test"] = int(train.sum()), int(test.sum())
    if test.sum() == 0 or train.sum() < 3:
        return {**base, "note": "the cut leaves no runs to predict or < 3 to fit", "mae": None}
    fit = fitter(*(x[train] for x in xs), y[train])
    if not fit.converged:
        return {**base, "note": f"fit on small runs failed: {fit.message}", "mae": None}
    pred = fit.predict(*(x[test] for x in xs))
    ids = [r for r, t in zip(run_ids, test, strict=True) if t]
    out = _errors(ids, y[test], [float(p) for p in pred])
    out.update(base)
    out["fit_params"] = {k: float(v) for k, v in fit.params.items()}
    return out
