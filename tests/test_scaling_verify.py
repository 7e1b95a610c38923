"""Verification planning: nearest rung, budget-spending steps, joint-law interval, hit/miss."""

import numpy as np
import pytest

from audioscale.scaling import verify


def _grid(noise: float = 0.002, seed: int = 0):
    """Suite error on a known joint law E + A/N^a + B/D^b over 3 sizes x 3 budgets."""
    rng = np.random.default_rng(seed)
    n = np.repeat([1e5, 3e5, 9e5], 4).astype(float)
    d = np.tile([4e3, 1.6e4, 6.4e4, 2.56e5], 3).astype(float)
    law = {"E": 0.3, "A": 30.0, "alpha": 0.5, "B": 8.0, "beta": 0.4}
    err = law["E"] + law["A"] / n ** law["alpha"] + law["B"] / d ** law["beta"]
    return n, d, err * (1 + rng.normal(0, noise, n.size)), law


def test_choose_run_takes_the_nearest_rung_and_spends_the_budget():
    cands = [("a", 1e5, 1e6), ("b", 4e5, 4e6), ("c", 1.6e6, 1.6e7)]
    run = verify.choose_run(5e5, 3.2e11, cands, batch_size=32)
    assert run["preset"] == "b" and run["steps"] == 2500
    assert run["flops"] == pytest.approx(3.2e11, rel=1e-3)


def test_prediction_interval_covers_the_true_law():
    n, d, err, law = _grid()
    p = verify.predict_interval(n, d, err, 5e5, 1e5, n_resamples=60, seed=0)
    truth = law["E"] + law["A"] / 5e5 ** law["alpha"] + law["B"] / 1e5 ** law["beta"]
    assert p["value"] == pytest.approx(truth, abs=0.01)
    assert p["ci"] is not None and p["ci"][0] <= truth <= p["ci"][1]
    assert p["failed_fraction"] <= 0.2


def test_prediction_interval_covers_new_runs_not_only_the_law():
    """A new run scatters about the law like the trained runs: the interval is for it.
    An interval for the law's mean alone covers few new runs drawn with the runs' 1 %
    scatter; the prediction interval covers most of them."""
    n, d, err, law = _grid(noise=0.01, seed=3)
    p = verify.predict_interval(n, d, err, 5e5, 1e5, n_resamples=200, seed=0)
    truth = law["E"] + law["A"] / 5e5 ** law["alpha"] + law["B"] / 1e5 ** law["beta"]
    new_runs = truth * (1 + np.random.default_rng(9).normal(0, 0.01, 400))
    lo, hi = p["ci"]
    covered = float(np.mean((new_runs >= lo) & (new_runs <= hi)))
    assert 0.8 <= covered <= 1.0
    assert hi - lo > 2 * 1.5 * 0.01 * truth  # at least the runs' own scatter
    assert "prediction interval" in p["method"]


def test_prediction_interval_honours_its_level():
    n, d, err, _ = _grid(noise=0.01, seed=3)
    wide = verify.predict_interval(n, d, err, 5e5, 1e5, n_resamples=100, seed=0, level=0.95)
    narrow = verify.predict_interval(n, d, err, 5e5, 1e5, n_resamples=100, seed=0, level=0.5)
    assert (wide["level"], narrow["level"]) == (0.95, 0.5)
    assert wide["ci"][0] < narrow["ci"][0] < narrow["ci"][1] < wide["ci"][1]


def test_prediction_interval_does_not_fail_on_a_one_run_per_cell_grid():
    """Resampling runs on 3 sizes x 3 budgets, one run each, drops a whole size or budget
    in about half the resamples (each of 6 levels missed with p = (2/3)^9 = 2.6 %, and
    the fit fails); the fixed-design residual bootstrap keeps every level."""
    law = {"E": 0.3, "A": 30.0, "alpha": 0.5, "B": 8.0, "beta": 0.4}
    n = np.repeat([1e5, 3e5, 9e5], 3).astype(float)
    d = np.tile([1.6e4, 6.4e4, 2.56e5], 3).astype(float)
    noise = np.random.default_rng(4).normal(0, 0.01, n.size)
    err = (law["E"] + law["A"] / n ** law["alpha"] + law["B"] / d ** law["beta"]) * (1 + noise)
    p = verify.predict_interval(n, d, err, 9e5, 5e5, n_resamples=100, seed=1)
    assert p["failed_fraction"] <= 0.05 and p["ci_status"] == "ok"


def test_check_says_hit_or_miss_with_its_size():
    plan = {"predicted": {"suite": 0.6, "interval": [0.58, 0.62]}}
    assert verify.check(plan, 0.61)["outcome"] == "hit"
    miss = verify.check(plan, 0.55)
    assert miss["outcome"] == "miss" and miss["miss_by"] == pytest.approx(0.03)
    assert miss["error"] == pytest.approx(-0.05)
    assert verify.check({"predicted": {"suite": 0.6, "interval": None}}, 0.6)["outcome"] == (
        "no interval"
    )


def test_ladder_candidates_count_params_without_memory():
    cands = verify.ladder_candidates({"family": "vit", "patch": "time"}, None, 1.0)
    names = [c[0] for c in cands]
    assert names[:3] == ["atto", "femto", "pico"]
    ns = [c[1] for c in cands]
    assert ns == sorted(ns) and ns[-1] > 1e8  # large is ~300 M
    assert all(c[2] > 0 for c in cands)
