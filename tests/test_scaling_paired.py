"""scaling.paired: fits.json's paired comparisons on synthetic per-clip outcomes with known
answers, and the fallback for studies recorded without outcomes."""

from __future__ import annotations

import numpy as np
import pytest

from audioscale.report.paired import sec_paired
from audioscale.scaling.fits import FitSettings, fit_results
from audioscale.scaling.learning import sentences
from audioscale.scaling.paired import NO_OUTCOMES, load_outcomes, paired_section
from audioscale.scaling.schema import typed
from audioscale.uncertainty import ClipOutcomes

S = FitSettings(n_resamples=300)
N = 300  # clips per task


def outcome(p: float, seed: int, valid: float | None = None, base=None) -> dict:
    """Two accuracy tasks; correct with probability p per clip (``base``: the same
    draw as another outcome where it was right)."""
    rng = np.random.default_rng(seed)
    out = {}
    for t in ("a", "b"):
        c = (rng.random(N) < p).astype(float)
        if base is not None:
            c = np.maximum(c, base[t].correct)
        out[t] = ClipOutcomes(
            "accuracy",
            [f"{t}/{i}.wav" for i in range(N)],
            np.zeros(N),
            correct=c,
            valid_score=valid,
        )
    return out


def row(rid, kind, arch, suite, examples=None, rankme=None):
    return {
        "run_id": rid,
        "kind": kind,
        "arch": arch,
        "suite": suite,
        "examples_seen": examples,
        "rankme": rankme,
    }


def suite_of(o):
    return float(np.mean([v.correct.mean() for v in o.values()]))


@pytest.fixture
def study():
    oc = {
        "randA1": outcome(0.3, 1),
        "randA2": outcome(0.3, 2),
        "randB": outcome(0.3, 3),
        "logmel": outcome(0.35, 4),
    }
    oc["B-small"] = outcome(0.5, 5, valid=0.5)
    oc["A-big"] = outcome(0.6, 6, valid=0.6, base=oc["randA1"])
    oc["B-big"] = outcome(0.4, 7, valid=0.4)
    oc["A-small"] = {
        t: ClipOutcomes("accuracy", o.clips, o.folds, correct=o.correct, valid_score=0.3)
        for t, o in oc["randA1"].items()
    }
    trained = [
        row("A-small", "trained", "A", suite_of(oc["A-small"]), 1000, 5.0),
        row("B-small", "trained", "B", suite_of(oc["B-small"]), 1000, 9.0),
        row("A-big", "trained", "A", suite_of(oc["A-big"]), 2000, 4.0),
        row("B-big", "trained", "B", suite_of(oc["B-big"]), 2000, 8.0),
    ]
    others = [
        row("randA1", "random-init", "A", suite_of(oc["randA1"])),
        row("randA2", "random-init", "A", suite_of(oc["randA2"])),
        row("randB", "random-init", "B", suite_of(oc["randB"])),
        row("logmel", "baseline", None, suite_of(oc["logmel"])),
    ]
    return trained, others, oc


def test_paired_comparisons_have_known_outcomes(study):
    trained, others, oc = study
    p = paired_section(trained, others, oc, "linear", S)
    vs = {x["run_id"]: x for x in p["vs_own_random_init"]["pairs"]}
    # A-small equals randA1 and is compared with the mean of randA1 and randA2 (both ~0.3)
    mean_a = (suite_of(oc["randA1"]) + suite_of(oc["randA2"])) / 2
    assert vs["A-small"]["value"] == pytest.approx(suite_of(oc["A-small"]) - mean_a)
    assert vs["A-small"]["outcome"] == "tie" and vs["A-small"]["random_init"] == [
        "randA1",
        "randA2",
    ]
    assert vs["A-big"]["outcome"] == "win" and vs["B-small"]["outcome"] == "win"
    tally = p["vs_own_random_init"]
    assert (tally["n_compared"], tally["n_win"], tally["n_tie"]) == (4, 3, 1)
    assert tally["at_largest_budgets"]["examples_seen"] == [1000, 2000]
    assert p["best_vs_logmel"]["outcome"] == "win" and p["best_vs_logmel"]["a"] == ["A-big"]
    assert p["suite_se"]["A-big"]["se"] == pytest.approx(
        np.sqrt(0.5 * 0.5 / (2 * N)), rel=0.25
    )  # ~Bernoulli SE of a 600-clip mean, MC 300


def test_rankme_selector_per_budget_and_overall(study):
    trained, others, oc = study
    sel = paired_section(trained, others, oc, "linear", S)["rankme_selector"]
    assert sel["cost"] == "examples_seen"
    small, big = sel["per_budget"]
    # budget 1000: RankMe picks B-small (9 > 5), the validation oracle too: exactly 0
    assert small["rankme_pick"] == small["oracle"] == "B-small"
    assert small["value"] == 0.0 and small["ci"] == [0.0, 0.0] and small["within_one_se"]
    # budget 2000: RankMe picks B-big (8 > 4); the oracle is A-big, clearly better
    assert (big["rankme_pick"], big["oracle"], big["oracle_by"]) == (
        "B-big",
        "A-big",
        "validation suite",
    )
    assert big["outcome"] == "loss" and not big["within_one_se"]
    assert sel["overall"]["value"] == pytest.approx(big["value"] / 2)
    assert sel["overall"]["n_within_one_se"] == 1


def test_without_outcomes_every_comparison_says_so(study):
    trained, others, _ = study
    f = fit_results(trained + others, [], FitSettings(n_resamples=50, n_resamples_joint=10))
    p = f["paired"]
    assert p["note"] == NO_OUTCOMES and p["suite_se"] == {}
    pair = p["vs_own_random_init"]["pairs"][0]
    assert pair["note"] == NO_OUTCOMES and pair["ci"] is None and pair["value"] is not None
    assert p["vs_own_random_init"]["n_win"] == 0


