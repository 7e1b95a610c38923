"""Scaling fits on synthetic data with known laws: power/saturating/joint recovery, AIC
choice, bootstrap intervals, correlations, partial correlations, allocation, the study
fits and the `fit` command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from audioscale.scaling import FitSettings, fit_results
from audioscale.scaling.allocation import allocate, optimum
from audioscale.scaling.bootstrap import (
    bootstrap,
    percentile_ci,
    residual_resamples,
    summarise,
)
from audioscale.scaling.correlation import correlations, partial_spearman, spearman_ci
from audioscale.scaling.powerlaw import choose, fit_joint, fit_power, fit_saturating
from audioscale.testing import synthetic_rows

FAST = FitSettings(n_resamples=100, n_resamples_joint=20)


def _power_data(n=30, a=0.1, b=0.5, noise=0.02, seed=0):
    rng = np.random.default_rng(seed)
    x = np.exp(rng.uniform(np.log(5), np.log(60), n))
    return x, a * x**b * np.exp(rng.normal(0, noise, n))


def _sat_data(n=30, a=0.8, b=0.7, c=0.9, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    x = np.exp(rng.uniform(np.log(1), np.log(200), n))
    return x, (c - a * x ** (-b)) * np.exp(rng.normal(0, noise, n))


# --------------------------------------------------------------------------- forms


def test_power_law_recovers_exponent_and_aic_prefers_it():
    x, y = _power_data()
    p = fit_power(x, y)
    assert p.converged and abs(p.params["b"] - 0.5) < 0.03 and abs(p.params["a"] - 0.1) < 0.02
    assert p.r2 > 0.95
    s = fit_saturating(x, y)
    best, choice = choose([p, s])
    assert best.form == "power" and choice["criterion"] == "AICc"


def test_saturating_recovers_plateau_and_aic_prefers_it():
    x, y = _sat_data()
    s = fit_saturating(x, y)
    assert s.converged, s.message
    assert abs(s.params["c"] - 0.9) < 0.02 and abs(s.params["b"] - 0.7) < 0.1
    best, _ = choose([fit_power(x, y), s])
    assert best.form == "saturating"


def test_degenerate_and_tiny_fits_are_reported_not_returned():
    x, y = _power_data(n=4)
    s = fit_saturating(x, y)
    assert not s.converged and "need at least 5" in s.message
    with pytest.raises(ValueError):
        s.predict(x)
    p = fit_power(np.array([2.0, 2.0, 2.0]), np.array([1.0, 2.0, 3.0]))
    assert not p.converged and "does not vary" in p.message
    assert not fit_power(np.array([1.0, 2.0, 3.0]), np.array([1.0, -2.0, 3.0])).converged
    # pure power data has no plateau: the saturating form ends on a bound, not as a law
    x, y = _power_data(noise=0.005)
    s = fit_saturating(x, y)
    assert not s.converged and "degenerate" in s.message
    best, choice = choose([s])
    assert best is None and choice["criterion"] is None


def test_huber_resists_an_outlier():
    x, y = _power_data(noise=0.01)
    y = y.copy()
    y[np.argmax(x)] *= 3.0
    plain, robust = fit_power(x, y), fit_power(x, y, huber=True, huber_delta=0.05)
    assert abs(robust.params["b"] - 0.5) < abs(plain.params["b"] - 0.5)
    assert abs(robust.params["b"] - 0.5) < 0.03


def test_joint_law_recovers_exponents():
    rng = np.random.default_rng(1)
    n = np.exp(rng.uniform(np.log(1e5), np.log(1e7), 40))
    d = np.exp(rng.uniform(np.log(1e4), np.log(1e6), 40))
    loss = (1.5 + 400 / n**0.34 + 900 / d**0.28) * np.exp(rng.normal(0, 0.002, 40))
    j = fit_joint(n, d, loss)
    assert j.converged, j.message
    assert abs(j.params["alpha"] - 0.34) < 0.05 and abs(j.params["beta"] - 0.28) < 0.03
    few = fit_joint(n[:5], d[:5], loss[:5])
    assert not few.converged and "need at least 8" in few.message


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_percentile_ci_is_seeded_and_drops_failures():
    x = np.arange(20.0)
    a = bootstrap(lambda i: x[i].mean(), 20, 300, seed=3)
    b = bootstrap(lambda i: x[i].mean(), 20, 300, seed=3)
    assert np.array_equal(a, b)
    lo, hi = percentile_ci(a)
    assert lo < 9.5 < hi and hi - lo < 8
    fails = bootstrap(lambda i: (_ for _ in ()).throw(ValueError("x")), 5, 10, 0)
    assert np.isnan(fails).all() and percentile_ci(fails) is None
    s = summarise(9.5, a, n=20)
    assert s["n_failed"] == 0 and s["n_resamples"] == 300 and s["method"] == "percentile bootstrap"


def test_residual_resamples_keep_the_design_and_draw_scaled_centred_residuals():
    fitted = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    observed = fitted + np.array([0.3, -0.1, 0.2, -0.2, 0.1, -0.15])  # mean 0.15 / 6
    y, new = residual_resamples(fitted, observed, n_params=2, n_resamples=500, seed=1)
    assert y.shape == (500, 6) and new.shape == (500,)
    e = observed - fitted
    allowed = (e - e.mean()) * np.sqrt(6 / 4)  # centred, inflated by sqrt(n / (n - p))
    drawn = np.concatenate([(y - fitted).ravel(), new])
    assert np.all(np.min(np.abs(drawn[:, None] - allowed[None, :]), axis=1) < 1e-12)
    assert len(np.unique(np.round(drawn, 12))) == 6  # every residual is drawn somewhere
    y2, new2 = residual_resamples(fitted, observed, 2, 500, seed=1)
    assert np.array_equal(y, y2) and np.array_equal(new, new2)


def test_power_exponent_ci_covers_truth():
    rows, _ = synthetic_rows(24, seed=2, b=0.5, noise=0.03)
    f = fit_results(rows, [], FitSettings(n_resamples=400, n_resamples_joint=20))
    b = f["score_vs_rankme"]["forms"]["power"]["params_ci"]["b"]
    assert b["ci"][0] < 0.5 < b["ci"][1] and b["ci"][1] - b["ci"][0] < 0.3


# --------------------------------------------------------------------------- correlations


def test_correlations_monotone_and_independent():
    x = np.linspace(1, 10, 15)
    c = correlations(x, x**3, n_resamples=200)
    assert c["spearman"]["value"] == pytest.approx(1.0)
    assert c["kendall"]["value"] == pytest.approx(1.0)
    assert c["pearson"]["value"] < 1.0
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=40), rng.normal(size=40)
    s = spearman_ci(a, b, n_resamples=300)
    assert s["ci"][0] < 0 < s["ci"][1]
    const = correlations(x, np.ones_like(x))
    assert const["spearman"]["value"] is None


def test_partial_spearman_removes_a_confounder():
    rng = np.random.default_rng(0)
    z = rng.normal(size=60)
    x = z + 0.3 * rng.normal(size=60)
    y = z + 0.3 * rng.normal(size=60)
    plain = spearman_ci(x, y, n_resamples=100)["value"]
    part = partial_spearman(x, y, z[:, None], n_resamples=200)
    assert plain > 0.7 and abs(part["value"]) < 0.3
    # a covariate unrelated to both leaves the correlation as it was
    w = rng.normal(size=60)
    part_w = partial_spearman(x, y, w[:, None], n_resamples=50)
    assert abs(part_w["value"] - plain) < 0.1
    assert partial_spearman(x[:4], y[:4], z[:4, None])["value"] is None


# --------------------------------------------------------------------------- allocation


def test_optimum_matches_closed_form():
    """With f(N) = k·N, D = C/(kN): N* = G·(C/k)^(β/(α+β)), G = (αA/(βB))^(1/(α+β))."""
    p = {"E": 1.0, "A": 400.0, "B": 900.0, "alpha": 0.34, "beta": 0.28}
    k, budget = 6.0, 1e18
    o = optimum(p, {"a": k, "b": 1.0}, budget, (1e5, 1e7))
    g = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    n_star = g * (budget / k) ** (p["beta"] / (p["alpha"] + p["beta"]))
    assert o["N"] == pytest.approx(n_star, rel=1e-3)
    assert o["D"] == pytest.approx(budget / (k * o["N"]), rel=1e-9)
    assert not o["on_grid_edge"]


def test_allocate_with_bootstrap_interval():
    rng = np.random.default_rng(2)
    n = np.exp(rng.uniform(np.log(1e5), np.log(1e7), 30))
    d = np.exp(rng.uniform(np.log(1e4), np.log(1e6), 30))
    loss = (1.5 + 400 / n**0.34 + 900 / d**0.28) * np.exp(rng.normal(0, 0.003, 30))
    fpe = 300.0 * n
    a = allocate(n, d, loss, fpe, budget=10 * float((fpe * d).max()), n_resamples=40)
    assert a["extrapolation"] is True
    lo, hi = a["N"]["ci"]
    assert lo <= a["N"]["value"] <= hi
    truth = optimum(
        {"E": 1.5, "A": 400, "B": 900, "alpha": 0.34, "beta": 0.28},
        {"a": 300.0, "b": 1.0},
        a["budget_flops"],
        (1e5, 1e7),
    )
    assert abs(math.log(a["N"]["value"] / truth["N"])) < math.log(2)
    assert a["joint"]["params_ci"]["alpha"]["ci"] is not None


# --------------------------------------------------------------------------- study fits


def test_fit_results_on_a_known_study():
    rows, ckpt = synthetic_rows(20, seed=0, b=0.5)
    f = fit_results(rows, ckpt, FAST)
    json.dumps(f, allow_nan=False)  # strict JSON: no NaN anywhere
    h = f["headline"]
    assert h["n_runs"] == 20 and f["data"]["n_baselines"] == 3
    assert f["score_vs_rankme"]["n"] == 20  # baselines excluded from the fit
    assert h["chosen_form"] == "power"
    assert h["exponent_b"]["ci"][0] < 0.5 < h["exponent_b"]["ci"][1]
    assert h["spearman_rankme_suite"]["value"] > 0.9
    assert h["fit_small_predict_large_mae"] < 0.05
    assert h["verdict"].startswith("RankMe tracked the suite score (Spearman 0.9")
    assert "random-init" in h["verdict"]
    laws = f["laws"]
    assert (
        laws["rankme_vs_N"]["x"] == "params_nonembed"
        and laws["rankme_vs_D"]["x"] == "examples_seen"
    )
    assert f["joint"]["heldout_loss"]["joint"]["converged"]
    assert f["joint"]["heldout_loss"]["extrapolation"] is True
    pts = f["early_training"]["points"]
    assert [p["fraction"] for p in pts][-1] == 1.0 and len(pts) == 7
    assert pts[0]["value"] < pts[-1]["value"]
    mc = f["metric_comparison"]["targets"]
    assert set(mc) == {"suite", "domain_speech", "domain_music", "domain_environment"}
    assert (
        mc["suite"]["rankme"]["spearman"]["value"]
        > mc["suite"]["participation_ratio"]["spearman"]["value"]
    )
    assert mc["suite"]["alpha_req"]["spearman"]["value"] > 0  # sign-flipped
    assert f["settings"]["n_resamples"] == 100


def test_weak_relation_is_said_in_words():
    rows, ckpt = synthetic_rows(16, seed=1)
    rng = np.random.default_rng(5)
    for r in rows:
        if r["kind"] == "trained":
            r["suite"] = float(rng.uniform(0.3, 0.6))
    f = fit_results(rows, ckpt, FAST)
    assert "weak" in f["verdict"]
    assert abs(f["headline"]["spearman_rankme_suite"]["value"]) < 0.4


def test_outlier_run_is_flagged_and_regime_break_is_reported():
    rows, ckpt = synthetic_rows(24, seed=3, noise=0.01)
    trained = [r for r in rows if r["kind"] == "trained"]
    trained[5]["suite"] *= 1.6
    f = fit_results(rows, ckpt, FAST)
    flagged = [x["run_id"] for x in f["confounds"]["flagged"]]
    assert flagged == [trained[5]["run_id"]]
    assert trained[5]["run_id"] in f["verdict"]
    # many-epoch runs get inflated RankMe without a better score: the law breaks there
    rows, ckpt = synthetic_rows(24, seed=4, noise=0.01)
    rng = np.random.default_rng(0)
    trained = [r for r in rows if r["kind"] == "trained"]
    cut = float(np.median([r["epochs"] for r in trained]))
    for r in trained:
        if r["epochs"] > cut:
            r["rankme"] = float(rng.uniform(20, 60))  # inflated, unrelated to the score
    f = fit_results(rows, ckpt, FAST)
    reg = f["confounds"]["regimes"]["epochs"]
    assert reg["low"]["value"] > 0.9 and reg["high"]["value"] < reg["low"]["value"] - 0.3
    assert "broke for runs with >" in f["verdict"] and "epochs" in f["verdict"]


def test_partial_correlation_in_study_controls_for_confounds():
    rows, ckpt = synthetic_rows(24, seed=6, noise=0.01)
    f = fit_results(rows, ckpt, FAST)
    conf = f["confounds"]
    assert conf["covariates"] == ["epochs", "log params_nonembed"]
    assert conf["partial_spearman"]["value"] > 0.5
    # the suite depends on N only; RankMe on N plus independent noise: partial ≈ 0
    rng = np.random.default_rng(1)
    for r in rows:
        if r["kind"] == "trained":
            r["suite"] = 0.05 * r["params_nonembed"] ** 0.15 * float(np.exp(rng.normal(0, 0.01)))
            r["rankme"] = r["params_nonembed"] ** 0.2 * float(np.exp(rng.normal(0, 0.3)))
    f = fit_results(rows, ckpt, FAST)
    assert abs(f["confounds"]["partial_spearman"]["value"]) < 0.35


def test_model_selection_gap():
    rows, _ = synthetic_rows(10, seed=0, baselines=False)
    best_label = max(rows, key=lambda r: r["suite"])
    worst = min(rows, key=lambda r: r["suite"])
    worst["rankme"] = 100.0  # RankMe now picks the worst run
    f = fit_results(rows, [], FAST)
    ms = f["model_selection"]
    assert ms["by_rankme"]["run_id"] == worst["run_id"]
    assert ms["by_label"]["run_id"] == best_label["run_id"]
    assert ms["gap"] == pytest.approx(best_label["suite"] - worst["suite"])
    assert ms["rank_of_rankme_pick"] == 10


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_tiny_and_odd_studies_do_not_crash(n):
    rows, ckpt = synthetic_rows(n, seed=0)
    if n >= 2:
        rows[0]["suite"] = None
        rows[1]["rankme"] = float("nan")
    f = fit_results(rows, ckpt, FAST)
    json.dumps(f, allow_nan=False)
    assert "Too few runs" in f["verdict"]
    assert f["headline"]["exponent_b"]["value"] is None or n >= 3


def test_fit_cli_json(tmp_path, capsys, monkeypatch):
    from audioscale.cli import main
    from audioscale.scaling.fits import io as fits_io

    rows, ckpt = synthetic_rows(12, seed=0)
    monkeypatch.setattr(fits_io, "load_store_rows", lambda d: (rows, ckpt))
    rc = main(["fit", str(tmp_path), "--json", "--resamples", "100", "--joint-resamples", "20"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fits_path"] == str(tmp_path / "fits.json")
    assert out["headline"]["n_runs"] == 12 and out["settings"]["n_resamples"] == 100
    saved = json.loads((tmp_path / "fits.json").read_text())
    assert saved["headline"] == out["headline"]
    rc = main(["fit", str(tmp_path), "--resamples", "50", "--joint-resamples", "20"])
    text = capsys.readouterr().out
    assert rc == 0 and "- RankMe vs suite score: Spearman " in text and "RankMe tracked" in text
    # a study without per-clip outcomes fits, and says why its comparisons have no interval
    assert out["paired"]["note"] == "no interval: per-clip outcomes not recorded"
    assert "Best trained − log-mel baseline: " in "\n".join(out["headline"]["claims"])


def test_fit_cli_missing_study_is_one_line_error(tmp_path, capsys):
    from audioscale.cli import main

    rc = main(["fit", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert rc == 2 and "study.db" in err and len(err.strip().splitlines()) == 1


def test_verdict_says_when_a_baseline_beats_every_trained_run():
    from audioscale.scaling.fits import fit_results
    from audioscale.testing import synthetic_rows

    rows, ckpt = synthetic_rows(12, seed=3)
    trained_best = max(r["suite"] for r in rows if r["kind"] == "trained")
    for r in rows:  # only the random-init baseline may beat the trained runs here
        if r["kind"] != "trained":
            r["suite"] = trained_best - 0.2
    base = next(r for r in rows if r["kind"] == "random-init")
    base["suite"] = trained_best + 0.05
    settings = FitSettings(n_resamples=100, n_resamples_joint=20)
    assert "above every trained run" in fit_results(rows, ckpt, settings)["verdict"]
    base["suite"] = trained_best - 0.2
    assert "above every baseline" in fit_results(rows, ckpt, settings)["verdict"]


def test_early_training_pools_runs_of_different_lengths():
    """1/16 of 250 steps (16/250) and of 500 steps (31/500) are one checkpoint fraction."""
    from audioscale.scaling.fits.sections import early_training, nominal_fraction

    assert nominal_fraction(16 / 250) == nominal_fraction(31 / 500) == 1 / 16
    assert nominal_fraction(0.3) == 0.3 and nominal_fraction(1.0) == 1.0
    rows = [{"run_id": f"r{i}", "rankme": 10.0 + i, "suite": 0.4 + 0.01 * i} for i in range(6)]
    ckpt = [
        {"run_id": f"r{i}", "fraction": (16 / 250 if i % 2 else 31 / 500), "rankme": 5.0 + i}
        for i in range(6)
    ]
    out = early_training(rows, ckpt, FitSettings(n_resamples=100))
    first = out["points"][0]
    assert first["fraction"] == 1 / 16 and first["n"] == 6 and first["value"] == 1.0


@pytest.mark.parametrize("opt", [["--budget", "-5"], ["--budget", "0"], ["--cut", "-1"]])
def test_fit_cli_rejects_non_positive_flops(tmp_path, capsys, monkeypatch, opt):
    """A negative budget crashed the allocation (All-NaN traceback); zero gave D = 0."""
    from audioscale.cli import main
    from audioscale.scaling.fits import io as fits_io

    rows, ckpt = synthetic_rows(12, seed=0)
    monkeypatch.setattr(fits_io, "load_store_rows", lambda d: (rows, ckpt))
    rc = main(["fit", str(tmp_path), "--resamples", "50", "--joint-resamples", "20", *opt])
    err = capsys.readouterr().err
    assert rc == 2 and opt[0] in err and len(err.strip().splitlines()) == 1


def test_joint_fit_with_a_vanished_term_is_reported_not_printed_as_a_law():
    """Held-out loss that grows with N (short runs of bigger models): the best fit sends
    A/N^alpha to ~0, which must come back as degenerate, not as a law with an exponent."""
    rng = np.random.default_rng(0)
    n = np.repeat([1e5, 3e5, 8e5], 5)
    d = np.tile([4e3, 8e3, 1.6e4, 8e3, 8e3], 3)
    loss = 1.3 * d**-0.14 * (1 + 0.02 * np.log(n / 1e5)) * np.exp(rng.normal(0, 0.01, n.size))
    fit = fit_joint(n, d, loss)
    assert not fit.converged and "N term" in fit.message


# --------------------------------------------------------------------------- refusals


def test_interval_is_refused_above_the_failure_fraction():
    rng = np.random.default_rng(0)
    ok = rng.normal(size=1000)
    few = ok.copy()
    few[:100] = np.nan  # 10 % failed: interval given, fraction reported
    s = summarise(0.0, few)
    assert s["ci"] is not None and s["failed_fraction"] == pytest.approx(0.1)
    assert s["ci_status"] == "ok" and s["max_failed_fraction"] == 0.2
    many = ok.copy()
    many[:300] = np.nan  # 30 %: the survivors are a selection, no interval
    s = summarise(0.0, many)
    assert s["ci"] is None and s["ci_status"] == "refused" and s["n_failed"] == 300
    assert "30% of 1000 resamples failed" in s["ci_reason"]
    assert percentile_ci(many) is None and percentile_ci(few) is not None


def _alloc_data(seed=2):
    rng = np.random.default_rng(seed)
    n = np.exp(rng.uniform(np.log(1e5), np.log(1e7), 30))
    d = np.exp(rng.uniform(np.log(1e4), np.log(1e6), 30))
    loss = (1.5 + 400 / n**0.34 + 900 / d**0.28) * np.exp(rng.normal(0, 0.003, 30))
    return n, d, loss, 300.0 * n


def test_rankme_prediction_recovers_a_log_linear_law_and_widens_for_a_new_run():
    from audioscale.scaling.allocation import rankme_prediction

    rng = np.random.default_rng(5)
    n = np.repeat([1e5, 3e5, 9e5], 4).astype(float)
    d = np.tile([3.2e4, 6.4e4, 1.28e5, 2.56e5], 3).astype(float)
    truth = lambda nn, dd: 0.2 * nn**0.35 * dd**0.1  # noqa: E731
    rankme = truth(n, d) * np.exp(rng.normal(0, 0.03, n.size))
    law = rankme_prediction(n, d, rankme, 9e5, 2.56e5, n_resamples=400, seed=0)
    assert law["params"]["a"] == pytest.approx(0.35, abs=0.05)
    assert law["ci"][0] <= truth(9e5, 2.56e5) <= law["ci"][1] and not law["extrapolation"]
    run = rankme_prediction(n, d, rankme, 9e5, 2.56e5, n_resamples=400, seed=0, new_run=True)
    assert run["value"] == law["value"]
    assert run["ci"][1] - run["ci"][0] > 1.5 * (law["ci"][1] - law["ci"][0])
    new_runs = truth(9e5, 2.56e5) * np.exp(np.random.default_rng(6).normal(0, 0.03, 300))
    assert np.mean((new_runs >= run["ci"][0]) & (new_runs <= run["ci"][1])) >= 0.85
    far = rankme_prediction(n, d, rankme, 1e7, 2.56e5, n_resamples=50)
    assert far["extrapolation"] and far["value"] > law["value"]
    few = rankme_prediction(n[:3], d[:3], rankme[:3], 1e6, 1e5)
    assert few["value"] is None and "needs" in few["note"]
    below = rankme_prediction(n, d, rankme, 1e4, 2.56e5, n_resamples=50)
    assert below["extrapolation"]  # outside the trained range on either side
    # D proportional to N cannot separate a from b: no prediction rather than a wrong one
    collinear = rankme_prediction(n, 0.5 * n, rankme, 1e6, 5e5, n_resamples=50)
    assert collinear["value"] is None and "collinear" in collinear["note"]
    assert rankme_prediction(n, d, rankme, 1e6, 0.0)["value"] is None  # no crash at D = 0


def test_allocation_edge_optima_are_treated_alike_in_point_and_bootstrap(monkeypatch):
    import audioscale.scaling.allocation as al

    n, d, loss, fpe = _alloc_data()
    budget = 10 * float((fpe * d).max())
    real = al.optimum
    calls = {"k": 0}

    def every_third_on_edge(*a, **k):  # the point (call 0) interior, a third of resamples not
        o = real(*a, **k)
        calls["k"] += 1
        return o | {"on_grid_edge": calls["k"] % 3 == 0}

    monkeypatch.setattr(al, "optimum", every_third_on_edge)
    a = allocate(n, d, loss, fpe, budget=budget, n_resamples=30)
    assert not a["on_grid_edge"] and a["N"]["n_edge"] >= 8
    assert a["N"]["ci"] is None and a["N"]["ci_status"] == "refused"
    assert "search edge" in a["N"]["ci_reason"]  # not an interval of the interior third

    monkeypatch.setattr(al, "optimum", lambda *a, **k: real(*a, **k) | {"on_grid_edge": True})
    a = allocate(n, d, loss, fpe, budget=budget, n_resamples=10)
    assert a["on_grid_edge"] and a["N"]["value"] is not None and a["N"]["ci"] is None
    assert a["N"]["ci_reason"].startswith("the point optimum is on the search edge")


def test_fits_json_and_report_show_failed_folds_and_refused_intervals():
    from audioscale.report.cells import est, loo_mae

    rows, ckpt = synthetic_rows(16, seed=1)
    f = fit_results(rows, ckpt, FAST)
    loo = f["score_vs_rankme"]["validation"]["power"]["loo"]
    assert loo["n_failed"] == 0 and loo["failed_fraction"] == 0 and loo["mae_status"] == "ok"
    b = f["score_vs_rankme"]["forms"]["power"]["params_ci"]["b"]
    assert b["ci_status"] == "ok" and b["failed_fraction"] == 0
    sp = f["score_vs_rankme"]["correlations"]["spearman"]
    assert "failed_fraction" in sp and "max_failed_fraction" in sp
    refused = summarise(0.5, np.full(10, np.nan))
    assert "interval refused" in str(est(refused))
    assert "3/13 folds failed" in str(loo_mae({"mae": 0.1, "n_failed": 3, "n": 13}))
    assert "refused" in str(loo_mae({"mae": None, "mae_status": "refused", "mae_reason": "x"}))


def test_verdict_compares_trained_runs_with_the_mean_of_the_init_seeds():
    """One lucky init seed above every trained run does not make random init the best
    baseline when the mean over seeds is below them (the learning checks' view)."""
    import copy

    from audioscale.scaling.fits import fit_results
    from audioscale.testing import synthetic_rows

    rows, ckpt = synthetic_rows(12, seed=3)
    trained_best = max(r["suite"] for r in rows if r["kind"] == "trained")
    for r in rows:
        if r["kind"] != "trained":
            r["suite"] = trained_best - 0.2
    base = next(r for r in rows if r["kind"] == "random-init")
    arch = next(r for r in rows if r["kind"] == "trained")
    base.update({k: arch.get(k) for k in ("family", "patch", "width", "depth", "heads")})
    seeds = [copy.deepcopy(base) for _ in range(2)]
    for i, (r, v) in enumerate(zip([base, *seeds], (0.05, -0.1, -0.1), strict=True)):
        r["suite"] = trained_best + v
        r["run_id"] = f"{base['run_id']}-s{i}"
    verdict = fit_results(rows + seeds, ckpt, FitSettings(n_resamples=100, n_resamples_joint=20))
    text = verdict["verdict"]
    assert "above every trained run" not in text
    assert "random-init, mean of 3 init seeds" in text and "above every baseline" in text
