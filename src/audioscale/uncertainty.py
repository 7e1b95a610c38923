"""Uncertainty of probe scores over test clips: standard errors and paired differences.

Method: the nonparametric bootstrap with percentile intervals (Efron & Tibshirani, "An
Introduction to the Bootstrap", 1993: ch. 6 for the standard error, ch. 13 for the
percentile interval). The unit resampled is the test clip; the encoders are fixed.
Every choice:

- Outcomes: what each encoder's probe got right on each test clip of a task
  (``ClipOutcomes``, keyed by clip so two encoders are paired by clip, never by
  position): accuracy tasks keep per-clip correctness, mAP tasks the per-clip class
  scores and labels, because mAP is not a mean over clips and is recomputed on every
  resample.
- Resamples: ``N_RESAMPLES`` = 1000 draws with replacement, ``numpy.random.default_rng``
  seeded with ``[SEED, crc32(task name)]`` (``SEED`` = 0), so a task's resamples do not
  depend on which other tasks are present. A resample is a vector of counts (how often
  each clip was drawn); mAP on a resample is the weighted AP with those counts as
  weights, which equals AP on the duplicated clips (copies of a clip tie in score and
  label and form one threshold).
- Stratification: clips are resampled within each task, and within each fold of a
  K-fold task (every clip is in exactly one fold's test set); the task score of a
  resample is the mean over folds of that fold's metric, as ``probe.suite`` computes it,
  and the suite score the unweighted mean of task scores. The statistic on the original
  clips (all counts 1) is therefore the reported score.
- Standard error: the standard deviation (ddof = 1) of the resampled statistic.
  Interval: percentile, ``LEVEL`` = 95 % (2.5 and 97.5 % quantiles).
- Paired comparisons: every encoder of a comparison is scored on the same resampled
  clips (the clips all of them scored, by key), and the statistic is a contrast
  Σ_e w_e · suite_e: trained minus the mean of its architecture's random-init encoders
  (each init seed scored on the same resample; the seeds are averaged, not resampled),
  trained minus log-mel, RankMe's pick minus the label oracle's. Identical encoders give
  0 on every resample: a zero-width interval at 0.
- Outcome words: "win" when the interval lies above 0, "loss" below 0, "tie" when it
  holds 0; counts of wins count only clear wins.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
METHOD = (
    "paired percentile bootstrap over test clips, stratified by task and fold "
    "(Efron & Tibshirani 1993, ch. 6 and 13)"
)
METRICS = ("accuracy", "mAP")


@dataclass
class ClipOutcomes:
    """One encoder's test outcomes on one task (one protocol). ``folds``: the fold index of
    each clip (all 0 for a train/valid/test task); ``correct`` (n,) 0/1 for accuracy;
    ``labels`` (n, C) 0/1 and ``scores`` (n, C) for mAP; ``valid_score``: the probe's
    validation score (mean over folds; None for kNN)."""

    metric: str
    clips: list[str]
    folds: np.ndarray
    correct: np.ndarray | None = None
    labels: np.ndarray | None = None
    scores: np.ndarray | None = None
    valid_score: float | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"outcomes: metric {self.metric!r} is not one of {METRICS}")
        self.folds = np.asarray(self.folds, dtype=np.int64)
        n = len(self.clips)
        if self.metric == "accuracy":
            self.correct = np.asarray(self.correct, dtype=np.float64)
            shapes = [self.correct.shape[0]]
        else:
            self.labels = np.asarray(self.labels, dtype=np.float64)
            self.scores = np.asarray(self.scores, dtype=np.float64)
            shapes = [self.labels.shape[0], self.scores.shape[0]]
        if any(s != n for s in [*shapes, len(self.folds)]) or len(set(self.clips)) != n:
            raise ValueError(f"outcomes: {n} clips (unique keys) and arrays of {shapes} disagree")

    def take(self, keys: Sequence[str]) -> ClipOutcomes:
        """The outcomes of ``keys`` (a subset of ``clips``), in that order."""
        pos = {k: i for i, k in enumerate(self.clips)}
        idx = np.array([pos[k] for k in keys], dtype=np.int64)
        arr = {"correct": self.correct, "labels": self.labels, "scores": self.scores}
        picked = {k: None if v is None else v[idx] for k, v in arr.items()}
        return ClipOutcomes(
            self.metric, list(keys), self.folds[idx], **picked, valid_score=self.valid_score
        )

    def to_dict(self) -> dict:
        """JSON form (probe rows, the store): labels as class-index lists, scores at 6
        significant digits."""
        out: dict = {
            "metric": self.metric,
            "clips": list(self.clips),
            "folds": self.folds.tolist(),
            "valid_score": self.valid_score,
        }
        if self.metric == "accuracy":
            out["correct"] = self.correct.astype(int).tolist()  # type: ignore[union-attr]
        else:
            out["labels"] = [np.flatnonzero(r).tolist() for r in self.labels]  # type: ignore[union-attr]
            out["scores"] = [[float(f"{v:.6g}") for v in r] for r in self.scores]  # type: ignore[union-attr]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> ClipOutcomes:
        kw: dict = {"valid_score": d.get("valid_score")}
        if d["metric"] == "accuracy":
            kw["correct"] = d["correct"]
        else:
            scores = np.asarray(d["scores"], dtype=np.float64).reshape(len(d["clips"]), -1)
            labels = np.zeros_like(scores)
            for i, idx in enumerate(d["labels"]):
                labels[i, idx] = 1.0
            kw |= {"labels": labels, "scores": scores}
        return cls(d["metric"], list(d["clips"]), d["folds"], **kw)


# --------------------------------------------------------------------------- resampling


def task_counts(folds: np.ndarray, task: str, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n) counts: each fold's clips drawn with replacement, as many as it
    holds; seeded by (seed, crc32(task))."""
    rng = np.random.default_rng([seed, zlib.crc32(task.encode())])
    folds = np.asarray(folds)
    counts = np.zeros((n_resamples, len(folds)), dtype=np.float32)  # small ints: exact
    for f in np.unique(folds):
        idx = np.flatnonzero(folds == f)
        draws = rng.integers(0, len(idx), size=(n_resamples, len(idx)))
        flat = (np.arange(n_resamples)[:, None] * len(idx) + draws).ravel()
        counts[:, idx] = np.bincount(flat, minlength=n_resamples * len(idx)).reshape(
            n_resamples, len(idx)
        )
    return counts


