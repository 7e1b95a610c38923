"""Seeded subsamples: the one place that picks ``n`` of a list's items by a seed.

Two conventions are in use, each kept because stored numbers depend on it (a different
pick is a different pool, a different N, a different RankMe). Both return the picked
items in their original order, and all items (the input itself) when there are at most
``n``:

- ``"permutation"``: the first ``n`` entries of ``numpy.random.default_rng(seed)
  .permutation(len(items))``, sorted. Nested in ``n``: at one seed the pick for
  ``n1 < n2`` is a subset of the pick for ``n2``. Used by ``metrics.measure`` (the
  RankMe pool of ``measure``), the equal-N RankMe gap (``evaluate.slices``) and the
  trainer's held-out files (``train.heldout.select_rows``).
- ``"choice"``: ``numpy.random.default_rng(seed).choice(len(items), n, replace=False)``,
  sorted. Not nested. Used by the study's eval pool (``evaluate.context``), the train and
  heldout slices (``evaluate.slices``) and the log-mel baseline's standardisation set
  (``embed.baselines.reference_rows``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeVar

import numpy as np

Method = Literal["permutation", "choice"]
T = TypeVar("T")


def sample_indices(total: int, n: int, seed: int, method: Method = "permutation") -> np.ndarray:
    """Sorted indices of a seeded subsample of ``n`` of ``total`` items (all of them when
    ``total <= n``), by ``method`` (module docstring)."""
    if total <= n:
        return np.arange(total)
    rng = np.random.default_rng(seed)
    if method == "permutation":
        return np.sort(rng.permutation(total)[:n])
    if method == "choice":
        return np.sort(rng.choice(total, n, replace=False))
    raise ValueError(f"unknown subsample method {method!r} (permutation or choice)")


def subsample(items: Sequence[T], n: int, seed: int, method: Method = "permutation"):
    """``items`` (a list, or a numpy array by rows) subsampled by ``sample_indices``, in
    their original order; ``items`` itself when it holds at most ``n``."""
    if len(items) <= n:
        return items
    keep = sample_indices(len(items), n, seed, method)
    if isinstance(items, np.ndarray):
        return items[keep]
    return [items[i] for i in keep]
