"""Matrices with a known spectrum, shared by the metric tests."""

from __future__ import annotations

import numpy as np


def with_spectrum(s, n, k, seed=0):
    """An n x k matrix whose singular values are exactly s (len(s) <= min(n, k))."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((n, len(s))))
    v, _ = np.linalg.qr(rng.standard_normal((k, len(s))))
    return (u * np.asarray(s, dtype=np.float64)) @ v.T
