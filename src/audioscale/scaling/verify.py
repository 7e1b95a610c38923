"""Close the loop: train the allocated configuration and check it against its prediction.

A compute allocation (``allocation.allocate``) names a continuous optimum (N*, D*) for a
FLOP budget C. A run can only be trained at a real model size, so the verification run
is planned as follows, and every choice is written to fits.json:
- candidates are the size-ladder presets (``models.ladder.SIZE_PRESETS``) in the study's base
  architecture (family, patch, clip length and mask ratio of the base config); each gets
  its non-embedding parameter count N (built on the meta device, no memory) and its
  training FLOPs per example f(N) (``models.accounting``);
- the preset nearest N* in log N is chosen; it is trained on D = C / f(N) examples, i.e.
  round(D / batch) steps of the base batch size, so the run spends the budget;
- the prediction for that (N, D) is the joint law E + A/N^α + B/D^β evaluated at the
  fitted parameters, with a 95 % *prediction* interval for one new run: the measured
  score of a single run scatters about the law as the trained runs do, so an interval
  for the law's mean alone would call a run a miss for its own noise. Residual bootstrap
  over the fixed design (Davison & Hinkley 1997, Algorithm 6.4, in log space, where the
  law is fitted): each resample refits the law on fitted + resampled residuals
  (warm-started from the full fit), draws one more residual for the new run, and gives
  the prediction error δ* = log L̂*(N, D) − (log L̂(N, D) + ε*); the limits are
  log L̂(N, D) − δ* at the 97.5 % and 2.5 % quantiles. The failed fraction is reported and
  the interval refused above ``bootstrap.MAX_FAILED_FRACTION``;
- the target is the suite error 1 − suite, so the predicted suite is 1 − L.
After the run is measured, ``check`` reports measured against predicted, the interval
and a plain hit (inside) or miss (with its size in suite points). Beside it, the RankMe
the trained runs' log-linear law in N and D predicts for the run (a prediction interval,
``allocation.rankme_prediction``) and the RankMe it measured.
"""

from __future__ import annotations

import math

import numpy as np

from audioscale.scaling.allocation import JOINT_KEYS, rankme_prediction
from audioscale.scaling.axes import base_config
from audioscale.scaling.bootstrap import RESIDUAL_METHOD, residual_resamples, summarise
from audioscale.scaling.powerlaw import WARM_MAX_NFEV, fit_joint, joint_start_from
from audioscale.scaling.schema import JointLaw
from audioscale.utils import finite_or_none, float_or_nan


def ladder_candidates(base_model: dict, frontend: dict | None, clip_seconds: float) -> list:
    """(preset, N non-embedding encoder params, training FLOPs/example) for every rung."""
    import torch

    from audioscale.config import FrontendConfig, ModelConfig
    from audioscale.models.accounting import count_params, train_flops_per_example
    from audioscale.models.ladder import SIZE_PRESETS
    from audioscale.models.mae import build_mae

    fe = FrontendConfig(**(frontend or {}))
    keep = {k: v for k, v in base_model.items() if k in ("family", "patch", "mask_ratio")}
    out = []
    for name in SIZE_PRESETS:
        cfg = ModelConfig(**keep, preset=name)
        with torch.device("meta"):
            n = count_params(build_mae(cfg, fe))["encoder_nonembed"]
        out.append((name, float(n), float(train_flops_per_example(cfg, fe, clip_seconds))))
    return out


def choose_run(n_opt: float, budget: float, candidates: list, batch_size: int) -> dict:
    """The rung nearest N* (log distance) and its steps for the budget."""
    name, n, fpe = min(candidates, key=lambda c: abs(math.log(c[1] / n_opt)))
    steps = max(1, round(budget / fpe / batch_size))
    return {
        "preset": name,
        "N": n,
        "flops_per_example": fpe,
        "steps": int(steps),
        "D": float(steps * batch_size),
        "flops": float(steps * batch_size * fpe),
    }


