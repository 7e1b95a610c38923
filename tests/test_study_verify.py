"""The verification run: built from the plan, trained like a run, kept out of the fits."""

import pytest
from sweep_helpers import make_corpus, tiny_spec

from audioscale.scaling import verify
from audioscale.scaling.fits import FitSettings, fit_results, load_store_rows
from audioscale.study import verification_run
from audioscale.sweep.runner import run_sweep
from audioscale.sweep.spec import load_sweep


def test_verify_run_is_trained_stored_and_checked_but_never_fitted(tmp_path, monkeypatch):
    corpus = make_corpus(tmp_path / "corpus")
    spec = tiny_spec(corpus, axes={"steps": [6]}, baselines={"logmel_stats": False})
    sweep = load_sweep(spec)
    assert verification_run(sweep, {"verification": {"note": "no allocation"}}) is None
    job = verification_run(sweep, {"verification": {"run": {"preset": "femto", "steps": 5}}})
    assert job.kind == "verify" and job.name.startswith("verify-femto")
    assert job.config.train.steps == 5 and job.config.model.preset == "femto"
    out = tmp_path / "study"
    run_sweep(spec, out, workers=1, progress=False, extra_jobs=[job])
    rows, _ = load_store_rows(out)
    (v,) = [r for r in rows if r["kind"] == "verify"]
    assert v["run_id"] == job.run_id and v["steps"] == 5 and v["examples_seen"] == 5 * 8
    assert v["suite"] is not None and v["rankme"] is not None
    run_sweep(spec, out, workers=1, progress=False)  # a plain sweep keeps the verify run
    assert job.run_id in {r["run_id"] for r in load_store_rows(out)[0]}
    fits = fit_results(rows, settings=FitSettings(n_resamples=50, n_resamples_joint=20))
    assert job.run_id not in fits["data"]["run_ids"]
    assert job.run_id not in {b["run_id"] for b in fits["baselines"]}
    # the measured verify row is matched to its plan and judged against the interval
    trained = [r for r in rows if r["kind"] == "trained"]
    planned = {"run": {"preset": "femto", "steps": 5}, "predicted": {"suite": v["suite"]}}
    monkeypatch.setattr(verify, "ladder_candidates", lambda *a: [("femto", 1e5, 1e6)])
    for iv, outcome in (([0.0, 1.0], "hit"), ([v["suite"] + 0.1, v["suite"] + 0.2], "miss")):
        planned["predicted"]["interval"] = iv
        monkeypatch.setattr(verify, "plan", lambda *a, **k: dict(planned))
        alloc = {"suite_error": {"N": {"value": 1e5}, "budget_flops": 4e7}}
        got = verify.verification_for(trained, [v], alloc)
        assert got["outcome"] == outcome and got["measured"]["suite"] == v["suite"]
        assert got["measured"]["rankme"] == pytest.approx(v["rankme"])  # beside the law's
        assert "value" in got["predicted"]["rankme"]
    assert got["miss_by"] == pytest.approx(0.1)
    # a verify row with D = 0 falls back to the plan's (N, D) instead of crashing the fit
    broken = {**v, "examples_seen": 0}
    assert verify.verification_for(trained, [broken], alloc)["outcome"] == "miss"
    # before the run is trained, the plan already carries its predicted RankMe
    assert "rankme" in verify.verification_for(trained, [], alloc)["predicted"]
    # a law fitted on total params has no ladder rung in its units: a note, no run
    total = {"suite_error": {**alloc["suite_error"], "N_column": "params"}}
    got = verify.verification_for(trained, [v], total)
    assert "run" not in got and "params_nonembed" in got["note"]
