"""Probes and metrics on synthetic data with known answers; suite aggregation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from audioscale.probe import knn, linear
from audioscale.probe.metrics import (
    accuracy,
    average_precision,
    chance,
    mean_average_precision,
)
from audioscale.probe.suite import SuiteResult, evaluate_embeddings, folds_of, holdout

pytestmark = pytest.mark.usefixtures("one_thread")


def clusters(n, c=5, d=16, sep=4.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d)) * sep
    y = np.arange(n) % c
    return (centres[y] + rng.normal(size=(n, d))).astype(np.float32), y


# ----------------------------------------------------------------------------- metrics


def test_average_precision_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(2, 60))
        y = rng.integers(0, 2, n)
        s = np.round(rng.normal(size=n), 1)  # many ties
        if y.sum() == 0:
            assert np.isnan(average_precision(y, s))
            continue
        assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_average_precision_is_scikit_learns(monkeypatch):
    """One implementation of AP: ours delegates to scikit-learn's."""
    import audioscale.probe.metrics as pm

    calls = []

    def fake(y, s):
        calls.append(len(y))
        return 0.25

    monkeypatch.setattr(pm, "average_precision_score", fake)
    assert pm.average_precision(np.array([0, 1, 1]), np.array([0.1, 0.2, 0.3])) == 0.25
    assert calls == [3]


def test_average_precision_without_positives_is_nan_and_silent():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn would warn and return 0
        assert np.isnan(average_precision(np.zeros(5, int), np.arange(5.0)))
        y = np.array([[0, 1], [0, 0], [0, 1]])
        s = np.array([[0.3, 0.9], [0.2, 0.1], [0.1, 0.8]])
        assert mean_average_precision(y, s) == 1.0  # class 0 has no positives: skipped


def test_map_is_macro_over_classes_with_positives():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (40, 6))
    y[:, 5] = 0  # no positives: skipped
    s = rng.normal(size=(40, 6))
    ref = average_precision_score(y[:, :5], s[:, :5], average="macro")
    assert mean_average_precision(y, s) == pytest.approx(ref, abs=1e-12)
    assert mean_average_precision(y[:, :5], y[:, :5].astype(float)) == 1.0


def test_accuracy_and_chance():
    assert accuracy(np.array([0, 1, 2]), np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]])) == 2 / 3
    assert chance("accuracy", np.array([0, 0, 1]), np.array([0, 1, 1, 1])) == 0.25
    assert chance("mAP", None, np.array([[1, 0], [0, 0], [1, 1], [0, 0]])) == pytest.approx(0.375)


# ----------------------------------------------------------------------------- probes


def test_separable_clusters_score_one_both_probes():
    x, y = clusters(300)
    r = linear.linear_probe(x[:200], y[:200], x[200:250], y[200:250], x[250:], y[250:], 5,
                            epochs=60)  # fmt: skip
    assert r["score"] == 1.0 and r["valid_score"] == 1.0
    assert knn.knn_probe(x[:200], y[:200], x[250:], y[250:], 5)["score"] == 1.0


def test_random_labels_score_near_chance():
    x, _ = clusters(1200, sep=0.0)
    y = np.random.default_rng(5).integers(0, 4, 1200)
    r = linear.linear_probe(x[:800], y[:800], x[800:900], y[800:900], x[900:], y[900:], 4,
                            epochs=30)  # fmt: skip
    k = knn.knn_probe(x[:800], y[:800], x[900:], y[900:], 4)
    # 300 test clips, chance 0.25: 4 standard errors is ~0.1
    assert abs(r["score"] - 0.25) < 0.1 and abs(k["score"] - 0.25) < 0.1


def test_linear_probe_is_deterministic_and_picks_best_valid_epoch():
    x, y = clusters(200, sep=0.6, seed=3)
    args = (x[:120], y[:120], x[120:160], y[120:160], x[160:], y[160:], 5)
    a = linear.linear_probe(*args, epochs=20, seed=7)
    b = linear.linear_probe(*args, epochs=20, seed=7)
    np.testing.assert_array_equal(a.pop("test_scores"), b.pop("test_scores"))
    assert a == b
    assert 1 <= a["best_epoch"] <= 20
    assert a["settings"]["lr"] == 1e-3 and a["settings"]["weight_decay"] == 0.0


