"""The label-free metrics, early-training, model-selection and confound sections of
fits.json."""

from __future__ import annotations

import math

import numpy as np

from audioscale.scaling.correlation import partial_spearman, spearman_ci
from audioscale.scaling.fits.common import DOMAINS, METRICS, FitSettings, col, positive, run_ids
from audioscale.scaling.fits.laws import fitter
from audioscale.scaling.validate import leave_one_out
from audioscale.utils import float_or_nan


def metric_comparison(rows: list[dict], s: FitSettings) -> dict:
    """Each label-free metric as a predictor of the suite and domain scores."""
    out: dict = {"direction": METRICS, "targets": {}}
    ids = run_ids(rows)
    for target in ("suite", *DOMAINS):
        y = col(rows, target)
        if not np.any(np.isfinite(y)):
            continue
        res = {}
        for metric, sign in METRICS.items():
            x = col(rows, metric)
            ok = np.isfinite(x) & np.isfinite(y)
            entry = {"spearman": spearman_ci(sign * x[ok], y[ok], s.n_resamples, s.seed, s.level)}
            pos = positive(x, y)
            if pos.sum() >= 4:
                sub = [i for i, k in zip(ids, pos, strict=True) if k]
                loo = leave_one_out(fitter("power", s), [x[pos]], y[pos], sub)
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
    ids = [i for i, k in zip(run_ids(rows), ok, strict=True) if k]
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
