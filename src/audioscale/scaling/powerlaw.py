"""Power-law, saturating and joint scaling fits, all in log space of the target.

Forms (y > 0, x > 0):

- ``power``: y = a·x^b, fitted as log y = log a + b·log x by ordinary least squares
  (or, with ``huber=True``, by ``scipy.optimize.least_squares`` with the Huber loss,
  scale ``huber_delta``, on the log residuals).
- ``saturating``: y = c − a·x^(−b), a > 0, b > 0, c > max(y), fitted on log residuals
  log(ŷ) − log(y) by ``scipy.optimize.least_squares`` (trust-region reflective, bounds
  a ∈ [1e-12, 1e12], b ∈ [0.01, 5], c ∈ [max(y)·(1+1e-9), max(y) + 100·(|max y| + range)])
  from a grid of starts (b ∈ {0.1, 0.3, 1, 3} × c ∈ {max y + 0.05·range, + 0.5·range,
  + 3·range}, a by least squares given b and c; at most 100 evaluations each, analytic
  Jacobian); the best converged start wins. When none converged, the lowest-cost one is
  continued for up to 300 evaluations (``POLISH_MAX_NFEV``). Refits of a resample or a
  leave-one-out fold (``refit_saturating``) start from the full-data optimum; a
  leave-one-out fold whose warm start fails falls back to this cold-start grid.
  A fit whose b or c ends on a bound is reported as degenerate (the data do not
  identify a plateau), not returned as a law.
- ``joint``: L(N, D) = E + A/N^α + B/D^β, fitted as in Hoffmann et al. 2022 ("Training
  Compute-Optimal Large Language Models", approach 3): log L̂ = log(E + exp(a − α log N)
  + exp(b − β log D)) against log L (E kept linear, bounded at 0, so that "no
  irreducible term" is reachable; analytic Jacobian), from a grid of 8 starts
  (α, β ∈ {0.25, 0.75} × E ∈ {0.3, 0.8}·min L, A and B splitting the rest at the
  median run; at most 200 evaluations each, the best unfinished start continued for up
  to 300 evaluations when none converged), bounds α, β ∈ [0.01, 3], 0 ≤ E ≤ max L.
  Plain least squares by default; ``huber=True`` uses Hoffmann et al.'s Huber loss
  with δ = 1e-3 (robust to outlier runs, but it behaves like an L1 fit when the
  run-to-run noise exceeds δ, as it does in small audio studies).

Model choice between ``power`` and ``saturating`` is by AIC computed on the log
residuals with a Gaussian likelihood, AIC = n·ln(RSS/n) + 2k where k counts the fitted
parameters plus the noise variance (Burnham & Anderson 2002, "Model Selection and
Multimodel Inference", §2.2). When n/k < 40 the small-sample AICc = AIC +
2k(k+1)/(n − k − 1) is used instead (ibid. §2.4). R² is reported in log space.
Non-convergence and degenerate fits come back with ``converged=False`` and a message.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import OptimizeResult, least_squares

from audioscale.numerics import loglog_line
from audioscale.utils import finite_or_none

SAT_B_BOUNDS = (0.01, 5.0)
JOINT_EXP_BOUNDS = (0.01, 3.0)
JOINT_HUBER_DELTA = 1e-3
# Evaluations per start; a start that needs more is counted as not converged.
SAT_MAX_NFEV = 100
JOINT_MAX_NFEV = 200
WARM_MAX_NFEV = 50  # warm-started refits, before the fallbacks below
# When no start converged within its cap, the lowest-cost unfinished start is continued
# for up to POLISH_MAX_NFEV evaluations: slow valleys (b and c trading off) then end at
# an interior optimum or on a bound (reported as degenerate), not as "no start converged".
POLISH_MAX_NFEV = 300


@dataclass
class Fit:
    """One fitted law. ``params`` are in natural units (a, b, c / E, A, B, alpha, beta)."""

    form: str
    params: dict[str, float]
    n: int
    converged: bool
    message: str = ""
    rss: float = math.nan  # residual sum of squares of log y
    r2: float = math.nan  # R² of log y
    aic: float = math.nan
    aicc: float = math.nan
    k: int = 0  # fitted parameters + 1 (noise variance)
    settings: dict = field(default_factory=dict)

    @property
    def ic(self) -> float:
        """The criterion used for model choice: AICc when n/k < 40, else AIC."""
        return self.aicc if self.n / max(self.k, 1) < 40 else self.aic

    def predict(self, *x: np.ndarray) -> np.ndarray:
        if not self.converged:
            raise ValueError(f"{self.form} fit did not converge: {self.message}")
        return predict(self.form, self.params, *x)

    def to_dict(self) -> dict:
        return {
            "form": self.form,
            "params": {k: finite_or_none(v) for k, v in self.params.items()},
            "n": self.n,
            "converged": self.converged,
            "message": self.message,
            "rss_log": finite_or_none(self.rss),
            "r2_log": finite_or_none(self.r2),
            "aic": finite_or_none(self.aic),
            "aicc": finite_or_none(self.aicc),
            "k": self.k,
            "settings": self.settings,
        }


def predict(form: str, p: dict[str, float], *x: np.ndarray) -> np.ndarray:
    """Evaluate a law with parameters ``p`` at ``x`` (``N, D`` for the joint form)."""
    if form == "power":
        return p["a"] * np.asarray(x[0], float) ** p["b"]
    if form == "saturating":
        return p["c"] - p["a"] * np.asarray(x[0], float) ** (-p["b"])
    if form == "joint":
        n, d = (np.asarray(v, float) for v in x)
        return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]
    raise ValueError(f"unknown form {form!r}")


def _check_xy(x: np.ndarray, y: np.ndarray, need: int) -> str:
    """Why (x, y) cannot be fitted ('' if it can)."""
    if x.size < need:
        return f"n={x.size} points, need at least {need}"
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return "non-finite values"
    if np.any(x <= 0) or np.any(y <= 0):
        return "log-space fit needs positive x and y"
    if np.ptp(np.log(x)) < 1e-12:
        return "x does not vary"
    return ""


def _info(fit: Fit, resid: np.ndarray, logy: np.ndarray, n_par: int) -> Fit:
    n = logy.size
    fit.rss = float(np.sum(resid**2))
    tss = float(np.sum((logy - logy.mean()) ** 2))
    fit.r2 = 1.0 - fit.rss / tss if tss > 0 else math.nan
    fit.k = n_par + 1
    rss = max(fit.rss, 1e-300)
    fit.aic = n * math.log(rss / n) + 2 * fit.k
    fit.aicc = (
        fit.aic + 2 * fit.k * (fit.k + 1) / (n - fit.k - 1) if n - fit.k - 1 > 0 else math.inf
    )
    return fit


def fit_power(x: np.ndarray, y: np.ndarray, huber: bool = False, huber_delta: float = 0.1) -> Fit:
    """y = a·x^b by least squares on (log x, log y); Huber loss optional. Needs n ≥ 3."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    settings = {"space": "log-log", "loss": "huber" if huber else "ols"}
    if huber:
        settings["huber_delta"] = huber_delta
    why = _check_xy(x, y, 3)
    if why:
        return Fit("power", {"a": math.nan, "b": math.nan}, x.size, False, why, settings=settings)
    lx, ly = np.log(x), np.log(y)
    loga, b = loglog_line(lx, ly, method="lstsq")
    if huber:
        res = least_squares(
            lambda t: t[0] + t[1] * lx - ly, [loga, b], loss="huber", f_scale=huber_delta
        )
        if not res.success:
            return Fit("power", {"a": math.nan, "b": math.nan}, x.size, False, res.message)
        loga, b = res.x
    fit = Fit(
        "power", {"a": float(math.exp(loga)), "b": float(b)}, x.size, True, "ok", settings=settings
    )
    return _info(fit, loga + b * lx - ly, ly, 2)