def test_multilabel_linear_and_knn():
    rng = np.random.default_rng(2)
    n, c, d = 400, 4, 12
    y = (rng.random((n, c)) < 0.35).astype(np.float32)
    w = rng.normal(size=(c, d)) * 3
    x = (y @ w + rng.normal(size=(n, d))).astype(np.float32)
    r = linear.linear_probe(x[:250], y[:250], x[250:300], y[250:300], x[300:], y[300:], c,
                            metric="mAP", multilabel=True)  # fmt: skip
    k = knn.knn_probe(x[:250], y[:250], x[300:], y[300:], c, metric="mAP", multilabel=True)
    assert r["score"] > 0.9 and k["score"] > 0.8
    # labels unrelated to x: mAP near prevalence (~0.35)
    yr = (rng.random((n, c)) < 0.35).astype(np.float32)
    kr = knn.knn_probe(x[:250], yr[:250], x[300:], yr[300:], c, metric="mAP", multilabel=True)
    assert kr["score"] < 0.55


def test_knn_weighting_follows_temperature_vote():
    # one query; neighbours: 3 of class 0 at sim ~0.9, 7 of class 1 at sim ~0.5
    q = np.array([[1.0, 0.0]])
    a0 = np.array([[0.9, np.sqrt(1 - 0.81)]] * 3)
    a1 = np.array([[0.5, np.sqrt(0.75)]] * 7)
    xtr = np.concatenate([a0, a1]).astype(np.float32)
    ytr = np.array([0] * 3 + [1] * 7)
    s = knn.knn_scores(xtr, ytr, q, 2, k=10, temperature=0.07)
    w0, w1 = 3 * np.exp(0.9 / 0.07), 7 * np.exp(0.5 / 0.07)
    assert s[0] == pytest.approx([w0 / (w0 + w1), w1 / (w0 + w1)], rel=1e-4)
    # a large temperature makes it a plain majority vote
    assert knn.knn_scores(xtr, ytr, q, 2, temperature=100.0)[0].argmax() == 1


# ----------------------------------------------------------------------------- suite


class FakeTask:
    def __init__(self, name, domain, rows, labels, multilabel=False, metric="accuracy"):
        self.name, self.domain, self.rows, self.labels = name, domain, rows, labels
        self.multilabel, self.metric = multilabel, metric
        self.folds = sorted({r["split"] for r in rows if r["split"].startswith("fold")})


def make_task(name, domain, y, splits):
    rows = [{"path": f"{name}/{i}.wav", "label": str(c), "labels": [str(c)], "split": s}
            for i, (c, s) in enumerate(zip(y, splits, strict=True))]  # fmt: skip
    return FakeTask(name, domain, rows, sorted({str(c) for c in y}))


def test_holdout_is_stratified_and_deterministic():
    y = np.repeat(np.arange(4), 25)
    m = holdout(y, 0.2, seed=0)
    assert np.array_equal(m, holdout(y, 0.2, seed=0))
    assert [int(m[y == c].sum()) for c in range(4)] == [5, 5, 5, 5]
    assert not holdout(y[:5]).any()


def test_kfold_each_clip_tested_once_and_averaged():
    x, y = clusters(150, c=3)
    splits = [f"fold{1 + i % 5}" for i in range(150)]
    task = make_task("k", "music", y, splits)
    folds = folds_of(task, task.rows)
    assert len(folds) == 5
    tested = np.concatenate([te for *_, te in folds])
    assert sorted(tested.tolist()) == list(range(150))
    for _, tr, va, te in folds:
        assert not (set(tr) & set(va)) and not (set(tr) & set(te)) and not (set(va) & set(te))
    res = evaluate_embeddings("m", [task], [x], protocols=["knn"])
    r = res.tasks["k"]["knn"]
    assert r["n_folds"] == 5 and r["n_test"] == 150 and len(r["fold_scores"]) == 5
    assert r["score"] == pytest.approx(np.mean(r["fold_scores"]))
    # per-clip outcomes: every clip once, keyed by path, and they give back the score
    o = res.outcomes["k"]["knn"]
    assert sorted(o.clips) == sorted(str(row["path"]) for row in task.rows)
    assert sorted(np.bincount(o.folds).tolist()) == [30] * 5
    unc = res.suite_uncertainty("knn")
    assert unc["value"] == pytest.approx(r["score"], abs=1e-12)


