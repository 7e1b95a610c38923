"""All fits of a study, from the results table to ``fits.json``.

``fit_results(rows, ckpt_rows, settings)`` is pure: rows as ``Store.results()`` returns
them, checkpoint rows as ``Store.checkpoint_metrics()``; it returns one JSON-ready dict.
``fit_study(study_dir)`` reads the store, calls it and writes ``STUDY_DIR/fits.json``
atomically. Choices (each recorded under ``settings`` in the output):

- Only rows with ``kind == "trained"`` (or no kind) enter fits; baselines (random-init,
  baseline, external) are listed under ``baselines`` for the plots and the verdict.
  External (pretrained reference) rows do not widen the score-vs-RankMe band either,
  and the verdict names them for scale only, apart from the baselines a run must beat.
- Intervals: percentile bootstrap over runs, ``n_resamples`` (default 1000), seeded
  (``scaling.bootstrap``). Log-log OLS fits and Spearman are bootstrapped vectorised.
  The joint L(N, D) law and the allocation refit 5 parameters per resample and use
  ``n_resamples_joint`` (default 300) to keep ``audioscale fit`` within seconds; they
  resample residuals over the fixed (N, D) design instead of runs
  (``bootstrap.residual_resamples``: resampling runs drops whole sizes or budgets of the
  grid), and the verification run gets a prediction interval (``scaling.verify``).
  Warm-started refits (saturating bootstrap and leave-one-out, joint bootstrap) start
  from the full-data optimum with at most 50 evaluations, continued up to 300 when
  unfinished; saturating leave-one-out refits that still fail fall back to the
  cold-start grid (``powerlaw.refit_saturating``; too slow for 1,000 resamples, so the
  bootstrap does not). What fails after that is counted (``n_failed``,
  ``failed_fraction``), never guessed, and above 20 % failed resamples (or folds) the
  interval (or the leave-one-out error) is refused with its reason
  (``bootstrap.MAX_FAILED_FRACTION``).
- score vs RankMe: power law and saturating form (``scaling.powerlaw``), chosen by
  AICc when n/k < 40, else AIC. Residual flags: |z| > ``residual_z`` (default 2) where
  z = log-residual of the log-log power law / its standard deviation (ddof = 2).
- N = ``params_nonembed`` (else ``params``), D = ``examples_seen`` (else
  ``hours_seen``), C = ``train_flops``; single power laws of RankMe, suite score and
  held-out loss in each, with leave-one-out and fit-small-predict-large errors.
- Joint L(N, D) for held-out loss and for the suite error 1 − suite, and the
  compute-optimal allocation for a budget (default 2× the largest run's FLOPs), with the
  RankMe predicted there (``allocation.rankme_prediction``).
- Metric comparison: each label-free metric signed so that "higher predicts better"
  (α-ReQ and held-out loss get −1: a larger decay exponent means a more collapsed
  spectrum, Agrawal et al. NeurIPS 2022; a lower loss is better), Spearman with CI and
  LOO MAE of a log-log power law from the metric to the score.
- Verdict thresholds: Spearman ≥ 0.7 with CI above 0 "tracked"; ≥ 0.4 "moderately";
  ≤ −0.4 "ran against"; otherwise "weak"; fewer than 5 runs "too few runs". Regimes:
  the runs are split at the median of epochs and of N; halves whose Spearman differ by
  < 0.3 are "similar"; otherwise the law "held" in one half and "broke" in the other
  when those are ≥ 0.7 and < 0.4, else one half is "stronger".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from audioscale.errors import DataError
from audioscale.scaling.allocation import allocate, rankme_prediction
from audioscale.scaling.axes import axis_residuals, leave_one_axis_out
from audioscale.scaling.bootstrap import (
    MAX_FAILED_FRACTION,
    METHOD,
    bootstrap,
    percentile_ci,
    resample_indices,
    summarise,
)
from audioscale.scaling.correlation import correlations, partial_spearman, spearman_ci
from audioscale.scaling.learning import compute_buys_quality, versus_baselines
from audioscale.scaling.learning import sentences as learning_sentences
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
from audioscale.scaling.verify import verification_for
from audioscale.utils import atomic_save_json, float_or_nan

FITS_VERSION = 1
METRICS = {  # label-free metric → direction (+1: higher should mean a better score)
    "rankme": 1,
    "alpha_req": -1,
    "nesum": 1,
    "stable_rank": 1,
    "participation_ratio": 1,
    "heldout_loss": -1,
}
DOMAINS = ("domain_speech", "domain_music", "domain_environment")
TARGETS = {"rankme": "RankMe", "suite": "suite score", "heldout_loss": "held-out loss"}


@dataclass
class FitSettings:
    """Every knob of ``fit_results``; written to fits.json as ``settings``."""

    n_resamples: int = 1000
    n_resamples_joint: int = 300  # joint L(N, D) + allocation: 5-parameter refits per resample
    seed: int = 0
    level: float = 0.95
    huber: bool = False
    huber_delta: float = 0.1  # in log units, for the single-variable fits
    compute_cut: float | None = None  # None: median train_flops of the trained runs
    budget_flops: float | None = None  # None: budget_factor × the largest run's FLOPs
    budget_factor: float = 2.0  # allocate 2x the largest run: a near, checkable extrapolation
    residual_z: float = 2.0
    band_points: int = 60


# --------------------------------------------------------------------------- helpers


def col(rows: list[dict], key: str) -> np.ndarray:
    """Column ``key`` as floats; None / missing / non-numeric become NaN."""
    return np.array([float_or_nan(r.get(key)) for r in rows], dtype=float)


def is_trained(row: dict) -> bool:
    return row.get("kind") in (None, "trained")


def _ids(rows: list[dict]) -> list[str]:
    return [str(r.get("run_id") or r.get("name") or f"row{i}") for i, r in enumerate(rows)]


def _pos(*arrs: np.ndarray) -> np.ndarray:
    ok = np.ones(arrs[0].shape, bool)
    for a in arrs:
        ok &= np.isfinite(a) & (a > 0)
    return ok


def _first_column(rows: list[dict], keys: tuple[str, ...]) -> str | None:
    for k in keys:
        v = col(rows, k)
        if v.size and np.all(np.isfinite(v) & (v > 0)):
            return k
    for k in keys:  # else the one with most values
        if np.any(np.isfinite(col(rows, k))):
            return k
    return None


def clean(obj: object) -> object:
    """JSON-ready copy: numpy scalars to Python, NaN/inf to None, tuples to lists."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [clean(v) for v in obj.tolist()]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        x = float(obj)
        return x if math.isfinite(x) else None
    return obj


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


