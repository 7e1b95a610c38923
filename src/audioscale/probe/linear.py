"""Linear probe on frozen clip embeddings (X-ARES-like; Zhang et al. 2025, arXiv 2505.16369).

Model: ``LayerNorm(D) → Linear(D, C)``. The LayerNorm standardises each embedding
(with a learnt affine), so encoders of very different scales are probed alike.
Training: Adam (lr 1e-3, weight decay 0, betas (0.9, 0.999)), minibatches of 64
shuffled by a seeded generator, a fixed budget of 200 epochs (cheap: the model is tiny;
60 left the demo tasks' best epoch at the end of the budget); after every epoch the
validation score is computed and the weights of the best epoch (first best on ties)
are kept (the last epoch when validation never gives a number); the test score is
reported at that epoch. Loss: cross-entropy for single-label
tasks; sigmoid + binary cross-entropy for multi-label tasks (scores = logits, ranked by
mAP). Seeded and deterministic on CPU.

Probes run with one torch thread (``one_thread``; restored afterwards): the matrices are
tiny, and intra-op threads only add synchronisation, which on a busy machine makes the
six demo tasks' probes many times slower (probe timings: bench/RESULTS.md).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from audioscale.probe.metrics import score

EPOCHS = 200
LR = 1e-3
WEIGHT_DECAY = 0.0
BATCH_SIZE = 64


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(1)``, restoring the previous count."""
    n = torch.get_num_threads()
    if n != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if n != 1:
            torch.set_num_threads(n)


def settings(
    epochs: int = EPOCHS,
    lr: float = LR,
    weight_decay: float = WEIGHT_DECAY,
    batch_size: int = BATCH_SIZE,
    seed: int = 0,
) -> dict:
    """The protocol settings stored with every linear-probe score."""
    return {
        "protocol": "linear",
        "model": "LayerNorm+Linear",
        "optimizer": "Adam",
        "lr": lr,
        "weight_decay": weight_decay,
        "epochs": epochs,
        "batch_size": batch_size,
        "selection": "best epoch by validation score",
        "seed": seed,
    }


def _targets(y: np.ndarray, multilabel: bool) -> torch.Tensor:
    return torch.as_tensor(y, dtype=torch.float32 if multilabel else torch.long)


def _predict(model: nn.Module, x: torch.Tensor, chunk: int = 4096) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model(x[i : i + chunk]) for i in range(0, len(x), chunk)]).numpy()


def linear_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    n_classes: int,
    metric: str = "accuracy",
    multilabel: bool = False,
    epochs: int = EPOCHS,
    lr: float = LR,
    weight_decay: float = WEIGHT_DECAY,
    batch_size: int = BATCH_SIZE,
    seed: int = 0,
) -> dict:
    """Train on train, select the epoch on valid, score test. ``y`` are class indices (N,)
    or multi-hot (N, C). Returns {"score", "test_scores" (N_test, C), "valid_score",
    "best_epoch", "settings"}."""
    with one_thread():
        return _fit(x_train, y_train, x_valid, y_valid, x_test, y_test, n_classes, metric,
                    multilabel, epochs, lr, weight_decay, batch_size, seed)  # fmt: skip


def _fit(x_train, y_train, x_valid, y_valid, x_test, y_test, n_classes, metric, multilabel,
         epochs, lr, weight_decay, batch_size, seed) -> dict:  # fmt: skip
    xs = [torch.as_tensor(np.asarray(a, dtype=np.float32)) for a in (x_train, x_valid, x_test)]
    xtr, xva, xte = xs
    ytr = _targets(y_train, multilabel)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.LayerNorm(xtr.shape[1]), nn.Linear(xtr.shape[1], n_classes))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss() if multilabel else nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    best, best_epoch, best_state = -np.inf, 0, copy.deepcopy(model.state_dict())
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(xtr), batch_size):
            idx = perm[i : i + batch_size]
            loss = loss_fn(model(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        v = score(metric, y_valid, _predict(model, xva))
        if v > best:  # NaN (e.g. mAP of a valid split without positives) never wins
            best, best_epoch, best_state = v, epoch, copy.deepcopy(model.state_dict())
    if best_epoch == 0:  # validation never gave a number: keep the last epoch
        best, best_epoch, best_state = float("nan"), epochs, model.state_dict()
    model.load_state_dict(best_state)
    model.eval()
    pred = _predict(model, xte)
    return {
        "score": score(metric, y_test, pred),
        "test_scores": pred,
        "valid_score": float(best),
        "best_epoch": best_epoch,
        "settings": settings(epochs, lr, weight_decay, batch_size, seed),
    }