def test_suite_aggregates_and_json():
    x1, y1 = clusters(120, c=3, seed=1)
    x2, _ = clusters(80, c=2, sep=0.0, seed=2)
    y2 = np.random.default_rng(0).integers(0, 2, 80)
    sp1 = ["train"] * 80 + ["valid"] * 10 + ["test"] * 30
    sp2 = ["train"] * 60 + ["test"] * 20  # no valid split: held out from train
    t1, t2 = make_task("a", "speech", y1, sp1), make_task("b", "environment", y2, sp2)
    ok2 = np.ones(80, bool)
    ok2[3] = False  # a skipped clip: its row is dropped, not misaligned
    res = evaluate_embeddings("m", [t1, t2], [x1, x2[ok2]], [np.ones(120, bool), ok2],
                              linear_kw={"epochs": 20})  # fmt: skip
    a, b = res.tasks["a"]["linear"]["score"], res.tasks["b"]["linear"]["score"]
    assert res.suite == pytest.approx((a + b) / 2)
    n_a, n_b = res.tasks["a"]["linear"]["n_test"], res.tasks["b"]["linear"]["n_test"]
    assert (n_a, n_b) == (30, 20)
    assert res.suite_weighted == pytest.approx((a * 30 + b * 20) / 50)
    assert res.domains == {"environment": b, "speech": a}
    j = res.to_json()
    assert set(j["tasks"]["a"]) == {"linear", "knn"}
    assert j["suite"] == res.suite and j["suite_by_protocol"]["knn"] == res.suite_for("knn")
    assert j["protocol_settings"]["knn"]["k"] == 10
    assert res.flat()["task.a.knn"] == res.tasks["a"]["knn"]["score"]
    assert "outcomes" not in j["tasks"]["a"]["linear"]  # kept apart, not in probe --json
    assert len(res.outcomes["b"]["linear"].clips) == 20  # the skipped clip has none
    assert res.suite_uncertainty()["value"] == pytest.approx(res.suite, abs=1e-12)
    with pytest.raises(ValueError, match="embeddings"):
        evaluate_embeddings("m", [t2], [x2[ok2]])  # 80 rows but 79 embeddings, no mask


def test_suite_result_nan_becomes_null():
    r = SuiteResult(model="m")
    assert r.to_json()["suite"] is None


def test_linear_probe_without_a_usable_valid_split_keeps_the_last_epoch():
    rng = np.random.default_rng(4)
    y = (rng.random((120, 3)) < 0.4).astype(np.float32)
    x = (y @ rng.normal(size=(3, 8)) * 3 + rng.normal(size=(120, 8))).astype(np.float32)
    yva = np.zeros((20, 3), np.float32)  # no positives: mAP undefined every epoch
    r = linear.linear_probe(x[:80], y[:80], x[80:100], yva, x[100:], y[100:], 3,
                            metric="mAP", multilabel=True)  # fmt: skip
    assert r["best_epoch"] == linear.EPOCHS and np.isnan(r["valid_score"])
    assert r["score"] > 0.6  # chance (mean prevalence) is ~0.33


def test_standardise_on_uses_the_reference_rows_only():
    from audioscale.probe.suite import standardise_on

    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(50, 4)).astype(np.float32)
    x[:, 2] = 7.0  # constant on the reference rows: 0, not divided by ~0
    # constant up to float32 rounding (as mean pooling over clips of different lengths
    # leaves it): 0 too, the rounding noise is not blown up to unit variance
    x[:, 3] = np.float32(1.3) + np.float32(1.3) * 1e-7 * rng.choice([-1, 0, 1], size=50)
    ref = np.arange(30)
    z = standardise_on(x, ref)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z[ref].mean(0), 0.0, atol=1e-6)  # float32 rounding of ~1
    np.testing.assert_allclose(z[ref][:, [0, 1]].std(0), 1.0, atol=1e-6)
    assert np.all(z[:, 2] == 0.0)
    assert np.all(z[:, 3] == 0.0)
    # the statistics are the reference rows', not all rows'
    mu, sd = x[ref].mean(0), x[ref].std(0)
    np.testing.assert_allclose(z[40, 0], (x[40, 0] - mu[0]) / sd[0], rtol=1e-5)