def _fitter(form: str, s: FitSettings, starts: list[list[float]] | None = None):
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
        "loo": leave_one_out(_fitter(form, s, warm), [x], y, ids),
        "fit_small_predict_large": fit_small_predict_large(
            _fitter(form, s), [x], y, ids, flops, s.compute_cut
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
    ok = _pos(x, y)
    ids = [i for i, k in zip(_ids(rows), ok, strict=True) if k]
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
            ok = _pos(x, y)
            ids = [i for i, k in zip(_ids(rows), ok, strict=True) if k]
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
        ok = _pos(n, d, t)
        base = {"target": name, "N_column": n_col, "D_column": d_col, "n": int(ok.sum())}
        can_allocate = d_col == "examples_seen" and budget is not None and np.all(_pos(fpe)[ok])
        if can_allocate:
            res = allocate(
                n[ok], d[ok], t[ok], fpe[ok], budget, s.n_resamples_joint, s.seed, s.level, s.huber
            )
            res.update(base)
            res["budget_rule"] = "given" if s.budget_flops else f"{s.budget_factor}x largest run"
            interior = not res.get("on_grid_edge")  # an edge N* is no allocation to describe
            if interior and (res.get("N") or {}).get("value") and (res.get("D") or {}).get("value"):
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


def metric_comparison(rows: list[dict], s: FitSettings) -> dict:
    """Each label-free metric as a predictor of the suite and domain scores."""
    out: dict = {"direction": METRICS, "targets": {}}
    ids = _ids(rows)
    for target in ("suite", *DOMAINS):
        y = col(rows, target)
        if not np.any(np.isfinite(y)):
            continue
        res = {}
        for metric, sign in METRICS.items():
            x = col(rows, metric)
            ok = np.isfinite(x) & np.isfinite(y)
            entry = {"spearman": spearman_ci(sign * x[ok], y[ok], s.n_resamples, s.seed, s.level)}
            pos = _pos(x, y)
            if pos.sum() >= 4:
                sub = [i for i, k in zip(ids, pos, strict=True) if k]
                loo = leave_one_out(_fitter("power", s), [x[pos]], y[pos], sub)
                entry["loo_mae"] = loo.get("mae")
                entry["loo_n"] = loo.get("n")
            else:
                entry["loo_mae"] = None
                entry["loo_note"] = "fewer than 4 runs with positive values"
            res[metric] = entry
        out["targets"][target] = res
    out["method"] = "signed Spearman (direction × ρ) with bootstrap CI; LOO MAE of log-log law"
    return out


def nominal_fraction(frac: float) -> float:
    """The checkpoint fraction a run meant: checkpoint steps are whole, so 1/16 of 250 steps
    is stored as 16/250 = 0.064 and of 500 steps as 31/500 = 0.062. Fractions within 12 %
    of a power of two are snapped to it, so that runs of different lengths pool together;
    others are kept (rounded to 1e-3)."""
    e = math.log2(frac)
    return 2.0 ** round(e) if abs(e - round(e)) < math.log2(1.12) else round(frac, 3)


def early_training(rows: list[dict], ckpt_rows: list[dict], s: FitSettings) -> dict:
    """Spearman between RankMe at each checkpoint fraction (``nominal_fraction``) and the
    final suite score."""
    final = {str(r.get("run_id")): float_or_nan(r.get("suite")) for r in rows}
    by_frac: dict[float, dict[str, float]] = {}
    for c in ckpt_rows:
        rid = str(c.get("run_id"))
        frac, rm = float_or_nan(c.get("fraction")), float_or_nan(c.get("rankme"))
        if rid in final and math.isfinite(frac) and math.isfinite(rm):
            by_frac.setdefault(nominal_fraction(frac), {})[rid] = rm
    points = []
    for frac in sorted(by_frac):
        pairs = [(v, final[k]) for k, v in by_frac[frac].items() if math.isfinite(final[k])]
        if not pairs:
            continue
        a = np.array(pairs)
        points.append(
            {"fraction": frac, **spearman_ci(a[:, 0], a[:, 1], s.n_resamples, s.seed, s.level)}
        )
    x, y = col(rows, "rankme"), col(rows, "suite")
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.any() and not any(p["fraction"] == 1.0 for p in points):
        points.append(
            {"fraction": 1.0, **spearman_ci(x[ok], y[ok], s.n_resamples, s.seed, s.level)}
        )
    return {"points": points, "target": "final suite score", "n_checkpoint_rows": len(ckpt_rows)}


def model_selection(rows: list[dict]) -> dict:
    """Best run by RankMe alone vs the label-selected best: the suite-score gap."""
    x, y = col(rows, "rankme"), col(rows, "suite")
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return {"note": f"{int(ok.sum())} runs with RankMe and suite; need 2"}
    ids = [i for i, k in zip(_ids(rows), ok, strict=True) if k]
    x, y = x[ok], y[ok]
    i_r, i_l = int(np.argmax(x)), int(np.argmax(y))
    order = np.argsort(-y)
    return {
        "by_rankme": {"run_id": ids[i_r], "rankme": x[i_r], "suite": y[i_r]},
        "by_label": {"run_id": ids[i_l], "rankme": x[i_l], "suite": y[i_l]},
        "gap": float(y[i_l] - y[i_r]),
        "rank_of_rankme_pick": int(np.where(order == i_r)[0][0]) + 1,
        "n": int(x.size),
    }


def confounds(rows: list[dict], s: FitSettings, n_col: str | None) -> dict:
    """Partial Spearman given epochs and log N, and Spearman within split regimes."""
    x, y = col(rows, "rankme"), col(rows, "suite")
    covs = {"epochs": col(rows, "epochs")}
    if n_col:
        covs[f"log {n_col}"] = np.log(col(rows, n_col))
    ok = np.isfinite(x) & np.isfinite(y)
    used = (
        [k for k, v in covs.items() if np.all(np.isfinite(v[ok])) and np.ptp(v[ok]) > 0]
        if ok.any()
        else []
    )
    out: dict = {"covariates": used}
    if used:
        cov = np.column_stack([covs[k][ok] for k in used])
        out["partial_spearman"] = partial_spearman(
            x[ok], y[ok], cov, s.n_resamples, s.seed, s.level
        )
    else:
        out["partial_spearman"] = {"value": None, "ci": None, "note": "no varying covariate"}
    out["regimes"] = {}
    for name, v in (
        ("epochs", covs["epochs"]),
        (n_col or "N", col(rows, n_col) if n_col else None),
    ):
        if v is None:
            continue
        out["regimes"][name] = split_regime(x, y, v, s)
    return out


def split_regime(x: np.ndarray, y: np.ndarray, v: np.ndarray, s: FitSettings) -> dict:
    """Spearman of RankMe with suite below/at and above the median of ``v``."""
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(v)
    if ok.sum() < 8 or np.ptp(v[ok]) == 0:
        return {"note": f"{int(ok.sum())} runs with this variable, need 8 that vary"}
    cut = float(np.median(v[ok]))
    lo, hi = ok & (v <= cut), ok & (v > cut)
    if lo.sum() < 4 or hi.sum() < 4:
        return {"note": "median split leaves fewer than 4 runs on a side", "cut": cut}
    return {
        "cut": cut,
        "low": spearman_ci(x[lo], y[lo], s.n_resamples, s.seed, s.level),
        "high": spearman_ci(x[hi], y[hi], s.n_resamples, s.seed, s.level),
    }


# --------------------------------------------------------------------------- verdict


def _fmt_rho(d: dict) -> str:
    ci = d.get("ci")
    ci_s = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
    return f"{d['value']:.2f}{ci_s}, n={d.get('n')}"


def verdict(fits: dict) -> str:
    """Plain-words summary of where the RankMe law held and where it broke."""
    svr = fits["score_vs_rankme"]
    sp = svr["correlations"].get("spearman", {})
    n = svr["n"]
    if n < 5 or sp.get("value") is None:
        return f"Too few runs with RankMe and a suite score to judge the relation (n={n})."
    rho, ci = sp["value"], sp.get("ci")
    if rho >= 0.7 and ci and ci[0] > 0:
        parts = [f"RankMe tracked the suite score (Spearman {_fmt_rho(sp)})."]
    elif rho >= 0.4:
        parts = [f"RankMe tracked the suite score only moderately (Spearman {_fmt_rho(sp)})."]
    elif rho <= -0.4:
        parts = [
            f"RankMe ran against the suite score here (Spearman {_fmt_rho(sp)}): higher RankMe "
            "went with lower scores, so it cannot rank these runs."
        ]
    else:
        parts = [
            "The relation between RankMe and the suite score is weak here "
            f"(Spearman {_fmt_rho(sp)})."
        ]
    parts += _regime_sentences(fits["confounds"])
    ps = fits["confounds"].get("partial_spearman", {})
    if ps.get("value") is not None:
        covs = " and ".join(fits["confounds"]["covariates"])
        parts.append(f"Controlling for {covs}, the partial Spearman is {_fmt_rho(ps)}.")
    flagged = svr["residuals"].get("flagged", [])
    if flagged:
        ids = ", ".join(f["run_id"] for f in flagged[:5])
        parts.append(
            f"{len(flagged)} run(s) lie more than {svr['residuals']['z_threshold']:g} SD "
            f"off the log-log fit: {ids}."
        )
    parts += _baseline_sentences(fits)
    if "learning" in fits:
        parts += learning_sentences(fits["learning"], fits.get("verification"))
    parts += _axes_sentences(fits.get("axes", {}).get("leave_one_axis_out", {}))
    fspl = (svr.get("validation", {}).get(svr.get("chosen_form") or "", {}) or {}).get(
        "fit_small_predict_large", {}
    )
    if fspl.get("mae") is not None:
        parts.append(
            f"Fitted on the {fspl['n_train']} smaller-compute runs, the law predicted the "
            f"{fspl['n_test']} larger ones with a mean absolute error of {fspl['mae']:.3g} "
            "(suite units)."
        )
    return " ".join(parts)


def _axes_sentences(loao: dict) -> list[str]:
    """Leave-one-axis-out in words: which axes the RankMe law absorbs, which break it."""
    tested = {a: r for a, r in loao.get("axes", {}).items() if r.get("verdict") != "not tested"}
    if not tested:
        return []
    absorbed = [f"{a} ({r['mae']:.3f})" for a, r in tested.items() if r["verdict"].endswith("axis")]
    broke = [f"{a} ({r['mae']:.3f})" for a, r in tested.items() if r["verdict"].endswith("it")]
    out = []
    tol = loao.get("tolerance", 0.02)
    if absorbed:
        out.append(
            f"Leaving one axis out, the law absorbs {', '.join(absorbed)}: fitted without "
            f"the runs that vary it, it predicts them within {tol:g} suite points (MAE)."
        )
    if broke:
        out.append(f"These axes break it (MAE above {tol:g}): {', '.join(broke)}.")
    return out


def _regime_sentences(conf: dict) -> list[str]:
    """Compare the Spearman below/at and above each median split, in words."""
    out = []
    for name, reg in conf.get("regimes", {}).items():
        lo, hi = reg.get("low", {}), reg.get("high", {})
        if lo.get("value") is None or hi.get("value") is None:
            continue
        label = "epochs" if name == "epochs" else "parameters"
        cut = f"{reg['cut']:.3g}"
        if abs(lo["value"] - hi["value"]) < 0.3:
            out.append(
                f"The Spearman was similar for runs with ≤ {cut} {label} ({_fmt_rho(lo)}) "
                f"and > {cut} {label} ({_fmt_rho(hi)})."
            )
            continue
        good, bad = (lo, hi) if lo["value"] > hi["value"] else (hi, lo)
        g_side, b_side = ("≤", ">") if good is lo else (">", "≤")
        if good["value"] >= 0.7 and bad["value"] < 0.4:
            out.append(
                f"It held for runs with {g_side} {cut} {label} (Spearman {_fmt_rho(good)}) "
                f"and broke for runs with {b_side} {cut} {label} (Spearman {_fmt_rho(bad)})."
            )
        else:
            out.append(
                f"It was stronger for runs with {g_side} {cut} {label} (Spearman "
                f"{_fmt_rho(good)}) than for {b_side} {cut} {label} ({_fmt_rho(bad)})."
            )
    return out


def _finite(v: object) -> bool:
    return v is not None and bool(np.isfinite(float(v)))


def _external_sentence(external: list[dict], scores: list[float]) -> list[str]:
    """Pretrained references, for scale: never fitted, never a bar to clear."""
    if not external:
        return []
    listed = ", ".join(f"{b['run_id']} {b['suite']:.3g}" for b in external)
    best = f"; best trained run {max(scores):.3g}" if scores else ""
    return [
        f"Pretrained reference encoders (other methods and data; not fitted, and their "
        f"RankMe is not comparable with the runs') scored on the suite: {listed}{best}."
    ]


def _baseline_sentences(fits: dict) -> list[str]:
    trained = [v for v in fits["score_vs_rankme"].get("rankme_values", []) if v is not None]
    out = []
    random = [b["rankme"] for b in fits.get("baselines", [])
              if b.get("kind") == "random-init" and b.get("rankme") is not None]  # fmt: skip
    if random and trained:
        lo, hi = min(trained), max(trained)
        where = {"above": sum(v > hi for v in random), "below": sum(v < lo for v in random)}
        where["within"] = len(random) - where["above"] - where["below"]
        counts = ", ".join(f"{n} {k}" for k, n in where.items() if n)
        lo_r, hi_r = f"{min(random):.3g}", f"{max(random):.3g}"
        span = lo_r if lo_r == hi_r else f"{lo_r}-{hi_r}"
        out.append(
            f"The {len(random)} random-init encoder(s) had RankMe {span} ({counts} the trained "
            f"runs' range [{lo:.3g}, {hi:.3g}]): compare RankMe among trained runs only."
        )
    scores = [v for v in fits["score_vs_rankme"].get("suite_values", []) if _finite(v)]
    scored = [b for b in fits.get("baselines", []) if _finite(b.get("suite"))]
    out += _external_sentence([b for b in scored if b.get("kind") == "external"], scores)
    scored = [b for b in scored if b.get("kind") != "external"]
    # random init as the learning checks see it (each architecture's mean over its init
    # seeds) when they paired it with trained runs; else the random-init rows themselves
    br = ((fits.get("learning") or {}).get("baselines") or {}).get("best_random_init")
    if br and _finite(br.get("suite")):
        scored = [b for b in scored if b.get("kind") != "random-init"]
        n = br.get("n_seeds", 1)
        kind = f"random-init, mean of {n} init seeds" if n > 1 else "random-init"
        scored.append({"kind": kind, "run_id": br["run_id"], "suite": br["suite"]})
    if scores and scored:
        best = max(scored, key=lambda b: b["suite"])
        if best["suite"] > max(scores):
            out.append(
                f"The best baseline ({best['kind']}, {best['run_id']}) scored {best['suite']:.3g} "
                f"on the suite, above every trained run (best {max(scores):.3g}): these encoders "
                "are not yet better than the baseline, so the law describes runs that are still "
                "short of useful training; train longer before reading it as a recipe."
            )
        else:
            out.append(
                f"The best trained run scored {max(scores):.3g} on the suite, above every "
                f"baseline (best: {best['kind']}, {best['suite']:.3g})."
            )
    return out


def headline(fits: dict) -> dict:
    svr = fits["score_vs_rankme"]
    form = svr.get("chosen_form")
    b = {"value": None, "ci": None}
    if form:
        pc = svr["forms"][form].get("params_ci", {}).get("b")
        if pc:
            b = {"value": pc["value"], "ci": pc["ci"]}
    sp = svr["correlations"].get("spearman", {})
    fspl = (svr.get("validation", {}).get(form or "", {}) or {}).get("fit_small_predict_large", {})
    vb = (fits.get("learning") or {}).get("baselines", {})
    ver = fits.get("verification") or {}
    out = {
        "n_runs": fits["data"]["n_trained"],
        "spearman_rankme_suite": {"value": sp.get("value"), "ci": sp.get("ci")},
        "exponent_b": b,
        "chosen_form": form,
        "fit_small_predict_large_mae": fspl.get("mae"),
        "best_trained_suite": (vb.get("best_trained") or {}).get("suite"),
        "margin_over_random_init": vb.get("margin_over_random_init"),
        "margin_over_logmel": vb.get("margin_over_logmel"),
        "verification": ver.get("outcome") or ver.get("note"),
    }
    if ver.get("run"):
        pred = ver.get("predicted", {})
        out["verification_predicted"] = {"value": pred.get("suite"), "ci": pred.get("interval")}
        out["verification_measured"] = (ver.get("measured") or {}).get("suite")
    out["verdict"] = fits["verdict"]
    return out


# --------------------------------------------------------------------------- entry points


def fit_results(
    rows: list[dict], ckpt_rows: list[dict] | None = None, settings: FitSettings | None = None
) -> dict:
    """Every fit of a study from result rows (pure); returns the fits.json dict."""
    s = settings or FitSettings()
    ckpt_rows = ckpt_rows or []
    trained = [r for r in rows if is_trained(r)]
    verify_rows = [r for r in rows if r.get("kind") == "verify"]
    others = [r for r in rows if not is_trained(r) and r.get("kind") != "verify"]
    n_col = _first_column(trained, ("params_nonembed", "params"))
    d_col = _first_column(trained, ("examples_seen", "hours_seen"))
    fits: dict = {
        "version": FITS_VERSION,
        "settings": {**asdict(s), "bootstrap": METHOD},
        "data": {
            "n_rows": len(rows),
            "n_trained": len(trained),
            "n_baselines": len(others),
            "N": n_col,
            "D": d_col,
            "C": "train_flops",
            "run_ids": _ids(trained),
        },
        "baselines": [
            {
                "run_id": i,
                "kind": r.get("kind"),
                "rankme": float_or_nan(r.get("rankme")),
                "suite": float_or_nan(r.get("suite")),
            }
            for i, r in zip(_ids(others), others, strict=True)
        ],
    }
    # the fit's band spans the baselines' RankMe, not the external encoders' (another method)
    own = [r for r in others if r.get("kind") != "external"]
    fits["score_vs_rankme"] = score_vs_rankme(trained, s, col(own, "rankme"))
    fits["score_vs_rankme"]["rankme_values"] = col(trained, "rankme")
    fits["score_vs_rankme"]["suite_values"] = col(trained, "suite")
    fits["laws"] = single_laws(trained, s, n_col, d_col)
    fits["joint"] = joint_laws(trained, s, n_col, d_col)
    fits["metric_comparison"] = metric_comparison(trained, s)
    fits["early_training"] = early_training(trained, ckpt_rows, s)
    fits["model_selection"] = model_selection(trained)
    fits["confounds"] = confounds(trained, s, n_col)
    fits["confounds"]["flagged"] = fits["score_vs_rankme"]["residuals"].get("flagged", [])
    fits["axes"] = {
        "leave_one_axis_out": leave_one_axis_out(trained, n_resamples=s.n_resamples, seed=s.seed),
        "residuals": axis_residuals(trained),
    }
    fits["learning"] = {
        "baselines": versus_baselines(trained, others),
        "compute": compute_buys_quality(trained),
    }
    fits["verification"] = verification_for(
        trained, verify_rows, clean(fits["joint"]), s.seed, s.n_resamples_joint, s.level
    )
    fits = clean(fits)
    fits["verdict"] = verdict(fits)
    fits["headline"] = headline(fits)
    return fits


def load_store_rows(study_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """(results, checkpoint_metrics) from STUDY_DIR/study.db."""
    db = Path(study_dir) / "study.db"
    if not db.is_file():
        raise DataError(f"{db}: no study database here (run `audioscale sweep` or `study` first)")
    from audioscale.sweep.store import Store

    store = Store(db)
    try:
        return store.results(), store.checkpoint_metrics()
    finally:
        store.close()


def fit_study(study_dir: str | Path, settings: FitSettings | None = None) -> dict:
    """Fit a study's results and write STUDY_DIR/fits.json atomically; returns the dict."""
    rows, ckpt = load_store_rows(study_dir)
    if not rows:
        raise DataError(f"{Path(study_dir) / 'study.db'}: no finished runs to fit")
    fits = fit_results(rows, ckpt, settings)
    atomic_save_json(Path(study_dir) / "fits.json", fits)
    return fits


__all__ = ["FitSettings", "fit_results", "fit_study", "load_store_rows", "percentile_ci"]


def synthetic_rows(
    n: int = 24,
    seed: int = 0,
    b: float = 0.5,
    a: float = 0.12,
    noise: float = 0.02,
    joint: tuple[float, float, float, float, float] = (1.5, 400.0, 900.0, 0.34, 0.28),
    baselines: bool = True,
) -> tuple[list[dict], list[dict]]:
    """A synthetic study with known laws, for tests, benchmarks and report previews.

    N log-uniform in [1e5, 2e7], D (examples) in [1e4, 1e6]; held-out loss =
    E + A/N^α + B/D^β (``joint``) × lognormal(``noise``/4); RankMe = 5·(N/1e5)^0.15·
    (D/1e4)^0.1 × lognormal(``noise``); suite = a·RankMe^b × lognormal(``noise``).
    Returns (rows, checkpoint rows) in the store's formats.
    """
    rng = np.random.default_rng(seed)
    e, aa, bb, al, be = joint
    rows, ckpt = [], []
    for i in range(n):
        nn = float(np.exp(rng.uniform(np.log(1e5), np.log(2e7))))
        d = float(np.exp(rng.uniform(np.log(1e4), np.log(1e6))))
        data_ex = float(rng.choice([2e4, 1e5, 5e5]))
        fpe = 300.0 * nn
        loss = (e + aa / nn**al + bb / d**be) * float(np.exp(rng.normal(0, noise / 4)))
        rm = 5.0 * (nn / 1e5) ** 0.15 * (d / 1e4) ** 0.1 * float(np.exp(rng.normal(0, noise)))
        suite = a * rm**b * float(np.exp(rng.normal(0, noise)))
        rid = f"run{i:03d}"
        rows.append(
            {
                "run_id": rid,
                "name": rid,
                "kind": "trained",
                "family": "vit",
                "params": nn * 1.1,
                "params_nonembed": nn,
                "flops_per_example": fpe,
                "train_flops": fpe * d,
                "examples_seen": d,
                "hours_seen": d * 2 / 3600,
                "data_hours": data_ex * 2 / 3600,
                "epochs": d / data_ex,
                "steps": int(d / 64),
                "batch_size": 64,
                "heldout_loss": loss,
                "final_loss": loss * 0.98,
                "rankme": rm,
                "rankme_N": 1024,
                "rankme_K": 192,
                "rankme_pool": "heldout",
                "pool_overlap": False,
                "rankme_train": rm * (1 + 0.02 * np.log1p(d / data_ex)),
                "rankme_gap": rm * 0.02 * float(np.log1p(d / data_ex)),
                "alpha_req": 3.0 / rm * float(np.exp(rng.normal(0, 0.1))),
                "nesum": rm * 0.8 * float(np.exp(rng.normal(0, 0.05))),
                "stable_rank": rm**0.7 * float(np.exp(rng.normal(0, 0.1))),
                "participation_ratio": rm**0.8 * float(np.exp(rng.normal(0, 0.2))),
                "suite": suite,
                "suite_linear": suite * 1.05,
                "suite_knn": suite * 0.95,
                "suite_weighted": suite,
                "domain_speech": suite * float(np.exp(rng.normal(0, 0.03))),
                "domain_music": suite * float(np.exp(rng.normal(0, 0.1))),
                "domain_environment": suite * float(np.exp(rng.normal(0, 0.3))),
            }
        )
        for j, frac in enumerate([1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2]):
            ckpt.append(
                {
                    "run_id": rid,
                    "step": int(frac * d / 64),
                    "fraction": frac,
                    "rankme": rm
                    * (0.6 + 0.4 * frac**0.3)
                    * float(np.exp(rng.normal(0, 0.05 * (6 - j)))),
                    "loss": loss * (1 + 1 / (1 + 10 * frac)),
                }
            )
    if baselines:
        for kind, rm, sc in (
            ("random-init", 20.0, 0.2),
            ("baseline", 9.0, 0.25),
            ("external", 30.0, 0.75),
        ):
            rows.append({"run_id": kind, "name": kind, "kind": kind, "rankme": rm, "suite": sc})
    return rows, ckpt