def test_store_outcomes_load_with_the_primary_protocol(study):
    _, _, oc = study
    raw = {
        rid: {t: {"linear": o.to_dict(), "knn": o.to_dict()} for t, o in v.items()}
        for rid, v in oc.items()
    }
    clips, proto = load_outcomes(raw)
    assert proto == "linear" and set(clips) == set(oc)
    assert clips["A-big"]["a"].correct.tolist() == oc["A-big"]["a"].correct.tolist()
    assert load_outcomes({}) == ({}, None)


def _raw(oc):
    return {rid: {t: {"linear": o.to_dict()} for t, o in v.items()} for rid, v in oc.items()}


def test_headline_claims_and_verdict_follow_the_intervals(study):
    trained, others, oc = study
    f = fit_results(
        trained + others, [], FitSettings(n_resamples=200, n_resamples_joint=10), outcomes=_raw(oc)
    )
    claims = f["headline"]["claims"]
    text = "\n".join(claims)
    assert "clearly beat their own random-init mean: 3 of 4 (1 tie, 0 losses" in text
    assert "at the two largest budgets 3 of 4" in text
    line = next(c for c in claims if c.startswith("Best trained − log-mel baseline"))
    assert line.endswith("a clear win") and "[" in line
    assert "within one SE of the oracle at 1 of 2 budgets" in text
    words = " ".join(sentences(f["learning"], None, f["paired"]))
    assert "3 of 4 trained runs clearly beat" in words
    assert "(paired interval above 0; 1 tie, 0 losses)" in words
    assert "clearly beat the standardised log-mel baseline" in words
    assert f["paired"]["protocol"] == "linear" and f["paired"]["n_resamples"] == 200


def test_label_oracle_never_picks_on_test_scores(study):
    # without validation scores (a kNN-only study, or runs recorded without outcomes) the
    # label oracle would have to look at the test split: there is no oracle, and no
    # RankMe-vs-oracle difference, rather than one picked by test scores
    trained, others, oc = study
    knn = {
        rid: {
            t: ClipOutcomes("accuracy", o.clips, o.folds, correct=o.correct) for t, o in v.items()
        }
        for rid, v in oc.items()
    }  # the same outcomes, no validation score
    for outcomes in (knn, {}):
        p = paired_section(trained, others, outcomes, "knn", S)
        sel = p["rankme_selector"]
        assert len(sel["per_budget"]) == 2
        for b in sel["per_budget"]:
            assert b["oracle"] is None and b["value"] is None and b["oracle_by"] is None
            assert b["rankme_pick"] in ("B-small", "B-big") and b["note"]
        assert "overall" not in sel and sel["note"]
        html = sec_paired(typed({"paired": p}))
        assert "None" not in html and "no label oracle" in html


def test_suite_se_intervals_follow_the_level(study):
    # the section says level 0.5: every interval in it, the per-run suite ones included,
    # is a 50 % interval (the 25 and 75 % quantiles of the same resamples)
    trained, others, oc = study
    wide = paired_section(trained, others, oc, "linear", S)
    narrow = paired_section(trained, others, oc, "linear", FitSettings(n_resamples=300, level=0.5))
    assert narrow["level"] == 0.5
    for rid, w in wide["suite_se"].items():
        n = narrow["suite_se"][rid]
        assert n["se"] == w["se"]  # the same resamples
        assert w["ci"][0] < n["ci"][0] < n["ci"][1] < w["ci"][1]


def test_claims_without_any_standard_error(study):
    # one resample gives no SE for any run: the headline says so instead of failing on
    # the range of an empty list of SEs
    trained, others, oc = study
    f = fit_results(
        trained + others, [], FitSettings(n_resamples=1, n_resamples_joint=10), outcomes=_raw(oc)
    )
    assert all(v["se"] is None for v in f["paired"]["suite_se"].values())
    assert not any(c.startswith("Suite score SE") for c in f["headline"]["claims"])


def test_verification_claim_without_a_suite_prediction():
    # the joint law refitted at the run gave no value: the claim says n/a (as the verdict's
    # verification sentence does) instead of failing to format None
    from audioscale.scaling.claims import claims

    ver = {"run": {"preset": "nano", "steps": 10}, "run_id": "v", "outcome": "hit",
           "predicted": {"suite": None, "interval": None}, "measured": {"suite": 0.6}}  # fmt: skip
    (line,) = claims({"verification": ver})
    assert line == "Verification run: predicted suite n/a, measured 0.600: hit"


def test_verdict_names_the_level_of_its_intervals(study):
    # a fit at level 0.5 gives 50 % intervals: the verdict's words say 50 %, not 95 %
    trained, others, oc = study
    f = fit_results(
        trained + others,
        [],
        FitSettings(n_resamples=200, n_resamples_joint=10, level=0.5),
        outcomes=_raw(oc),
    )
    words = " ".join(sentences(f["learning"], None, f["paired"]))
    assert "(paired 50 % interval over test clips)" in words and "95 %" not in words


def test_malformed_outcomes_are_a_one_line_error_naming_run_and_task():
    from audioscale.errors import DataError

    bad = {"metric": "accuracy", "clips": ["a", "b"], "folds": [0, 0], "correct": [1]}
    for entry, why in ((bad, "disagree"), ({"metric": "accuracy"}, "no .correct.")):
        with pytest.raises(DataError, match=f"run r1, task pitch, linear: .*{why}"):
            load_outcomes({"r1": {"pitch": {"linear": entry}}})