def predict_interval(
    n: np.ndarray,
    d: np.ndarray,
    target: np.ndarray,
    n_new: float,
    d_new: float,
    n_resamples: int = 300,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Joint-law prediction of ``target`` for one new run at (n_new, d_new), with a
    residual-bootstrap prediction interval (module text; ``bootstrap.summarise`` refuses
    it above its failed fraction)."""
    joint = fit_joint(n, d, target)
    if not joint.converged:
        return {"value": None, "ci": None, "note": f"joint law not fitted: {joint.message}"}
    at = np.array([n_new]), np.array([d_new])
    value = float(joint.predict(*at)[0])
    fitted = np.log(joint.predict(n, d))
    log_targets, new_errors = residual_resamples(
        fitted, np.log(target), len(JOINT_KEYS), n_resamples, seed
    )
    start = [joint_start_from(joint)]
    samples = np.full(n_resamples, np.nan)
    for r, log_t in enumerate(log_targets):
        j = fit_joint(n, d, np.exp(log_t), starts=start, max_nfev=WARM_MAX_NFEV)
        if j.converged:
            delta = math.log(j.predict(*at)[0]) - (math.log(value) + new_errors[r])
            samples[r] = value * math.exp(-delta)
    out = summarise(value, samples, level, n.size)
    out["method"] = "prediction interval, " + RESIDUAL_METHOD + ", Algorithm 6.4"
    return out


def plan(
    alloc: JointLaw,
    rows_n: np.ndarray,
    rows_d: np.ndarray,
    rows_err: np.ndarray,
    candidates: list,
    batch_size: int,
    seed: int = 0,
    n_resamples: int = 300,
    level: float = 0.95,
) -> dict:
    """Verification plan from an allocation of the suite error: the run and its prediction."""
    n_opt = alloc.N.value if alloc.N else None
    budget = alloc.budget_flops
    if not n_opt or not budget:
        return {"note": "no allocation to verify: " + _note(alloc, "no optimum")}
    run = choose_run(float(n_opt), float(budget), candidates, batch_size)
    run["N_over_allocated"] = run["N"] / float(n_opt)  # far from 1: N* is off the ladder range
    err = predict_interval(rows_n, rows_d, rows_err, run["N"], run["D"], n_resamples, seed, level)
    pred = _suite_prediction(err)
    return {
        "budget_flops": float(budget),
        "allocated_N": float(n_opt),
        "allocated_D": alloc.D.value if alloc.D else None,
        "on_grid_edge": bool(alloc.on_grid_edge),
        "run": run,
        "predicted": pred,
        "method": "nearest ladder rung to N* in log N; steps = budget / f(N) / batch",
    }


def _note(alloc: JointLaw, default: str) -> str:
    """The allocation's note, ``default`` when it has none."""
    return str(default if "note" in alloc.absent else alloc.note)


def _suite_prediction(err: dict) -> dict:
    """A suite-error prediction (``predict_interval``) as a suite-score prediction."""
    pred = {k: v for k, v in err.items() if k not in ("value", "ci")}
    pred["suite"] = None if err.get("value") is None else 1.0 - err["value"]
    pred["interval"] = [1.0 - err["ci"][1], 1.0 - err["ci"][0]] if err.get("ci") else None
    return pred


def check(verification: dict, measured_suite: float | None) -> dict:
    """Add the measured score and a plain hit / miss to a verification plan."""
    out = dict(verification)
    out["measured"] = {"suite": measured_suite}
    pred = verification.get("predicted", {})
    iv = pred.get("interval")
    if measured_suite is None or not np.isfinite(measured_suite):
        out["outcome"] = "not measured"
    elif not iv:
        out["outcome"] = "no interval"
    elif iv[0] <= measured_suite <= iv[1]:
        out["outcome"] = "hit"
        out["miss_by"] = 0.0
    else:
        out["outcome"] = "miss"
        out["miss_by"] = float(min(abs(measured_suite - iv[0]), abs(measured_suite - iv[1])))
    if pred.get("suite") is not None and measured_suite is not None:
        out["error"] = float(measured_suite - pred["suite"])
    return out


def _col(rows: list[dict], key: str) -> np.ndarray:
    return np.array([float_or_nan(r.get(key)) for r in rows], dtype=float)


BASE_COLUMNS = ("family", "patch", "mask_ratio", "clip_seconds", "batch_size")
MAX_RUNG_FACTOR = 4.0  # rungs above 4x the largest trained N are not candidates


def verification_for(
    trained: list[dict],
    verify_rows: list[dict],
    joint: dict,
    seed: int = 0,
    n_resamples: int = 300,
    level: float = 0.95,
) -> dict:
    """fits.json's ``verification``: the plan from the suite-error allocation of ``joint``
    (fits.laws.joint_laws), checked against the measured verify run when there is one.
    Candidates are the ladder rungs up to ``MAX_RUNG_FACTOR`` x the largest trained N in
    the runs' most common family, patch, mask ratio, clip length and batch size; their N
    is non-embedding parameters, so a law fitted on another N column has no rung to pick.
    ``level``: the coverage of every interval (the study's ``FitSettings.level``)."""
    alloc = JointLaw.from_dict(joint.get("suite_error") or {}) or JointLaw()
    if alloc.on_grid_edge:
        return {"note": "no interior optimum (N* on the search edge): nothing to verify"}
    if not (alloc.N and alloc.N.value):
        return {"note": "no allocation to verify: " + _note(alloc, "joint law not fitted")}
    n_col = alloc.N_column or "params_nonembed"
    if n_col != "params_nonembed":
        return {"note": f"no verification: the joint law's N is {n_col}, the ladder's is "
                        "params_nonembed (results without it predate that column)"}  # fmt: skip
    n, d, err = _col(trained, n_col), _col(trained, "examples_seen"), 1 - _col(trained, "suite")
    ok = np.isfinite(n) & np.isfinite(d) & np.isfinite(err) & (n > 0) & (d > 0) & (err > 0)
    base = base_config(trained, BASE_COLUMNS, skip_missing=True)
    base_model = {k: base[k] for k in ("family", "patch", "mask_ratio") if base[k] is not None}
    clip = float(2.0 if base["clip_seconds"] is None else base["clip_seconds"])  # type: ignore[arg-type]
    batch = int(32 if base["batch_size"] is None else base["batch_size"])  # type: ignore[arg-type]
    cands = [c for c in ladder_candidates(base_model, None, clip)
             if c[1] <= MAX_RUNG_FACTOR * float(np.nanmax(n[ok]))]  # fmt: skip
    out = plan(alloc, n[ok], d[ok], err[ok], cands, batch, seed, n_resamples, level)
    if "run" not in out:
        return out
    out["base"] = {**base_model, "clip_seconds": clip, "batch_size": batch}
    run = out["run"]
    rankme = _col(trained, "rankme")
    planned_at = _col([run], "N")[0], _col([run], "D")[0]
    match = [
        r
        for r in verify_rows
        if r.get("preset") == run["preset"] and _col([r], "steps")[0] == run["steps"]
    ]
    if not match:
        out["predicted"] = {**out.get("predicted", {}), "rankme": rankme_prediction(
            n, d, rankme, *planned_at, n_resamples, seed, level, new_run=True
        )}  # fmt: skip
        out["outcome"] = "not run"
        return out
    return _checked(out, match[0], trained, (n, d, err, ok), (seed, n_resamples, level))


def _checked(out: dict, row: dict, trained: list[dict], law: tuple, boot: tuple) -> dict:
    """The plan ``out`` checked against its measured verify ``row``: predictions at the
    N and examples the run measured (not the plan's), then hit or miss."""
    n, d, err, ok = law
    seed, n_resamples, level = boot
    run, rankme = out["run"], _col(trained, "rankme")
    planned_at = _col([run], "N")[0], _col([run], "D")[0]
    out["run_id"] = row.get("run_id")
    n_run, d_run = _col([row], "params_nonembed")[0], _col([row], "examples_seen")[0]
    measured_at = bool(np.isfinite(n_run) and np.isfinite(d_run) and n_run > 0 and d_run > 0)
    if measured_at and (n_run, d_run) != (run.get("N"), run.get("D")):
        err_at = predict_interval(n[ok], d[ok], err[ok], n_run, d_run, n_resamples, seed, level)
        if err_at.get("value") is not None:
            out["predicted"] = _suite_prediction(err_at)
            out["run"] = {**run, "N_measured": float(n_run), "D_measured": float(d_run)}
    at_n, at_d = (n_run, d_run) if measured_at else planned_at
    out["predicted"] = {**out.get("predicted", {}), "rankme": rankme_prediction(
        n, d, rankme, at_n, at_d, n_resamples, seed, level, new_run=True
    )}  # fmt: skip
    out = check(out, float(_col([row], "suite")[0]))
    out["measured"]["rankme"] = finite_or_none(_col([row], "rankme")[0])
    return out
