"""Every label-free spectral metric from one spectrum, in one pass.

``spectrum_metrics(z or GramAccumulator)`` computes the singular values sigma_1 >= ...
>= sigma_m (m = min(N, K)) once, by the SVD or the streaming Gram route (see
rankme.py and gram.py), and derives from them, with lambda_i = sigma_i^2 (the
eigenvalues of ZᵀZ, or of the centred scatter when ``centred``; the 1/N of a
covariance is left out because every metric below is invariant to scale):

- RankMe (Garrido et al., ICML 2023, arXiv 2210.02885): exp of the entropy of
  p_k = sigma_k / sum(sigma) + eps. See rankme.py for every choice.
- alpha-ReQ (Agrawal, Mondal, Ghosh & Richards, "α-ReQ: Assessing Representation
  Quality in Self-Supervised Learning by measuring eigenspectrum decay", NeurIPS 2022):
  the decay exponent alpha of lambda_i ∝ i^-alpha, fitted by least squares of
  log lambda_i on log i, with weights 1/i, over ranks 11..100 (1-based). Range and
  weights follow the authors' reference code (reptrix: ``fit_range=arange(10, 100)``,
  zero-based, and Stringer et al. 2019's 1/i weighting). The eigenvalues are
  normalised to sum to 1 (explained-variance ratios, as in their PCA-based code); the
  fitted slope does not depend on that normalisation. Only strictly positive
  eigenvalues enter the fit; the upper end is cut to the last positive one. When
  fewer than 3 ranks remain (K < 13, or a low-rank matrix) the fit falls back to ranks
  1..min(100, r); with fewer than 2 positive eigenvalues alpha is undefined (None).
  The range actually fitted and the R^2 of the fit (unweighted, in log-log over the
  fitted ranks) are reported: alpha means little where the R^2 is poor. Eigenvalues
  at or below K * eps_mach * lambda_max count as zero here (numerical null space).
- NESum (He & Ozay, "Exploring the Gap between Collapsed & Whitened Features in
  Self-Supervised Learning", ICML 2022): sum_i lambda_i / lambda_1.
- Stable rank: sum_i sigma_i^2 / sigma_1^2 = ||Z||_F^2 / ||Z||_2^2 (Rudelson &
  Vershynin 2007). On one spectrum it is algebraically the same number as NESum (both
  are sum(lambda) / lambda_max); both names are reported because the literature and
  the results table use both. With ``centred=True`` NESum is exactly He & Ozay's
  covariance definition; by default both include the mean direction, like RankMe.
- Participation ratio: (sum lambda)^2 / sum lambda^2 (Gao et al. 2017; Recanatesi et
  al. 2019), the effective dimensionality of the eigenspectrum.

The zero matrix has rank 0 and every metric is 0 for it (alpha None). Analytic cases:
K orthonormal columns give RankMe ~= K, stable rank = NESum = participation ratio = K,
alpha 0; a rank-1 matrix gives 1 for all of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from audioscale.metrics.gram import EPS_MACH, GramAccumulator
from audioscale.metrics.rankme import EPS, rankme_from_singular_values, singular_values

ALPHA_RANGE = (11, 100)


@dataclass
class SpectralResult:
    """All spectral metrics of one matrix, with what they were measured on."""

    rankme: float
    alpha_req: float | None
    alpha_req_range: tuple[int, int] | None  # 1-based ranks fitted, inclusive
    alpha_req_r2: float | None
    nesum: float
    stable_rank: float
    participation_ratio: float
    n: int  # rows measured
    k: int  # embedding dimension
    route: str  # "svd" | "gram"
    centred: bool
    eps: float
    spectrum: np.ndarray = field(default=None, repr=False)  # singular values, descending

    def to_dict(self) -> dict:
        """JSON-ready dict of every field except the spectrum."""
        d = asdict(self)
        d.pop("spectrum")
        if d["alpha_req_range"] is not None:
            d["alpha_req_range"] = list(d["alpha_req_range"])
        return d


def spectrum_metrics(
    z: Any,
    centred: bool | None = None,
    eps: float = EPS,
    route: str = "auto",
    alpha_range: tuple[int, int] = ALPHA_RANGE,
) -> SpectralResult:
    """Every metric of an (N, K) matrix (numpy / torch) or of a filled GramAccumulator.

    ``centred`` defaults to False for a matrix and to the accumulator's own setting."""
    if isinstance(z, GramAccumulator):
        centred = z.centred if centred is None else centred
        s, route, n, k = z.spectrum(centred), "gram", z.n, z.k
    else:
        centred = bool(centred)
        s, route = singular_values(z, route=route, centred=centred, eps=eps)
        n, k = int(z.shape[0]), int(z.shape[1])
    return metrics_from_singular_values(s, n, k, route, centred, eps, alpha_range)