_MEMO: dict[tuple, np.ndarray] = {}  # (task, n_resamples, seed, digest) → (R,) draws
MEMO_ENTRIES = 4096
_COUNTS: dict[tuple, np.ndarray] = {}  # (task, n_resamples, seed, folds) → counts
COUNT_ENTRIES = 16


def _digest(o: ClipOutcomes) -> str:
    h = hashlib.sha1(o.metric.encode())
    for a in (o.folds, o.correct, o.labels, o.scores):
        if a is not None:
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def task_draws(o: ClipOutcomes, task: str, n_resamples: int, seed: int) -> np.ndarray:
    """``task_scores`` of ``o`` on the task's resamples, (n_resamples,); memoised by the
    outcomes' content (a fit compares one run's outcomes in many pairs: the resamples of
    a task depend only on its name, folds, ``n_resamples`` and ``seed``, so the result
    is the same every time)."""
    key = (task, n_resamples, seed, _digest(o))
    if key not in _MEMO:
        if len(_MEMO) >= MEMO_ENTRIES:
            _MEMO.clear()
        ckey = (task, n_resamples, seed, o.folds.tobytes())
        if ckey not in _COUNTS:
            if len(_COUNTS) >= COUNT_ENTRIES:  # each (n_resamples, n clips): keep a few
                _COUNTS.clear()
            _COUNTS[ckey] = task_counts(o.folds, task, n_resamples, seed)
        _MEMO[key] = task_scores(o, _COUNTS[ckey])
    return _MEMO[key]


