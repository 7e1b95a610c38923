"""Compute-optimal model size and data for a FLOP budget, from fitted laws.

Inputs: a joint law L(N, D) = E + A/N^α + B/D^β (``powerlaw.fit_joint``; D counted in
examples seen, L a quantity to minimise: held-out loss, or the suite error 1 − score)
and a power law for training FLOPs per example in N, f(N) = k·N^γ, fitted log-log on
the runs (it absorbs clip length, mask ratio and the decoder as they were in the
study). For a budget C the data follow from the budget, D(N) = C / f(N), and N* is the
minimiser of L(N, C / f(N)) over log N: a dense log grid from min(N)/100 to
max(N)·1e4 (2001 points), refined by bounded Brent search around the best grid point.
An optimum on the grid edge means the laws have no interior optimum in the searched
range; it is flagged (``on_grid_edge``) and treated the same way in the point estimate
and in the bootstrap: a point optimum on the edge keeps its value but gets no interval
(``ci_status`` "refused", with the reason), and a resample whose optimum is on the edge
counts as a failed resample for N*, D*, L* (``n_edge`` of them), so that the interval
is never built from the interior resamples alone while the rest sat on the edge.

Uncertainty: a residual bootstrap over the fixed design (``bootstrap.residual_resamples``,
seeded): the runs keep their (N, D), their log residuals about the joint fit are
resampled, the joint law is refitted on each resample (warm-started from the full-data
fit, at most 50 evaluations, continued to 300 when unfinished; a resample that still
fails counts as failed), and N*, D*, L* recomputed; the interval is the percentile
interval of those, refused above ``bootstrap.MAX_FAILED_FRACTION`` (20 %) of failed
resamples. Resampling the runs instead would resample the design: on a grid of 3 sizes
× 3 budgets about one resample in five misses a whole size or budget and cannot fit the
law at all (22 % failed in the demo study of 2026-12-02). f(N) is a deterministic
function of the architecture, so it is fitted once. Everything here is an
extrapolation beyond the measured runs as soon as C exceeds the largest run's FLOPs.

RankMe at an allocation (``rankme_prediction``): a log-linear law in both variables,
log RankMe = c + a·log N + b·log D, least squares over the trained runs, evaluated at
(N*, D*) (or at the verification run), with the same residual bootstrap; for one new run
the interval is a prediction interval (``new_run``; Davison & Hinkley 1997, Algorithm
6.4). RankMe is bounded by the embedding width, so the law is a local description: outside
the trained ranges of N or D it is an extrapolation and flagged as one, like the
allocation. A design whose log N and log D are collinear cannot separate a and b and
gets no prediction.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar

from audioscale.scaling.bootstrap import (
    RESIDUAL_METHOD,
    refuse,
    residual_resamples,
    summarise,
)
from audioscale.scaling.powerlaw import (
    WARM_MAX_NFEV,
    Fit,
    fit_joint,
    fit_power,
    joint_start_from,
    predict,
)

GRID_POINTS = 2001
JOINT_KEYS = ("E", "A", "B", "alpha", "beta")


def optimum(
    joint: dict[str, float], fpe: dict[str, float], budget: float, n_range: tuple[float, float]
) -> dict:
    """N*, D*, L* minimising L(N, budget / f(N)) for given law parameters."""
    lo, hi = math.log(n_range[0] / 100), math.log(n_range[1] * 1e4)

    def loss_at(logn: float | np.ndarray) -> float | np.ndarray:
        n = np.exp(logn)
        d = budget / predict("power", fpe, n)
        return predict("joint", joint, n, d)

    grid = np.linspace(lo, hi, GRID_POINTS)
    vals = loss_at(grid)
    i = int(np.nanargmin(vals))
    edge = i in (0, GRID_POINTS - 1)
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, GRID_POINTS - 1)]
    res = minimize_scalar(loss_at, bounds=(a, b), method="bounded")
    logn = float(res.x) if res.success else float(grid[i])
    n_opt = math.exp(logn)
    d_opt = budget / float(predict("power", fpe, n_opt))
    return {"N": n_opt, "D": d_opt, "L": float(loss_at(logn)), "on_grid_edge": bool(edge)}


def allocate(
    n: np.ndarray,
    d: np.ndarray,
    target: np.ndarray,
    flops_per_example: np.ndarray,
    budget: float,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    huber: bool = False,
) -> dict:
    """Fit both laws, find the compute-optimal (N, D) for ``budget``, bootstrap it.

    The same resamples give the intervals of the joint law's parameters
    (``joint["params_ci"]``).
    """
    n, d, target, fpe_y = (np.asarray(v, float) for v in (n, d, target, flops_per_example))
    joint = fit_joint(n, d, target, huber=huber)
    fpe = fit_power(n, fpe_y)
    out: dict = {
        "budget_flops": float(budget),
        "joint": joint.to_dict(),
        "flops_per_example": fpe.to_dict(),
    }
    if not (joint.converged and fpe.converged):
        why = joint.message if not joint.converged else f"flops/example fit: {fpe.message}"
        out["note"] = f"no allocation: {why}"
        return out
    n_range = (float(n.min()), float(n.max()))
    point = optimum(joint.params, fpe.params, budget, n_range)
    samples, edge = _bootstrap(n, d, target, fpe, joint, budget, n_range, n_resamples, seed, huber)
    n_edge = int(edge.sum())
    for j, key in enumerate(("N", "D", "L")):
        est = summarise(point[key], samples[:, j], level, n.size)
        est["n_edge"] = n_edge
        est["edge_fraction"] = n_edge / max(n_resamples, 1)
        if point["on_grid_edge"]:
            refuse(est, "the point optimum is on the search edge (no interior optimum)")
        elif est["ci_status"] == "refused" and n_edge:
            est["ci_reason"] += f"; {n_edge} of them with the optimum on the search edge"
        out[key] = est
    out["joint"]["params_ci"] = {
        key: summarise(joint.params[key], samples[:, 3 + j], level, n.size)
        for j, key in enumerate(JOINT_KEYS)
    }
    out["on_grid_edge"] = point["on_grid_edge"]
    out["extrapolation"] = bool(budget > float(np.max(fpe_y * d)) * 1.0001)
    out["method"] = (
        "argmin over log N of L(N, C/f(N)); residual bootstrap over the fixed design, "
        "refitting the joint law"
    )
    return out


RANKME_LAW = "log RankMe = c + a·log N + b·log D (least squares)"


def rankme_prediction(
    n: np.ndarray,
    d: np.ndarray,
    rankme: np.ndarray,
    n_new: float,
    d_new: float,
    n_resamples: int = 300,
    seed: int = 0,
    level: float = 0.95,
    new_run: bool = False,
) -> dict:
    """RankMe at (n_new, d_new) from the log-linear law in N and D (module text): the
    law's value with a residual-bootstrap percentile interval, or with ``new_run`` a
    prediction interval for one new run."""
    n, d, r = (np.asarray(v, float) for v in (n, d, rankme))
    ok = np.isfinite(n) & np.isfinite(d) & np.isfinite(r) & (n > 0) & (d > 0) & (r > 0)
    n, d, r = n[ok], d[ok], r[ok]
    if not all(math.isfinite(v) and v > 0 for v in (n_new, d_new)):
        return {
            "value": None,
            "ci": None,
            "note": f"no positive N, D to predict at: {n_new}, {d_new}",
        }
    x = np.column_stack([np.ones(n.size), np.log(n), np.log(d)])
    if n.size < 5 or np.linalg.matrix_rank(x) < 3:
        return {
            "value": None,
            "ci": None,
            "note": "needs 5 runs whose log N and log D are not collinear",
        }
    y = np.log(r)
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    log_ys, new_errors = residual_resamples(x @ coef, y, 3, n_resamples, seed)
    coefs = np.linalg.lstsq(x, log_ys.T, rcond=None)[0]  # (3, n_resamples)
    x_new = np.array([1.0, math.log(n_new), math.log(d_new)])
    value, resampled = float(x_new @ coef), x_new @ coefs
    if new_run:  # value − δ*, δ* = resampled − (value + ε*)
        samples = np.exp(2 * value - resampled + new_errors)
    else:
        samples = np.exp(resampled)
    out = summarise(math.exp(value), samples, level, n.size)
    out["params"] = dict(zip(("c", "a", "b"), (float(v) for v in coef), strict=True))
    out["interval_of"] = "one new run" if new_run else "the law's value"
    out["extrapolation"] = bool(
        not (n.min() * 0.9999 <= n_new <= n.max() * 1.0001)
        or not (d.min() * 0.9999 <= d_new <= d.max() * 1.0001)
    )
    out["method"] = f"{RANKME_LAW}; {RESIDUAL_METHOD}"
    return out


def _bootstrap(
    n: np.ndarray,
    d: np.ndarray,
    target: np.ndarray,
    fpe: Fit,
    joint: Fit,
    budget: float,
    n_range: tuple[float, float],
    n_resamples: int,
    seed: int,
    huber: bool,
) -> np.ndarray:
    """(samples, edge): columns N*, D*, L*, then the joint parameters in JOINT_KEYS
    order; ``edge`` marks the resamples whose optimum lay on the search edge (their N*,
    D*, L* are NaN: failed, like the point estimate's interval in that case)."""
    start = [joint_start_from(joint)]
    fitted = np.log(joint.predict(n, d))
    log_targets, _ = residual_resamples(fitted, np.log(target), len(JOINT_KEYS), n_resamples, seed)
    out = np.full((n_resamples, 3 + len(JOINT_KEYS)), np.nan)
    edge = np.zeros(n_resamples, bool)
    for r, log_t in enumerate(log_targets):
        j = fit_joint(n, d, np.exp(log_t), starts=start, huber=huber, max_nfev=WARM_MAX_NFEV)
        if not j.converged:
            continue
        out[r, 3:] = [j.params[k] for k in JOINT_KEYS]
        o = optimum(j.params, fpe.params, budget, n_range)
        edge[r] = o["on_grid_edge"]
        if not o["on_grid_edge"]:
            out[r, :3] = [o["N"], o["D"], o["L"]]
    return out, edge
