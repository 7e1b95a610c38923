"""The power-law sections of fits.json: score vs RankMe (power and saturating forms,
bands, validation, residual flags), single laws in N, D, U and C, and the joint L(N, D)
laws with their compute allocation."""

from __future__ import annotations

import numpy as np

from audioscale.scaling.allocation import allocate, rankme_prediction
from audioscale.scaling.bootstrap import MAX_FAILED_FRACTION, bootstrap, resample_indices, summarise
from audioscale.scaling.correlation import correlations
from audioscale.scaling.fits.common import TARGETS, FitSettings, col, positive, run_ids
from audioscale.scaling.powerlaw import (
    Fit,
    choose,
    fit_joint,
    fit_power,
    fit_saturating,
    power_ols_batch,
    refit_saturating,
)
from audioscale.scaling.validate import fit_small_predict_large, leave_one_out
from audioscale.utils import float_or_nan

# --------------------------------------------------------------------------- power laws


def power_with_ci(x: np.ndarray, y: np.ndarray, s: FitSettings) -> tuple[Fit, dict, np.ndarray]:
    """Log-log power law + bootstrap CIs of a, b, R² (vectorised). Returns samples (R, 2)."""
    fit = fit_power(x, y, s.huber, s.huber_delta)
    out = fit.to_dict()
    if not fit.converged:
        return fit, out, np.full((0, 2), np.nan)
    idx = resample_indices(x.size, s.n_resamples, s.seed)
    lx, ly = np.log(x)[idx], np.log(y)[idx]
    if s.huber:
        samples = bootstrap(
            lambda i: _power_params(fit_power(x[i], y[i], True, s.huber_delta)),
            x.size,
            s.n_resamples,
            s.seed,
        )  # same seed, hence the same resamples as ``idx``
        loga, b = np.log(samples[:, 0]), samples[:, 1]
    else:
        loga, b = power_ols_batch(lx, ly)
    out["params_ci"] = {
        "a": summarise(fit.params["a"], np.exp(loga), s.level, x.size),
        "b": summarise(fit.params["b"], b, s.level, x.size),
        "r2_log": summarise(fit.r2, _r2_rows(lx, ly, loga, b), s.level, x.size),
    }
    return fit, out, np.column_stack([loga, b])