def weighted_ap(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AP of one class for every row of weights ``w`` (R, n): Σ_k (R_k − R_{k−1}) P_k over
    the distinct scores in decreasing order, precision and recall from weighted counts
    (scikit-learn's ``average_precision_score`` with ``sample_weight``). NaN where the
    weighted positives are 0."""
    order = np.argsort(-s, kind="stable")
    ys, ss = y[order], s[order]
    last = np.r_[ss[1:] != ss[:-1], True]  # the end of each group of tied scores
    wo = w[:, order]
    tp = np.cumsum(wo * ys, axis=1)[:, last]
    fp = np.cumsum(wo * (1.0 - ys), axis=1)[:, last]
    total = tp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1.0), 0.0)
        recall = tp / total
    gain = np.diff(recall, axis=1, prepend=0.0)
    ap = (gain * precision).sum(axis=1)
    return np.where(total[:, 0] > 0, ap, np.nan)


def _fold_metric(o: ClipOutcomes, idx: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The metric of clips ``idx`` of ``o`` under weights ``w`` (R, len(idx)) → (R,)."""
    if o.metric == "accuracy":
        return (w @ o.correct[idx]) / w.sum(axis=1)  # type: ignore[index]
    labels, scores = o.labels[idx], o.scores[idx]  # type: ignore[index]
    aps = np.stack([weighted_ap(labels[:, c], scores[:, c], w) for c in range(labels.shape[1])])
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(aps)
        n = ok.sum(axis=0)
        return np.where(n > 0, np.where(ok, aps, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)


def task_scores(o: ClipOutcomes, counts: np.ndarray) -> np.ndarray:
    """(R,) task score per row of ``counts``: the mean over folds of each fold's metric."""
    per_fold = [
        _fold_metric(o, idx, counts[:, idx])
        for f in np.unique(o.folds)
        if len(idx := np.flatnonzero(o.folds == f))
    ]
    return np.mean(per_fold, axis=0)


# --------------------------------------------------------------------------- encoders


def match(
    encoders: Sequence[dict[str, ClipOutcomes]],
) -> tuple[dict[str, list[ClipOutcomes]], list[str]]:
    """Per task every encoder has: its outcomes on the clips all of them scored, in one
    order (by key); and the tasks left out (missing for some encoder, or no common clip)."""
    tasks = sorted(set().union(*[e.keys() for e in encoders])) if encoders else []
    out, dropped = {}, []
    for t in tasks:
        if not all(t in e for e in encoders):
            dropped.append(t)
            continue
        common = set.intersection(*[set(e[t].clips) for e in encoders])
        keys = [k for k in encoders[0][t].clips if k in common]
        if not keys:
            dropped.append(t)
            continue
        out[t] = [e[t].take(keys) for e in encoders]
    return out, dropped


def suite_draws(
    per_task: dict[str, list[ClipOutcomes]], n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> tuple[np.ndarray, np.ndarray]:
    """(point (E,), resamples (E, R)) of the suite score (mean of task scores) of E matched
    encoders, every encoder on the same resampled clips."""
    points, draws = [], []
    for task, outs in sorted(per_task.items()):
        ones = np.ones((1, len(outs[0].clips)))
        points.append([task_scores(o, ones)[0] for o in outs])
        draws.append([task_draws(o, task, n_resamples, seed) for o in outs])
    return np.mean(points, axis=0), np.mean(draws, axis=0)


def summary(point: float, draws: np.ndarray, level: float = LEVEL) -> dict:
    """{value, se, ci, n_resamples, level} of one statistic (NaN resamples dropped)."""
    d = np.asarray(draws, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size < 2 or not np.isfinite(point):
        return {"value": None, "se": None, "ci": None, "n_resamples": int(d.size), "level": level}
    q = (1 - level) / 2
    lo, hi = np.quantile(d, [q, 1 - q])
    return {
        "value": float(point),
        "se": float(d.std(ddof=1)),
        "ci": [float(lo), float(hi)],
        "n_resamples": int(d.size),
        "level": level,
    }


def outcome_word(ci: Sequence[float] | None) -> str | None:
    """ "win" (interval above 0), "loss" (below 0), "tie" (holds 0), None (no interval)."""
    if ci is None:
        return None
    return "win" if ci[0] > 0 else "loss" if ci[1] < 0 else "tie"


def suite_se(
    encoder: dict[str, ClipOutcomes],
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> dict:
    """One encoder's suite score with its SE and interval (at ``level``), and each task's."""
    per_task, _ = match([encoder])
    if not per_task:
        return summary(float("nan"), np.array([]), level)
    point, draws = suite_draws(per_task, n_resamples, seed)
    out = summary(point[0], draws[0], level)
    out["tasks"] = {}
    for t, (o,) in per_task.items():
        full = task_scores(o, np.ones((1, len(o.clips))))[0]
        out["tasks"][t] = summary(full, task_draws(o, t, n_resamples, seed), level)
    return out


def contrast(
    encoders: Sequence[dict[str, ClipOutcomes]],
    weights: Sequence[float],
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> dict:
    """Σ_e w_e · suite_e of matched encoders, paired over clips: {value, se, ci,
    n_resamples, level, outcome, tasks, n_clips, dropped_tasks}."""
    per_task, dropped = match(list(encoders))
    if not per_task:
        out = summary(float("nan"), np.array([]), level)
        return out | {"outcome": None, "note": "no task that every encoder scored"}
    point, draws = suite_draws(per_task, n_resamples, seed)
    w = np.asarray(weights, dtype=np.float64)[:, None]
    out = summary(float((w[:, 0] * point).sum()), (w * draws).sum(axis=0), level)
    out["outcome"] = outcome_word(out["ci"])
    out["tasks"] = sorted(per_task)
    out["n_clips"] = int(sum(len(v[0].clips) for v in per_task.values()))
    if dropped:
        out["dropped_tasks"] = dropped
    return out


def paired_difference(
    a: dict[str, ClipOutcomes], b: Sequence[dict[str, ClipOutcomes]], **kw
) -> dict:
    """suite(a) − mean over ``b`` of suite(b_i), paired over clips (``contrast``)."""
    k = len(b)
    return contrast([a, *b], [1.0, *([-1.0 / k] * k)], **kw)
