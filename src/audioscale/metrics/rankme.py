"""RankMe: the effective rank of an embedding matrix, as docs/ARCHITECTURE.md pins it.

Garrido, Balestriero, Najman & LeCun, "RankMe: Assessing the Downstream Performance of
Pretrained Self-Supervised Representations by Their Rank", ICML 2023 (arXiv
2210.02885), eq. 1, which smooths the effective rank of Roy & Vetterli (2007):

    sigma = singular values of Z (N x K),  p_k = sigma_k / sum(sigma) + eps,
    RankMe(Z) = exp(-sum_k p_k log p_k),   eps = 1e-7.

Choices, each deliberate and tested:

- No centring: the singular values are those of Z itself, as in the paper. The centred
  (covariance) variant is an option of ``spectrum_metrics`` / ``measure``, named in
  every stored result, never the default.
- eps placement: added to every p_k *after* normalisation (so sum p = 1 + n_sigma*eps,
  as in the paper's code); it keeps log finite for zero singular values. There are
  min(N, K) terms, the number of singular values of an N x K matrix.
- float64: the matrix is converted to float64 before any arithmetic (numpy or torch,
  CPU or CUDA), so a float16/float32 embedding is measured at full precision.
- Zero matrix (sum sigma = 0): the formula is 0/0. We define RankMe = 0.0, the rank of
  the zero matrix, so a representation that carries nothing ranks below every other
  (any non-zero matrix has RankMe >= ~1). A constant non-zero matrix has rank 1 and
  RankMe ~= 1 (centred, it becomes the zero matrix: 0).
- NaN/Inf anywhere: EmbeddingError naming how many rows are affected, never a NaN.
- Route: the SVD of Z (``route="svd"``, LAPACK on the float64 matrix), or the
  eigenvalues of ZᵀZ accumulated in float64 (``route="gram"``, see gram.py), which is
  what makes N in the millions cheap. ``"auto"`` picks by measured cost, then checks
  the accuracy of what it got:

  * Cost (``choose_route``): both routes cost about N·K² for N >= K, the Gram route
    with a several times smaller constant, plus K³ for its K x K eigensolver; an SVD of
    a wide matrix (N < K) costs N²·K. ``auto`` takes the Gram route from
    N >= GRAM_MIN_ROWS_PER_K · K rows (and at least GRAM_MIN_ROWS), the crossover
    measured by bench/bench_rankme_route.py (bench/RESULTS.md), and the SVD below it.
    Timings of both routes at 25,600 x 768: bench/RESULTS.md ("RankMe").
  * Accuracy (``gram_rankme_error_bound``): the Gram squares the condition number, so
    singular values below sqrt(K·eps_mach)·sigma_max (4e-7 · sigma_max at K = 768) are
    not resolved (gram.py). Each p_k of such a value is eps + O(4e-7 / (sum sigma /
    sigma_max)), and -p log p changes little over that range: for spectra that decay
    or are full-rank the effect on RankMe is far below 1e-6. But many such values
    together (a collapsed or rank-deficient matrix whose null directions hold float32
    rounding noise, or a spectrum spanning 1e-8) move RankMe by 3e-6 .. 4e-3 relative
    (measured, bench/RESULTS.md). ``auto`` therefore bounds, to first order, how far
    RankMe can move when every Gram singular value is off by its resolution, and when
    that bound exceeds GRAM_CERTIFY_RTOL (1e-7, ten times inside the 1e-6 contract) it
    computes the SVD instead (and reports ``route="svd"``). The check costs O(K); the
    fallback costs one Gram more than a plain SVD (~20 % at 25,600 x 768), and only on
    such matrices; the bound is conservative (it also sends some steep but resolved
    spectra, e.g. sigma ∝ i^-2, to the SVD).

  ``route="gram"`` asked for explicitly (and the streaming GramAccumulator) skips the
  check: there the caller has chosen memory O(K²) and accepts the resolution limit.

Reference values: a rank-r matrix with r equal singular values gives ~r (exactly
exp(-r(1/r+eps)log(1/r+eps) - (m-r) eps log eps) with m = min(N, K)); an N x K matrix
with orthonormal columns gives ~K.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from audioscale.errors import EmbeddingError
from audioscale.metrics.gram import (
    EPS_MACH,
    GramAccumulator,
    _is_torch,
    check_matrix,
    count_bad_rows,
    to_float64,
)

EPS = 1e-7
ROUTES = ("auto", "svd", "gram")
GRAM_BATCH_ROWS = 8192
# Crossover of the two routes' cost, measured by bench/bench_rankme_route.py (the
# numbers and their machine: bench/RESULTS.md, "Route crossover"): the Gram route is
# faster from about N = K.
GRAM_MIN_ROWS_PER_K = 1.0
GRAM_MIN_ROWS = 64
GRAM_CERTIFY_RTOL = 1e-7


def rankme(z: Any, eps: float = EPS, route: str = "auto") -> float:
    """RankMe of an (N, K) numpy array or torch tensor (CPU or CUDA); see module doc."""
    s, _ = singular_values(z, route=route, eps=eps)
    return rankme_from_singular_values(s, eps)


def rankme_from_singular_values(s: np.ndarray, eps: float = EPS) -> float:
    """exp(-sum p log p) with p_k = s_k / sum(s) + eps; 0.0 when sum(s) == 0."""
    s = np.asarray(s, dtype=np.float64)
    if s.size == 0:
        raise EmbeddingError("RankMe of an empty spectrum is undefined")
    if eps < 0:
        raise EmbeddingError(f"RankMe eps must be >= 0, got {eps}")
    top = float(s.max())
    if top == 0.0:
        return 0.0
    s = s / top  # scale-free; keeps the sum finite for values near the float64 limit
    p = s / s.sum() + eps
    p = p[p > 0]  # only reachable with eps == 0: 0 log 0 = 0
    return float(np.exp(-np.sum(p * np.log(p))))


def choose_route(n: int, k: int, route: str = "auto") -> str:
    """'svd' or 'gram' for an n x k matrix: the cheaper one by the measured crossover
    (see the module docstring); an explicit route is returned as it is."""
    if route not in ROUTES:
        raise EmbeddingError(f"route must be one of {', '.join(ROUTES)}, got {route!r}")
    if route != "auto":
        return route
    return "gram" if n >= max(GRAM_MIN_ROWS, GRAM_MIN_ROWS_PER_K * k) else "svd"


def gram_rankme_error_bound(s: np.ndarray, k: int, eps: float = EPS) -> float:
    """First-order bound on the relative change of RankMe when every singular value of
    ``s`` (from the Gram route of a matrix with K = ``k`` columns) is off by the route's
    resolution: an eigenvalue error of K·eps_mach·lambda_max, i.e. sigma_k ± delta_k with
    delta_k = tau² / (sigma_k + tau), tau = sqrt(K·eps_mach)·sigma_max (delta = tau for
    the values the Gram route sets to 0, ~ tau²/sigma for resolved ones).

    With H = -Σ p log p and RankMe = exp(H), |ΔRankMe| / RankMe ≈ |ΔH| <= Σ_k |∂H/∂σ_k|
    delta_k, where ∂H/∂σ_k = (-(log p_k + 1) + Σ_j (log p_j + 1) σ_j / S) / S and
    S = Σ σ. -p log p is concave, so for the values at 0 the tangent overestimates the
    change. Infinite with eps = 0 and a zero singular value (log 0)."""
    s = np.asarray(s, dtype=np.float64)
    top = float(s.max()) if s.size else 0.0
    if top == 0.0:
        return 0.0  # the zero matrix: both routes give exactly 0
    u = s / top
    tau = math.sqrt(k * EPS_MACH)
    delta = tau * tau / (u + tau)
    p = u / u.sum() + eps
    if np.any(p <= 0):
        return math.inf
    lp1 = np.log(p) + 1.0
    grad = (-lp1 + np.sum(lp1 * u) / u.sum()) / u.sum()
    return float(np.sum(np.abs(grad) * delta))


def check_finite(z: Any, what: str = "embeddings") -> None:
    """EmbeddingError naming the number of rows holding NaN/Inf, if any."""
    bad = count_bad_rows(z)
    if bad:
        raise EmbeddingError(f"{what}: {bad} of {z.shape[0]} rows contain NaN or Inf")


def singular_values(
    z: Any,
    route: str = "auto",
    centred: bool = False,
    batch_rows: int = GRAM_BATCH_ROWS,
    eps: float = EPS,
) -> tuple[np.ndarray, str]:
    """Singular values (descending, float64 numpy, length min(N, K)) and the route used.

    ``centred`` subtracts the column means first (the covariance variant). With
    ``route="auto"`` a Gram result whose RankMe (at ``eps``) is not certified to
    GRAM_CERTIFY_RTOL is replaced by the SVD (see the module docstring)."""
    check_matrix(z)
    n, k = int(z.shape[0]), int(z.shape[1])
    chosen = choose_route(n, k, route)
    if chosen == "gram":
        acc = GramAccumulator(k, centred=centred)
        for i in range(0, n, batch_rows):
            acc.update(z[i : i + batch_rows])
        s = acc.spectrum()
        if route == "gram" or gram_rankme_error_bound(s, k, eps) <= GRAM_CERTIFY_RTOL:
            return s, "gram"
    check_finite(z)
    return _svd_values(to_float64(z), centred), "svd"


def _svd_values(y: Any, centred: bool) -> np.ndarray:
    if _is_torch(y):
        import torch

        if centred:
            y = y - y.mean(0)
        return torch.linalg.svdvals(y).cpu().numpy()
    if centred:
        y = y - y.mean(0)
    return np.linalg.svd(y, compute_uv=False)