def _r2_rows(lx: np.ndarray, ly: np.ndarray, loga: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Log-space R² of each resample's own fit (NaN where y does not vary)."""
    res = ly - (loga[:, None] + b[:, None] * lx)
    tss = ((ly - ly.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tss > 0, 1 - (res**2).sum(axis=1) / np.where(tss > 0, tss, 1), np.nan)


def _power_params(f: Fit) -> list[float]:
    if not f.converged:
        raise ValueError(f.message)
    return [f.params["a"], f.params["b"]]


def _sat_params(f: Fit, with_r2: bool = False) -> list[float]:
    if not f.converged:
        raise ValueError(f.message)
    return [f.params["a"], f.params["b"], f.params["c"]] + ([f.r2] if with_r2 else [])


def fitter(form: str, s: FitSettings, starts: list[list[float]] | None = None):
    if form == "power":
        return lambda x, y: fit_power(x, y, s.huber, s.huber_delta)
    if starts:
        return lambda x, y: refit_saturating(x, y, starts, s.huber, s.huber_delta)
    return lambda x, y: fit_saturating(x, y, s.huber, s.huber_delta)


def _validation(
    form: str,
    x: np.ndarray,
    y: np.ndarray,
    ids: list[str],
    flops: np.ndarray,
    s: FitSettings,
    warm: list[list[float]] | None = None,
) -> dict:
    return {
        "loo": leave_one_out(fitter(form, s, warm), [x], y, ids),
        "fit_small_predict_large": fit_small_predict_large(
            fitter(form, s), [x], y, ids, flops, s.compute_cut
        ),
    }


def _band(form: str, samples: np.ndarray, grid: np.ndarray, level: float) -> dict:
    """Percentile band of the bootstrap fits' predictions on ``grid``."""
    if samples.size == 0:
        return {}
    if form == "power":
        pred = np.exp(samples[:, :1] + samples[:, 1:2] * np.log(grid)[None, :])
    else:
        a, b, c = samples[:, :1], samples[:, 1:2], samples[:, 2:3]
        pred = c - a * grid[None, :] ** (-b)
    ok = np.all(np.isfinite(pred), axis=1)
    if ok.sum() < 2 or 1 - ok.mean() > MAX_FAILED_FRACTION:
        return {}
    alpha = (1 - level) / 2
    lo, hi = np.quantile(pred[ok], [alpha, 1 - alpha], axis=0)
    return {"x": grid, "lo": lo, "hi": hi, "level": level}


# --------------------------------------------------------------------------- sections


def score_vs_rankme(rows: list[dict], s: FitSettings, x_extra: np.ndarray) -> dict:
    """Power and saturating fits of suite vs RankMe, correlations, validation, residuals."""
    x, y, flops = col(rows, "rankme"), col(rows, "suite"), col(rows, "train_flops")
    ok = positive(x, y)
    ids = [i for i, k in zip(run_ids(rows), ok, strict=True) if k]
    x, y, flops = x[ok], y[ok], flops[ok]
    out: dict = {"x": "rankme", "y": "suite", "n": int(x.size), "run_ids": ids}
    out["correlations"] = correlations(x, y, s.n_resamples, s.seed, s.level)
    power, power_d, power_samples = power_with_ci(x, y, s)
    sat = fit_saturating(x, y, s.huber, s.huber_delta)
    sat_d = sat.to_dict()
    sat_samples = np.full((0, 4), np.nan)
    if sat.converged:
        warm = [_sat_params(sat)]
        sat_samples = bootstrap(
            lambda i: _sat_params(
                refit_saturating(x[i], y[i], warm, s.huber, s.huber_delta, cold=False), True
            ),
            x.size,
            s.n_resamples,
            s.seed,
        )
        sat_d["params_ci"] = {
            k: summarise(sat.params[k], sat_samples[:, j], s.level, x.size)
            for j, k in enumerate(("a", "b", "c"))
        }
        sat_d["params_ci"]["r2_log"] = summarise(sat.r2, sat_samples[:, 3], s.level, x.size)
    out["forms"] = {"power": power_d, "saturating": sat_d}
    chosen, choice = choose([power, sat])
    out["chosen_form"] = chosen.form if chosen else None
    out["choice"] = choice
    allx = np.concatenate([x, x_extra[np.isfinite(x_extra) & (x_extra > 0)]])
    if allx.size:
        grid = np.geomspace(allx.min() * 0.9, allx.max() * 1.1, s.band_points)
        for form, fit, smp in (("power", power, power_samples), ("saturating", sat, sat_samples)):
            if fit.converged:
                band = _band(form, smp, grid, s.level)
                if band:
                    band["fit"] = fit.predict(grid)
                out["forms"][form]["band"] = band
    out["validation"] = {}
    for form, fit in (("power", power), ("saturating", sat)):
        if fit.converged:
            warm = [_sat_params(fit)] if form == "saturating" else None
            out["validation"][form] = _validation(form, x, y, ids, flops, s, warm)
    out["residuals"] = residual_flags(rows, ok, power, s.residual_z)
    return out


def residual_flags(rows: list[dict], ok: np.ndarray, fit: Fit, zcut: float) -> dict:
    """Runs whose log-residual from the log-log fit exceeds ``zcut`` standard deviations."""
    if not fit.converged or fit.n < 4:
        return {"flagged": [], "note": "no log-log fit to take residuals from"}
    sub = [r for r, k in zip(rows, ok, strict=True) if k]
    x, y = col(sub, "rankme"), col(sub, "suite")
    res = np.log(y) - np.log(fit.predict(x))
    sd = float(np.sqrt(np.sum(res**2) / (res.size - 2)))
    z = res / sd if sd > 0 else np.zeros_like(res)
    flagged = []
    for r, zi, ri in zip(sub, z, res, strict=True):
        if abs(zi) > zcut:
            flagged.append(
                {
                    "run_id": str(r.get("run_id") or r.get("name")),
                    "z": float(zi),
                    "log_residual": float(ri),
                    "rankme": float_or_nan(r.get("rankme")),
                    "suite": float_or_nan(r.get("suite")),
                    "epochs": float_or_nan(r.get("epochs")),
                    "params_nonembed": float_or_nan(r.get("params_nonembed")),
                }
            )
    return {
        "z_threshold": zcut,
        "sd_log_residual": sd,
        "flagged": flagged,
        "z": {str(r.get("run_id") or r.get("name")): float(v) for r, v in zip(sub, z, strict=True)},
        "method": "z = log residual of the log-log power law / its SD (ddof 2)",
    }


def single_laws(rows: list[dict], s: FitSettings, n_col: str | None, d_col: str | None) -> dict:
    """RankMe, suite and held-out loss vs N, D (data seen), U (unique data: the hours of
    the run's nested subset, the data-volume axis of a sweep) and C: power laws with CIs
    and validation."""
    out = {}
    xs = {"N": n_col, "D": d_col, "U": "data_hours", "C": "train_flops"}
    flops = col(rows, "train_flops")
    for target in TARGETS:
        for var, xcol in xs.items():
            key = f"{target}_vs_{var}"
            if xcol is None:
                out[key] = {"x": None, "y": target, "note": f"no column for {var}"}
                continue
            x, y = col(rows, xcol), col(rows, target)
            ok = positive(x, y)
            ids = [i for i, k in zip(run_ids(rows), ok, strict=True) if k]
            fit, d, _ = power_with_ci(x[ok], y[ok], s)
            d.update({"x": xcol, "y": target, "run_ids": ids})
            if fit.converged:
                d["validation"] = _validation("power", x[ok], y[ok], ids, flops[ok], s)
            out[key] = d
    return out


def joint_laws(rows: list[dict], s: FitSettings, n_col: str | None, d_col: str | None) -> dict:
    """Joint L(N, D) for held-out loss and suite error, with the compute allocation."""
    out: dict = {}
    if n_col is None or d_col is None:
        return {"note": "no N or D column"}
    n, d = col(rows, n_col), col(rows, d_col)
    fpe, flops = col(rows, "flops_per_example"), col(rows, "train_flops")
    budget = s.budget_flops
    if budget is None and np.any(np.isfinite(flops)):
        budget = s.budget_factor * float(np.nanmax(flops))
    targets = {"heldout_loss": col(rows, "heldout_loss"), "suite_error": 1.0 - col(rows, "suite")}
    for name, t in targets.items():
        ok = positive(n, d, t)
        base = {"target": name, "N_column": n_col, "D_column": d_col, "n": int(ok.sum())}
        can_allocate = d_col == "examples_seen" and budget is not None and np.all(positive(fpe)[ok])
        if can_allocate:
            res = allocate(
                n[ok], d[ok], t[ok], fpe[ok], budget, s.n_resamples_joint, s.seed, s.level, s.huber
            )
            res.update(base)
            res["budget_rule"] = "given" if s.budget_flops else f"{s.budget_factor}x largest run"
            interior = not res.get("on_grid_edge")  # an edge N* is no allocation to describe
            n_star, d_star = res.get("N"), res.get("D")  # {value, ci, ...} or None
            if interior and n_star and n_star.get("value") and d_star and d_star.get("value"):
                # every run with N, D and RankMe, as the verification run's RankMe law
                res["rankme_at_allocation"] = rankme_prediction(
                    n, d, col(rows, "rankme"), res["N"]["value"], res["D"]["value"],
                    s.n_resamples_joint, s.seed, s.level,
                )  # fmt: skip
                res["rankme_at_allocation"]["conditional_on"] = (
                    "the point allocation (N*, D*): the allocation's own interval is not propagated"
                )
        else:
            fit = fit_joint(n[ok], d[ok], t[ok], huber=s.huber)
            res = {"joint": fit.to_dict(), **base}
            res["note"] = "no allocation: needs examples_seen, flops_per_example and a budget"
        out[name] = res
    return out