def test_standardised_probes_ignore_per_dimension_offsets_and_scales():
    """A shared offset (the raw log-mel statistics' ~-47 dB) and per-dimension scales do
    not change standardised scores (both probes see the same z-scores, to float32
    rounding), while they do change raw cosine kNN."""
    x, y = clusters(200, c=4, d=8, sep=1.5, seed=3)
    splits = ["train"] * 120 + ["valid"] * 30 + ["test"] * 50
    task = make_task("t", "speech", y, splits)
    scale = np.geomspace(0.1, 10.0, 8).astype(np.float32)
    shifted = (x * scale - 47.0).astype(np.float32)
    kw = {"linear_kw": {"epochs": 30}}
    a = evaluate_embeddings("m", [task], [x], **kw).tasks["t"]
    b = evaluate_embeddings("m", [task], [shifted], **kw).tasks["t"]
    for p in ("linear", "knn"):
        assert b[p]["score"] == pytest.approx(a[p]["score"], abs=0.02)
        assert b[p]["settings"]["features"] == "standardised"
    raw_a = evaluate_embeddings("m", [task], [x], protocols=["knn"], features="raw")
    raw_b = evaluate_embeddings("m", [task], [shifted], protocols=["knn"], features="raw")
    assert raw_b.tasks["t"]["knn"]["score"] < raw_a.tasks["t"]["knn"]["score"] - 0.1
    assert raw_a.tasks["t"]["knn"]["settings"]["features"] == "raw"


def test_unknown_probe_features_are_refused():
    from audioscale.errors import ConfigError

    x, y = clusters(40, c=2)
    task = make_task("t", "speech", y, ["train"] * 30 + ["test"] * 10)
    with pytest.raises(ConfigError, match="features"):
        evaluate_embeddings("m", [task], [x], protocols=["knn"], features="whitened")


def test_map_outcomes_give_back_the_task_score():
    # a multi-label mAP task: the per-clip class scores recorded for the bootstrap
    # recompute the reported mAP
    x, y = clusters(120, c=3, seed=4)
    rows = [{"path": f"m/{i}.wav", "label": str(c), "labels": [str(c), str((c + 1) % 3)],
             "split": "test" if i >= 90 else "train"} for i, c in enumerate(y)]  # fmt: skip
    multi = FakeTask("multi", "music", rows, ["0", "1", "2"], multilabel=True, metric="mAP")
    res = evaluate_embeddings("m", [multi], [x], protocols=["knn"])
    unc = res.suite_uncertainty("knn")["tasks"]["multi"]
    assert unc["value"] == pytest.approx(res.tasks["multi"]["knn"]["score"], abs=1e-9)
    assert res.outcomes["multi"]["knn"].labels.shape == (30, 3)


def test_kfold_outcomes_number_folds_by_fold_not_by_position():
    # an encoder that lost every clip of fold2 must still label fold3's clips as fold3,
    # as the encoder that has them all does: the bootstrap stratifies by this label and
    # draws its resamples from it, so two encoders pair only when their labels agree
    from audioscale import uncertainty as U

    x, y = clusters(90, c=3)
    splits = [f"fold{1 + i % 3}" for i in range(90)]
    task = make_task("k", "music", y, splits)
    ok = np.array([s != "fold2" for s in splits])
    full = evaluate_embeddings("a", [task], [x], protocols=["knn"]).outcomes["k"]["knn"]
    part = evaluate_embeddings("b", [task], [x[ok]], [ok], protocols=["knn"]).outcomes["k"]["knn"]
    common = full.take(part.clips)
    assert common.folds.tolist() == part.folds.tolist()
    # the same outcomes under both labellings pair exactly: a zero-width interval at 0
    same = U.ClipOutcomes("accuracy", part.clips, part.folds, correct=common.correct)
    d = U.paired_difference({"k": common}, [{"k": same}])
    assert d["ci"] == [0.0, 0.0]