def power_ols_batch(lx: np.ndarray, ly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised OLS slope/intercept for many resamples: lx, ly of shape (R, n).

    Returns (log a, b); resamples where x does not vary give NaN.
    """
    return loglog_line(lx, ly)


def _sat_bounds(y: np.ndarray) -> tuple[list[float], list[float]]:
    ymax, rng = float(y.max()), float(np.ptp(y))
    c_lo = ymax * (1 + 1e-9) + 1e-12
    c_hi = ymax + 100.0 * (abs(ymax) + rng)
    return [1e-12, SAT_B_BOUNDS[0], c_lo], [1e12, SAT_B_BOUNDS[1], c_hi]


def _sat_starts(x: np.ndarray, y: np.ndarray) -> list[list[float]]:
    ymax, rng = float(y.max()), float(np.ptp(y)) or abs(float(y.max())) or 1.0
    starts = []
    for b, dc in itertools.product((0.1, 0.3, 1.0, 3.0), (0.05, 0.5, 3.0)):
        c = ymax + dc * rng
        xb = x ** (-b)
        a = float(np.dot(c - y, xb) / np.dot(xb, xb))
        if a > 0:
            starts.append([a, b, c])
    return starts


def _best_start(
    fun: Callable[[np.ndarray], np.ndarray],
    jac: Callable[[np.ndarray], np.ndarray],
    starts: Iterable[np.ndarray],
    bounds: tuple[list[float], list[float]],
    settings: dict,
    huber: bool,
    huber_delta: float,
    max_nfev: int,
    polish_nfev: int,
    skip: tuple[type[Exception], ...] = (),
) -> OptimizeResult | None:
    """Bounded trust-region solves from each of ``starts`` (already inside ``bounds``); the
    lowest-cost converged one, else the lowest-cost unfinished one continued to
    ``polish_nfev`` evaluations (``settings["polished"]`` marks that), else None.
    A solve raising one of ``skip`` counts as no result (its start is passed over)."""

    def solve(t0: np.ndarray, nfev: int) -> OptimizeResult | None:
        try:
            return least_squares(
                fun,
                t0,
                jac=jac,
                bounds=bounds,
                loss="huber" if huber else "linear",
                f_scale=huber_delta,
                max_nfev=nfev,
                x_scale="jac",
            )
        except skip:
            return None

    best = unfinished = None
    for s in starts:
        res = solve(s, max_nfev)
        if res is None:
            continue
        if res.success and (best is None or res.cost < best.cost):
            best = res
        elif not res.success and (unfinished is None or res.cost < unfinished.cost):
            unfinished = res
    if best is None and unfinished is not None and polish_nfev > max_nfev:
        res = solve(unfinished.x, polish_nfev)
        settings["polished"] = True
        best = res if res is not None and res.success else None
    return best


def fit_saturating(
    x: np.ndarray,
    y: np.ndarray,
    huber: bool = False,
    huber_delta: float = 0.1,
    starts: list[list[float]] | None = None,
    max_nfev: int = SAT_MAX_NFEV,
    polish_nfev: int = POLISH_MAX_NFEV,
) -> Fit:
    """y = c − a·x^(−b) on log residuals, several starts, bounds; see the module text.

    ``starts`` replaces the grid (``refit_saturating`` passes a previous optimum);
    ``polish_nfev`` caps the continuation of the best unfinished start (0: none).

    Needs n ≥ 5 (4 criterion parameters plus one residual degree of freedom).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    settings = {
        "space": "log residuals",
        "loss": "huber" if huber else "linear",
        "b_bounds": list(SAT_B_BOUNDS),
        "solver": "scipy least_squares trf",
    }
    nan_p = {"a": math.nan, "b": math.nan, "c": math.nan}
    why = _check_xy(x, y, 5)
    if why:
        return Fit("saturating", nan_p, x.size, False, why, settings=settings)
    ly = np.log(y)
    lo, hi = _sat_bounds(y)
    resid, jac = _sat_residuals(x, ly)
    starts = starts if starts is not None else _sat_starts(x, y)
    settings["n_starts"] = len(starts)
    x0 = (np.clip(np.asarray(s, float), lo, hi) for s in starts)
    best = _best_start(
        resid, jac, x0, (lo, hi), settings, huber, huber_delta, max_nfev, polish_nfev, (ValueError,)
    )
    if best is None:
        return Fit("saturating", nan_p, x.size, False, "no start converged", settings=settings)
    a, b, c = (float(v) for v in best.x)
    params = {"a": a, "b": b, "c": c}
    on_bound = _sat_degenerate(a, b, c, x, hi[2])
    if on_bound:
        return Fit(
            "saturating",
            params,
            x.size,
            False,
            "degenerate: " + "; ".join(on_bound),
            settings=settings,
        )
    fit = Fit("saturating", params, x.size, True, "ok", settings=settings)
    return _info(fit, resid(best.x), ly, 3)


def _sat_residuals(x: np.ndarray, ly: np.ndarray) -> tuple[Callable, Callable]:
    """Log residuals of y = c − a·x^(−b) at t = (a, b, c) and their Jacobian."""
    lx = np.log(x)

    def resid(t: np.ndarray) -> np.ndarray:
        yhat = t[2] - t[0] * x ** (-t[1])
        return np.log(np.maximum(yhat, 1e-12)) - ly

    def jac(t: np.ndarray) -> np.ndarray:
        xb = x ** (-t[1])
        inv = 1.0 / np.maximum(t[2] - t[0] * xb, 1e-12)
        return np.column_stack([-xb * inv, t[0] * xb * lx * inv, inv])

    return resid, jac


def _sat_degenerate(a: float, b: float, c: float, x: np.ndarray, c_hi: float) -> list[str]:
    """Why a saturating optimum is no fit: b or c on a bound, a non-positive prediction."""
    on_bound = []
    if b <= SAT_B_BOUNDS[0] * 1.01 or b >= SAT_B_BOUNDS[1] * 0.99:
        on_bound.append(f"b={b:.3g} on its bound")
    if c >= c_hi * 0.99:
        on_bound.append("c on its upper bound (no plateau in the data)")
    if np.any(c - a * x ** (-b) <= 1e-12):
        on_bound.append("prediction not positive at some x")
    return on_bound


def refit_saturating(
    x: np.ndarray,
    y: np.ndarray,
    warm: list[list[float]] | None,
    huber: bool = False,
    huber_delta: float = 0.1,
    cold: bool = True,
) -> Fit:
    """A refit on a subset of the runs (bootstrap resample, leave-one-out fold): the warm
    start (``WARM_MAX_NFEV`` evaluations, then polished), and when that fails the
    cold-start grid of ``fit_saturating`` (``cold=True``). ``settings["start"]`` says
    which one gave the result: "warm", "cold fallback" or "failed"."""
    fit = None
    if warm:
        fit = fit_saturating(x, y, huber, huber_delta, warm, WARM_MAX_NFEV)
        if fit.converged:
            fit.settings["start"] = "warm"
            return fit
    if cold or fit is None:
        fit = fit_saturating(x, y, huber, huber_delta)
        fit.settings["start"] = "cold fallback" if fit.converged else "failed"
        return fit
    fit.settings["start"] = "failed"
    return fit


def choose(fits: list[Fit]) -> tuple[Fit | None, dict]:
    """Pick the converged fit with the lowest criterion (AICc if n/k < 40, else AIC)."""
    ok = [f for f in fits if f.converged and math.isfinite(f.ic)]
    if not ok:
        return None, {"criterion": None, "reason": "no form converged"}
    best = min(ok, key=lambda f: f.ic)
    crit = "AICc" if best.n / best.k < 40 else "AIC"
    delta = {f.form: finite_or_none(f.ic - best.ic) for f in ok}
    return best, {"criterion": crit, "delta": delta, "reason": f"lowest {crit}"}


# --------------------------------------------------------------------------- joint L(N, D)


def _joint_model(t: np.ndarray, ln: np.ndarray, ld: np.ndarray) -> np.ndarray:
    """log L̂ for t = (E, log A, log B, α, β); E linear so that its bound 0 is reachable."""
    big_e, a, b, al, be = t
    return np.log(big_e + np.exp(a - al * ln) + np.exp(b - be * ld))


def _joint_jac(t: np.ndarray, ln: np.ndarray, ld: np.ndarray) -> np.ndarray:
    big_e, a, b, al, be = t
    ta, tb = np.exp(a - al * ln), np.exp(b - be * ld)
    inv = 1.0 / (big_e + ta + tb)
    return np.column_stack([inv, ta * inv, tb * inv, -ta * ln * inv, -tb * ld * inv])


def _joint_starts(ln: np.ndarray, ld: np.ndarray, ll: np.ndarray) -> list[list[float]]:
    starts = []
    lmin, lmed = math.exp(float(ll.min())), math.exp(float(np.median(ll)))
    for al, be, ef in itertools.product((0.25, 0.75), (0.25, 0.75), (0.3, 0.8)):
        big_e = ef * lmin
        rest = math.log(max(lmed - big_e, 1e-9) / 2)
        starts.append(
            [big_e, rest + al * float(np.median(ln)), rest + be * float(np.median(ld)), al, be]
        )
    return starts


def fit_joint(
    n: np.ndarray,
    d: np.ndarray,
    loss: np.ndarray,
    starts: list[list[float]] | None = None,
    huber: bool = False,
    huber_delta: float = JOINT_HUBER_DELTA,
    min_runs: int = 8,
    max_nfev: int = JOINT_MAX_NFEV,
    polish_nfev: int = POLISH_MAX_NFEV,
) -> Fit:
    """L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022, approach 3); see the module text.

    Needs ``min_runs`` runs (default 8) with at least 3 distinct N and 3 distinct D.
    """
    n, d, loss = (np.asarray(v, float) for v in (n, d, loss))
    settings = {
        "space": "log residuals, log-sum-exp parameterisation",
        "loss": "huber" if huber else "linear",
        "exp_bounds": list(JOINT_EXP_BOUNDS),
        "solver": "scipy least_squares trf",
    }
    if huber:
        settings["huber_delta"] = huber_delta
    nan_p = {k: math.nan for k in ("E", "A", "B", "alpha", "beta")}
    why = _check_joint(n, d, loss, min_runs)
    if why:
        return Fit("joint", nan_p, n.size, False, why, settings=settings)
    ln, ld, ll = np.log(n), np.log(d), np.log(loss)
    # E = 0 on its bound means "no irreducible term identified".
    lo = [0.0, -50.0, -50.0, JOINT_EXP_BOUNDS[0], JOINT_EXP_BOUNDS[0]]
    hi = [float(loss.max()), 200.0, 200.0, JOINT_EXP_BOUNDS[1], JOINT_EXP_BOUNDS[1]]
    starts = starts if starts is not None else _joint_starts(ln, ld, ll)
    settings["n_starts"] = len(starts)
    x0 = (np.clip(np.asarray(s, float), np.array(lo) + 1e-9, np.array(hi) - 1e-9) for s in starts)

    def resid(t: np.ndarray) -> np.ndarray:
        return _joint_model(t, ln, ld) - ll

    def jac(t: np.ndarray) -> np.ndarray:
        return _joint_jac(t, ln, ld)

    best = _best_start(
        resid, jac, x0, (lo, hi), settings, huber, huber_delta, max_nfev, polish_nfev
    )
    if best is None:
        return Fit("joint", nan_p, n.size, False, "no start converged", settings=settings)
    big_e, a, b, al, be = (float(v) for v in best.x)
    params = {"E": big_e, "A": math.exp(a), "B": math.exp(b), "alpha": al, "beta": be}
    bad = _joint_degenerate(params, n, d, loss)
    if bad:
        return Fit(
            "joint", params, n.size, False, "degenerate: " + "; ".join(bad), settings=settings
        )
    msg = "ok" if big_e > 1e-9 * float(loss.min()) else "ok; E = 0 (no irreducible term identified)"
    fit = Fit("joint", params, n.size, True, msg, settings=settings)
    return _info(fit, _joint_model(best.x, ln, ld) - ll, ll, 5)


def _joint_degenerate(params: dict, n: np.ndarray, d: np.ndarray, loss: np.ndarray) -> list[str]:
    """Why a joint optimum is no fit: an exponent on its bound, a term that vanished."""
    bad = [
        f"{k}={params[k]:.3g} on its bound"
        for k in ("alpha", "beta")
        if params[k] <= JOINT_EXP_BOUNDS[0] * 1.01 or params[k] >= JOINT_EXP_BOUNDS[1] * 0.99
    ]
    return bad + _vanished_terms(params, n, d, loss)


def _vanished_terms(params: dict, n: np.ndarray, d: np.ndarray, loss: np.ndarray) -> list[str]:
    """A term that stays below 0.1 % of the loss over every run (e.g. A ≈ 1e-22) means the
    data did not identify that variable's effect: its exponent is arbitrary, so the fit
    (and any compute allocation built on it) would be a wrong fit printed as a law."""
    out = []
    floor = 1e-3 * float(np.min(loss))
    if float(np.max(params["A"] * n ** -params["alpha"])) < floor:
        out.append("the N term A/N^alpha vanished (N's effect is not identified)")
    if float(np.max(params["B"] * d ** -params["beta"])) < floor:
        out.append("the D term B/D^beta vanished (D's effect is not identified)")
    return out


def joint_start_from(fit: Fit) -> list[float]:
    """The internal parameter vector of a converged joint fit, to warm-start refits."""
    p = fit.params
    return [p["E"], math.log(p["A"]), math.log(p["B"]), p["alpha"], p["beta"]]


def _check_joint(n: np.ndarray, d: np.ndarray, loss: np.ndarray, min_runs: int) -> str:
    if n.size < min_runs:
        return f"n={n.size} runs, need at least {min_runs} for 5 parameters"
    if not all(np.all(np.isfinite(v)) and np.all(v > 0) for v in (n, d, loss)):
        return "needs positive, finite N, D and loss"
    if np.unique(n).size < 3 or np.unique(d).size < 3:
        return "needs at least 3 distinct N and 3 distinct D"
    return ""
