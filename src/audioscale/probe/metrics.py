"""Task metrics: accuracy and macro mean average precision (mAP).

``average_precision`` is scikit-learn's ``average_precision_score`` (the definition of
AudioSet evaluation, Gemmeke et al. 2017; Hershey et al. 2017): AP = Σ_n (R_n − R_{n−1})
P_n over the distinct score thresholds in decreasing order, tied scores forming one
threshold. A class without positives in ``y_true`` has no defined AP (recall is 0/0):
``average_precision`` returns NaN for it instead of scikit-learn's warning and 0, and
``mean_average_precision`` is the unweighted mean over the classes that have at least
one positive (the classes used are the non-NaN entries of ``ap_per_class``).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score


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
    if not y.any():
        return float("nan")
    return float(average_precision_score(y, np.asarray(scores, dtype=np.float64)))


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
