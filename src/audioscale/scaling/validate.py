"""Held-out validation of a fitted law: leave-one-out and fit-small-predict-large.

Errors are in the target's own units: absolute error |ŷ − y| per run, summarised by
the mean absolute error (MAE), plus the mean absolute relative error |ŷ − y| / |y|.
A fold whose fit fails is recorded with ``pred = None``, never replaced by a guess, and
reported: ``n_failed``, ``failed_fraction`` and ``failed_runs``. The mean over the folds
that did fit is a selection, so above ``bootstrap.MAX_FAILED_FRACTION`` (20 %) of
failed folds no error is reported (``mae`` None, ``mae_status`` "refused",
``mae_reason``). Fitters that warm-start (``powerlaw.refit_saturating``) fall back to a
cold-start grid; ``n_cold_fallback`` counts the folds that needed it.

- Leave-one-out: for each run i, fit on the other n − 1 runs and predict run i.
- Fit-small-predict-large: runs whose compute (``train_flops`` by default) is at or
  below a cut (the median by default) form the training set; the rest are predicted.
  This is the question a user asks of a scaling law: does it extrapolate upwards?
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from audioscale.scaling.bootstrap import MAX_FAILED_FRACTION
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
    n_failed = len(per_run) - len(abs_err)
    frac = n_failed / len(per_run) if per_run else 0.0
    out = {
        "mae": float(np.mean(abs_err)) if abs_err else None,
        "mean_rel_error": float(np.mean(rel_err)) if rel_err else None,
        "max_abs_error": float(np.max(abs_err)) if abs_err else None,
        "n_predicted": len(abs_err),
        "n_failed": n_failed,
        "failed_fraction": frac,
        "failed_runs": [r["run_id"] for r in per_run if r["pred"] is None],
        "max_failed_fraction": MAX_FAILED_FRACTION,
        "mae_status": "ok",
        "per_run": per_run,
    }
    if not abs_err or frac > MAX_FAILED_FRACTION:
        out.update(mae=None, mean_rel_error=None, max_abs_error=None, mae_status="refused")
        out["mae_reason"] = (
            f"{n_failed} of {len(per_run)} folds failed ({frac:.0%}, above "
            f"{MAX_FAILED_FRACTION:.0%})"
        )
    return out


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
    cold = 0
    for i in range(n):
        keep = np.arange(n) != i
        fit = fitter(*(x[keep] for x in xs), y[keep])
        cold += fit.settings.get("start") == "cold fallback"
        p = _predict_one(fit, xs, np.array([i]))
        preds.append(None if p is None else float(p[0]))
    out = _errors(run_ids, y, preds)
    out["method"] = "leave-one-out"
    out["n"] = n
    out["n_cold_fallback"] = int(cold)
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