def metrics_from_singular_values(
    s: np.ndarray,
    n: int,
    k: int,
    route: str,
    centred: bool,
    eps: float = EPS,
    alpha_range: tuple[int, int] = ALPHA_RANGE,
) -> SpectralResult:
    s = np.sort(np.asarray(s, dtype=np.float64))[::-1]
    u = _unit(s)  # every metric is scale-free; sigma / sigma_max keeps sigma^2 finite
    alpha, rng, r2 = alpha_req(u**2, alpha_range, k)
    return SpectralResult(
        rankme=rankme_from_singular_values(s, eps),
        alpha_req=alpha,
        alpha_req_range=rng,
        alpha_req_r2=r2,
        nesum=nesum(u**2),
        stable_rank=stable_rank(u),
        participation_ratio=participation_ratio(u**2),
        n=int(n),
        k=int(k),
        route=route,
        centred=bool(centred),
        eps=float(eps),
        spectrum=s,
    )


def _unit(x: np.ndarray) -> np.ndarray:
    """x / max(x): every ratio metric is scale-free, and this keeps sums finite."""
    top = float(np.max(x))
    return x / top if top > 0 else x


def nesum(lam: np.ndarray) -> float:
    """sum(lambda) / lambda_max (He & Ozay 2022); 0 for an all-zero spectrum."""
    lam = _unit(np.asarray(lam, dtype=np.float64))
    return float(lam.sum())


def stable_rank(s: np.ndarray) -> float:
    """sum(sigma^2) / sigma_max^2; 0 for an all-zero spectrum."""
    s = _unit(np.asarray(s, dtype=np.float64))
    return float(np.sum(s**2))


def participation_ratio(lam: np.ndarray) -> float:
    """(sum lambda)^2 / sum(lambda^2); 0 for an all-zero spectrum."""
    lam = _unit(np.asarray(lam, dtype=np.float64))
    sq = float(np.sum(lam**2))
    return float(lam.sum() ** 2 / sq) if sq > 0 else 0.0


def alpha_req(
    lam: np.ndarray, fit_range: tuple[int, int] = ALPHA_RANGE, k: int | None = None
) -> tuple[float | None, tuple[int, int] | None, float | None]:
    """(alpha, (first, last) 1-based ranks fitted, R^2) for lambda_i ∝ i^-alpha.

    Weighted least squares (weights 1/i) of log(lambda_i / sum lambda) on log i; see the
    module docstring for the range and the fallback. Eigenvalues at or below
    K * eps_mach * lambda_max count as zero (the Gram route's rank tolerance, so both
    routes fit the same ranks; an SVD leaves ~1e-32 * lambda_max in null directions,
    whose logs would otherwise dominate the fit)."""
    lam = _unit(np.sort(np.asarray(lam, dtype=np.float64))[::-1])
    tol = max(k or 0, lam.size) * EPS_MACH
    r = int(np.sum(lam > tol))
    if r < 2:
        return None, None, None
    lo, hi = int(fit_range[0]), min(int(fit_range[1]), r)
    if hi - lo + 1 < 3:
        lo = 1
    ranks = np.arange(lo, hi + 1, dtype=np.float64)
    y = np.log(lam[lo - 1 : hi] / lam[:r].sum())
    x = np.log(ranks)
    w = 1.0 / ranks
    xm, ym = np.sum(w * x) / w.sum(), np.sum(w * y) / w.sum()
    slope = np.sum(w * (x - xm) * (y - ym)) / np.sum(w * (x - xm) ** 2)
    resid = y - (ym + slope * (x - xm))
    if np.ptp(y) < 1e-9:  # flat up to rounding: the fit (alpha = 0) is exact
        return float(-slope), (lo, hi), 1.0
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot
    return float(-slope), (lo, hi), r2
