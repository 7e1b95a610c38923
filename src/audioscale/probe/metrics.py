"""Task metrics: accuracy and macro mean average precision (mAP).

``average_precision`` follows the definition of scikit-learn's
``average_precision_score`` (and of AudioSet evaluation, Gemmeke et al. 2017; Hershey
et al. 2017): AP = Σ_n (R_n − R_{n−1}) P_n over the distinct score thresholds in
decreasing order, tied scores forming one threshold. ``mean_average_precision`` is the
unweighted mean over classes that have at least one positive in ``y_true`` (a class
without positives has no defined AP; it is skipped, and the count of classes used is
available from ``ap_per_class``).
"""

from __future__ import annotations

import numpy as np


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of equal entries; y_pred may be (N,) labels or (N, C) scores (argmax)."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 2:
        y_pred = y_pred.argmax(1)
    if len(y_true) == 0:
        return float("nan")
    return float((y_true == y_pred).mean())


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """AP of one class: binary ``y_true`` (N,), real ``scores`` (N,). NaN without positives."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each threshold
    tp = tp[last]
    precision = tp / (last + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def ap_per_class(y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(C,) AP per class for multi-hot ``y_true`` (N, C) and ``scores`` (N, C)."""
    y_true = np.asarray(y_true)
    scores = np.asarray(scores)
    return np.array([average_precision(y_true[:, c], scores[:, c]) for c in range(y_true.shape[1])])


def mean_average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Macro mAP over the classes with at least one positive."""
    ap = ap_per_class(y_true, scores)
    ap = ap[~np.isnan(ap)]
    return float(ap.mean()) if len(ap) else float("nan")


def score(metric: str, y_true: np.ndarray, scores: np.ndarray) -> float:
    """Dispatch by the task's metric name ("accuracy" or "mAP")."""
    if metric == "accuracy":
        return accuracy(y_true, scores)
    if metric == "mAP":
        return mean_average_precision(y_true, scores)
    raise ValueError(f"unknown metric {metric!r}")


def chance(metric: str, y_train: np.ndarray, y_test: np.ndarray) -> float:
    """Score of the best constant predictor learnt from train: the majority train class
    (accuracy), or constant scores (mAP = mean test prevalence of each class)."""
    if metric == "accuracy":
        majority = np.bincount(np.asarray(y_train)).argmax()
        return accuracy(y_test, np.full(len(y_test), majority))
    if metric == "mAP":
        prev = np.asarray(y_test).mean(0)
        prev = prev[prev > 0]
        return float(prev.mean()) if len(prev) else float("nan")
    raise ValueError(f"unknown metric {metric!r}")
