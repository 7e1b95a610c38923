"""Weighted k-nearest-neighbour probe on frozen clip embeddings.

The non-parametric classifier of Wu et al. (CVPR 2018, "Unsupervised feature learning
via non-parametric instance discrimination") as used for evaluation in DINO (Caron et
al., ICCV 2021): embeddings are L2-normalised, similarity is the cosine, the k = 10
nearest training clips vote with weight exp(sim / T), T = 0.07. Class score =
Σ_neighbours w · onehot(label) / Σ w (the normalisation does not change the argmax; for
multi-label tasks the score of class c is the weighted fraction of neighbours carrying
c, ranked by mAP). Neighbours come from the train split only (valid is not used: the
probe has nothing to select), so kNN and the linear probe fit on the same clips.
Ties are broken by ``torch.topk`` (deterministic for a given input on CPU).
"""

from __future__ import annotations

import numpy as np
import torch

from audioscale.probe.metrics import score

K = 10
TEMPERATURE = 0.07


def settings(k: int = K, temperature: float = TEMPERATURE) -> dict:
    return {
        "protocol": "knn",
        "similarity": "cosine (L2-normalised)",
        "k": k,
        "temperature": temperature,
        "vote": "sum exp(sim/T)",
        "neighbours": "train split",
    }


def _normalise(x: np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    return torch.nn.functional.normalize(t, dim=1, eps=1e-12)


def knn_scores(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_query: np.ndarray,
    n_classes: int,
    multilabel: bool = False,
    k: int = K,
    temperature: float = TEMPERATURE,
    chunk: int = 2048,
) -> np.ndarray:
    """(N_query, C) vote scores. ``y_train``: class indices (N,) or multi-hot (N, C)."""
    tr, q = _normalise(x_train), _normalise(x_query)
    k = min(k, len(tr))
    if multilabel:
        votes = torch.as_tensor(np.asarray(y_train, dtype=np.float32))
    else:
        labels = torch.as_tensor(np.asarray(y_train, dtype=np.int64))
        votes = torch.nn.functional.one_hot(labels, n_classes).float()
    out = []
    for i in range(0, len(q), chunk):
        sim = q[i : i + chunk] @ tr.T
        top, idx = torch.topk(sim, k, dim=1, sorted=True)
        w = torch.exp(top / temperature - (1.0 / temperature))  # shift for fp32 range; cancels
        s = (w[..., None] * votes[idx]).sum(1) / w.sum(1, keepdim=True)
        out.append(s)
    return torch.cat(out).numpy() if out else np.zeros((0, n_classes), np.float32)


def knn_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    n_classes: int,
    metric: str = "accuracy",
    multilabel: bool = False,
    k: int = K,
    temperature: float = TEMPERATURE,
) -> dict:
    """Score the test split by a weighted vote of its k nearest train clips; returns
    {"score", "test_scores" (N_test, C), "settings"}."""
    from audioscale.probe.linear import one_thread

    with one_thread():
        s = knn_scores(x_train, y_train, x_test, n_classes, multilabel, k, temperature)
    out = {"score": score(metric, y_test, s), "test_scores": s}
    return out | {"settings": settings(k, temperature)}
