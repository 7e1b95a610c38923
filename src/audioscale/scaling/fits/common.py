"""What every fit section shares: the settings, the version of fits.json, column access
and the JSON cleaning of the result."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from audioscale.utils import float_or_nan

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


def col(rows: list[dict], key: str) -> np.ndarray:
    """Column ``key`` as floats; None / missing / non-numeric become NaN."""
    return np.array([float_or_nan(r.get(key)) for r in rows], dtype=float)


def is_trained(row: dict) -> bool:
    return row.get("kind") in (None, "trained")


def run_ids(rows: list[dict]) -> list[str]:
    return [str(r.get("run_id") or r.get("name") or f"row{i}") for i, r in enumerate(rows)]


def positive(*arrs: np.ndarray) -> np.ndarray:
    ok = np.ones(arrs[0].shape, bool)
    for a in arrs:
        ok &= np.isfinite(a) & (a > 0)
    return ok


def first_column(rows: list[dict], keys: tuple[str, ...]) -> str | None:
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
