"""audioscale.uncertainty: bootstrap SE and paired differences against known answers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from audioscale import uncertainty as U
from audioscale.uncertainty import ClipOutcomes


def acc(correct, clips=None, folds=None, task="t"):
    n = len(correct)
    clips = clips or [f"c{i}" for i in range(n)]
    return {
        task: ClipOutcomes(
            "accuracy", clips, np.zeros(n) if folds is None else folds, correct=correct
        )
    }


def test_se_of_a_bernoulli_mean():
    # SE of a mean of n Bernoulli(p) outcomes is sqrt(p(1-p)/n); the bootstrap SE of the
    # observed proportion p̂ is sqrt(p̂(1-p̂)/n) up to Monte-Carlo error: with R = 4000 the
    # SE's relative Monte-Carlo error is about 1/sqrt(2R) ≈ 1.1 %, so 5 % is 4.5 sigma.
    n, k = 400, 280  # p̂ = 0.7
    correct = np.r_[np.ones(k), np.zeros(n - k)]
    res = U.suite_se(acc(correct), n_resamples=4000)
    assert res["value"] == pytest.approx(0.7, abs=1e-12)
    assert res["se"] == pytest.approx(np.sqrt(0.7 * 0.3 / n), rel=0.05)
    assert res["tasks"]["t"]["se"] == pytest.approx(res["se"], rel=1e-12)
    lo, hi = res["ci"]
    assert lo < 0.7 < hi and hi - lo == pytest.approx(2 * 1.96 * res["se"], rel=0.1)


def test_identical_encoders_differ_by_exactly_zero():
    rng = np.random.default_rng(1)
    a = acc(rng.integers(0, 2, 300).astype(float))
    d = U.paired_difference(a, [a])
    assert d["value"] == 0.0 and d["se"] == 0.0 and d["ci"] == [0.0, 0.0]
    assert d["outcome"] == "tie"


def test_clearly_better_encoder_excludes_zero_and_pairs_by_clip():
    rng = np.random.default_rng(2)
    n = 500
    b = rng.random(n) < 0.5
    a = b | (rng.random(n) < 0.3)  # right wherever b is, and more often
    keys = [f"c{i}" for i in range(n)]
    d = U.paired_difference(acc(a.astype(float), keys), [acc(b.astype(float), keys)])
    assert d["value"] == pytest.approx(a.mean() - b.mean())
    assert d["ci"][0] > 0 and d["outcome"] == "win"
    # the same clips in another order pair by key, not position: same answer
    perm = rng.permutation(n)
    shuffled = acc(b[perm].astype(float), [keys[i] for i in perm])
    d2 = U.paired_difference(acc(a.astype(float), keys), [shuffled])
    assert d2["value"] == pytest.approx(d["value"]) and d2["ci"] == pytest.approx(d["ci"])
    rev = U.paired_difference(acc(b.astype(float), keys), [acc(a.astype(float), keys)])
    assert rev["outcome"] == "loss"


def test_paired_interval_narrower_than_unpaired():
    # two encoders that agree on most clips: the paired SE is far below sqrt(se_a²+se_b²)
    rng = np.random.default_rng(3)
    b = (rng.random(400) < 0.6).astype(float)
    a = b.copy()
    a[:8] = 1.0
    d = U.paired_difference(acc(a), [acc(b)])
    sa, sb = U.suite_se(acc(a))["se"], U.suite_se(acc(b))["se"]
    assert d["se"] < 0.5 * np.hypot(sa, sb)


def test_mean_over_seeds_and_missing_clips():
    c = np.ones(10)
    a = acc(c)
    r1, r2 = acc(np.zeros(10)), acc(np.r_[np.ones(5), np.zeros(5)])
    d = U.paired_difference(a, [r1, r2])
    assert d["value"] == pytest.approx(1.0 - 0.25)
    # a clip one encoder did not score is left out of the pair
    short = acc(np.zeros(9), [f"c{i}" for i in range(9)])
    d = U.paired_difference(a, [short])
    assert d["n_clips"] == 9 and d["value"] == pytest.approx(1.0)
    other = {"u": acc(np.ones(5), task="u")["u"]}
    assert U.paired_difference(a, [other])["value"] is None


def test_kfold_task_score_is_mean_of_folds():
    # fold 0: 4 clips all right; fold 1: 2 clips, none right → score (1 + 0)/2 = 0.5,
    # not the pooled 4/6; resampling within folds keeps every resample at exactly 0.5
    folds = np.array([0, 0, 0, 0, 1, 1])
    res = U.suite_se(acc(np.r_[np.ones(4), np.zeros(2)], folds=folds))
    assert res["value"] == pytest.approx(0.5)
    assert res["se"] == 0.0


def test_weighted_ap_matches_sklearn_on_duplicated_clips():
    rng = np.random.default_rng(4)
    n = 60
    y = (rng.random(n) < 0.3).astype(float)
    s = np.round(rng.random(n), 1)  # ties
    w = rng.integers(0, 3, size=(5, n)).astype(float)
    ours = U.weighted_ap(y, s, w)
    for r in range(5):
        idx = np.repeat(np.arange(n), w[r].astype(int))
        want = average_precision_score(y[idx], s[idx]) if y[idx].any() else np.nan
        assert ours[r] == pytest.approx(want, abs=1e-12, nan_ok=True)


def test_map_task_round_trips_and_scores():
    rng = np.random.default_rng(5)
    n, c = 80, 4
    labels = (rng.random((n, c)) < 0.3).astype(float)
    scores = labels + rng.normal(0, 0.8, (n, c))
    o = ClipOutcomes("mAP", [f"c{i}" for i in range(n)], np.zeros(n), labels=labels, scores=scores)
    back = ClipOutcomes.from_dict(o.to_dict())
    res = U.suite_se({"m": back})
    aps = [average_precision_score(labels[:, k], back.scores[:, k]) for k in range(c)]
    assert res["value"] == pytest.approx(np.mean(aps), abs=1e-12)
    assert 0 < res["se"] < 0.2


def test_bad_outcomes_are_refused():
    with pytest.raises(ValueError, match="disagree"):
        ClipOutcomes("accuracy", ["a", "b"], [0, 0], correct=[1])
    with pytest.raises(ValueError, match="metric"):
        ClipOutcomes("f1", ["a"], [0], correct=[1])
