"""Streaming Gram accumulator: the spectrum of an N x K matrix in O(K^2) memory.

The singular values of Z are the square roots of the eigenvalues of the Gram matrix
ZᵀZ (K x K), and ZᵀZ is a sum over rows, so it can be accumulated batch by batch from
any stream of rows (a memory-mapped .npy file, an encoder run over a corpus) without
ever holding Z. This is the "Gram route" of the RankMe estimator (docs/ARCHITECTURE.md,
"The RankMe estimator").

Choices, each deliberate:

- float64 everywhere: every batch is converted to float64 before its Gram is formed
  (float32 batch Grams lose ~7 digits, which moves RankMe by far more than 1e-6 on
  spectra that decay; see bench/bench_rankme.py for the measured difference).
- Per-batch centring with the pairwise merge of Chan, Golub & LeVeque (1979, "Updating
  formulae and a pairwise algorithm for computing sample variances"): the state is the
  row count n, the mean mu and the centred scatter C = Σ (z - mu)(z - mu)ᵀ. The
  uncentred Gram is C + n mu muᵀ, a sum of two positive semi-definite terms (no
  cancellation), and the centred one is C itself, so one accumulator serves both
  variants without the catastrophic cancellation of ZᵀZ - n mu muᵀ when the mean is
  large compared with the spread.
- Power-of-two scaling: rows are multiplied by 2^-e (exact in floating point) where
  2^e bounds the largest |z| seen so far, so squares never overflow or underflow
  whatever the absolute scale of the embeddings; when a later batch is larger the
  state is rescaled (again by an exact power of two).
- Eigenvalues come from a symmetric eigensolver (``numpy.linalg.eigvalsh``). Its
  absolute error is a small multiple of eps_mach * lambda_max, so eigenvalues that are
  truly zero come back as ±(1e-16 .. 1e-15) * lambda_max, i.e. singular values of
  ~1e-8 * sigma_max instead of ~1e-16 * sigma_max from an SVD. Left in, they shift
  RankMe beyond the 1e-6 contract on a rank-deficient matrix (bench/bench_rankme.py; the
  shift grows with the number of null directions). We therefore clip negative
  eigenvalues to 0 and treat eigenvalues below ``tol = K * eps_mach * lambda_max`` as 0
  (the rank tolerance of
  ``numpy.linalg.matrix_rank`` applied to the K x K Gram). Consequence: the Gram route
  resolves singular values down to sqrt(K * eps_mach) * sigma_max (4e-7 * sigma_max
  for K = 768); smaller ones count as zero. Embeddings that come out of a float32
  encoder carry rounding noise at about that level anyway.
- Only the min(n, K) largest values are returned, exactly the count an SVD of the
  n x K matrix returns, so both routes enter RankMe's ε-smoothed entropy with the same
  number of terms.

The accumulator works on numpy arrays (CPU, BLAS ``syrk`` through ``bᵀ @ b``) and on
torch tensors; a CUDA tensor keeps the state on its device in float64 and only the
final K x K matrix comes back to the CPU for the eigensolver.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from audioscale.errors import EmbeddingError

EPS_MACH = float(np.finfo(np.float64).eps)


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def to_float64(z: Any, copy: bool = False) -> Any:
    """``z`` as float64: numpy stays numpy, a CPU tensor becomes numpy (BLAS syrk is
    faster than torch's gemm for ZᵀZ), a CUDA tensor stays on its device. ``copy=True``
    guarantees a fresh array that may be modified in place."""
    if _is_torch(z):
        import torch

        t = z.detach()
        t64 = t.to(torch.float64, copy=copy)
        return t64.numpy() if t64.device.type == "cpu" else t64
    return np.array(z, dtype=np.float64, copy=copy) if copy else np.asarray(z, np.float64)


def check_matrix(z: Any, what: str = "embeddings") -> None:
    """Raise EmbeddingError unless ``z`` is a non-empty 2-D matrix."""
    shape = tuple(z.shape)
    if len(shape) != 2:
        raise EmbeddingError(f"{what}: expected a 2-D (N, K) matrix, got shape {shape}")
    if shape[0] == 0 or shape[1] == 0:
        raise EmbeddingError(f"{what}: empty matrix of shape {shape}")


def count_bad_rows(z: Any) -> int:
    """Number of rows of ``z`` holding at least one NaN or Inf."""
    if _is_torch(z):
        import torch

        return int((~torch.isfinite(z).all(1)).sum().item())
    return int((~np.isfinite(z).all(1)).sum())


def _max_abs(y: Any) -> float:
    """max |y| (NaN if y holds a NaN, inf if it holds an Inf), without a temporary |y|."""
    return max(float(y.max()), -float(y.min()))


def _exponent(m: float) -> int:
    """e with 2^(e-1) <= m < 2^e (m > 0 finite)."""
    return math.frexp(m)[1]


class GramAccumulator:
    """Accumulate the float64 Gram matrix of a stream of (B, K) batches.

    ``update(batch)`` adds rows; ``spectrum()`` returns the singular values of the
    matrix of all rows seen (centred or not); ``merge(other)`` combines accumulators
    fed in parallel. Memory O(K^2) whatever the number of rows. Rows holding NaN/Inf
    are counted (and left out); ``spectrum()`` then raises EmbeddingError naming how
    many rows were affected.
    """

    def __init__(self, k: int, centred: bool = False):
        if k <= 0:
            raise EmbeddingError(f"GramAccumulator: K must be positive, got {k}")
        self.k = int(k)
        self.centred = bool(centred)
        self.n = 0  # finite rows accumulated
        self.n_bad = 0  # rows with NaN/Inf (left out)
        self.first_bad: int | None = None  # stream index of the first bad row
        self.rows_seen = 0
        self._e: int | None = None  # state is in units of 2^e
        self._mean: Any = None  # (K,) mean of the scaled rows
        self._scatter: Any = None  # (K, K) centred scatter of the scaled rows

    # ------------------------------------------------------------------ updates

    def update(self, batch: Any) -> None:
        """Add the rows of ``batch`` (numpy array or torch tensor, shape (B, K))."""
        y = to_float64(batch, copy=True)  # one float64 copy per batch, then in place
        if y.ndim != 2 or y.shape[1] != self.k:
            raise EmbeddingError(
                f"GramAccumulator: batch of shape {tuple(y.shape)} does not match K={self.k}"
            )
        b = int(y.shape[0])
        start, self.rows_seen = self.rows_seen, self.rows_seen + b
        if b == 0:
            return
        m = _max_abs(y)
        if not math.isfinite(m):
            y = self._drop_bad_rows(y, start)
            if y.shape[0] == 0:
                return
            m = _max_abs(y)
        if m > 0:
            self._raise_exponent(_exponent(m))
        if self._e is not None and self._e != 0:
            y *= 2.0**-self._e  # exact: a power of two
        mean = y.mean(0)
        y -= mean
        scatter = y.T @ y
        if self.n and _is_torch(self._mean) != _is_torch(mean):
            mean, scatter = _like(self._mean, mean), _like(self._scatter, scatter)
        self._merge_state(y.shape[0], mean, scatter)

    def _drop_bad_rows(self, y: Any, start: int) -> Any:
        if _is_torch(y):
            import torch

            good = torch.isfinite(y).all(1)
            bad_idx = torch.nonzero(~good).flatten().cpu().numpy()
        else:
            good = np.isfinite(y).all(1)
            bad_idx = np.flatnonzero(~good)
        self.n_bad += len(bad_idx)
        if self.first_bad is None and len(bad_idx):
            self.first_bad = start + int(bad_idx[0])
        return y[good]

    def _raise_exponent(self, e: int) -> None:
        """Make 2^e (or more) the unit of the state; rescales exactly by powers of two."""
        if self._e is None:  # first non-zero rows; a state of exact zeros needs no rescale
            self._e = e
            return
        if e <= self._e:
            return
        f = 2.0 ** (self._e - e)
        self._mean = self._mean * f
        self._scatter = self._scatter * (f * f)
        self._e = e

    def _merge_state(self, nb: int, mean_b: Any, scatter_b: Any) -> None:
        """Chan et al. pairwise merge of (n, mean, scatter) with a batch's statistics."""
        if self.n == 0:
            self.n, self._mean, self._scatter = nb, mean_b, scatter_b
            return
        n = self.n + nb
        delta = mean_b - self._mean
        w = self.n * nb / n
        if _is_torch(delta):
            import torch

            outer = torch.outer(delta, delta)
        else:
            outer = np.outer(delta, delta)
        self._scatter = self._scatter + scatter_b + w * outer
        self._mean = self._mean + (nb / n) * delta
        self.n = n

    def merge(self, other: GramAccumulator) -> GramAccumulator:
        """Fold another accumulator (same K) into this one; returns self."""
        if other.k != self.k:
            raise EmbeddingError(f"GramAccumulator.merge: K={other.k} does not match K={self.k}")
        if other.first_bad is not None and self.first_bad is None:
            self.first_bad = self.rows_seen + other.first_bad
        self.n_bad += other.n_bad
        self.rows_seen += other.rows_seen
        if other.n == 0:
            return self
        mean, scatter = other._mean, other._scatter
        if self.n == 0:
            self._e = other._e
            self._merge_state(other.n, mean, scatter)
            return self
        if other._e is not None:
            self._raise_exponent(other._e)
        if other._e is not None and other._e != self._e:
            f = 2.0 ** (other._e - self._e)
            mean, scatter = mean * f, scatter * (f * f)
        if _is_torch(self._mean) != _is_torch(mean):
            mean, scatter = _like(self._mean, mean), _like(self._scatter, scatter)
        self._merge_state(other.n, mean, scatter)
        return self

    # ------------------------------------------------------------------ results

    def check(self) -> None:
        """Raise EmbeddingError if rows were bad or no row was seen."""
        if self.n_bad:
            raise EmbeddingError(
                f"{self.n_bad} of {self.rows_seen} embedding rows contain NaN or Inf "
                f"(first at row {self.first_bad})"
            )
        if self.n == 0:
            raise EmbeddingError("no embedding rows were accumulated")

    def gram(self, centred: bool | None = None, scaled: bool = False) -> np.ndarray:
        """The K x K float64 Gram matrix (ZᵀZ, or the centred scatter when centred).

        With ``scaled=True`` it is in units of 2^(2e) (what the eigensolver sees)."""
        self.check()
        centred = self.centred if centred is None else centred
        g = _numpy(self._scatter)
        if not centred:
            mu = _numpy(self._mean)
            g = g + self.n * np.outer(mu, mu)
        g = (g + g.T) / 2  # exact symmetry for the eigensolver
        if not scaled and self._e:
            g = g * (4.0**self._e)
        return g

    def mean(self) -> np.ndarray:
        """Column means of all rows seen (original units)."""
        self.check()
        return _numpy(self._mean) * (2.0 ** (self._e or 0))

    def spectrum(self, centred: bool | None = None) -> np.ndarray:
        """Singular values (descending, float64, length min(n, K)) of the accumulated
        matrix, uncentred or centred (default: the accumulator's ``centred``)."""
        g = self.gram(centred, scaled=True)
        s = gram_singular_values(g, self.n)
        return s * (2.0 ** (self._e or 0))

    @property
    def route(self) -> str:
        return "gram"


def gram_singular_values(g: np.ndarray, n: int, rtol: float | None = None) -> np.ndarray:
    """Singular values of an n x K matrix from its K x K Gram ``g``.

    Eigenvalues below ``rtol * lambda_max`` (default K * eps_mach) and negative ones
    are set to 0 (see the module docstring), then the min(n, K) largest are returned
    as square roots, descending."""
    k = g.shape[0]
    lam = np.linalg.eigvalsh(g)[::-1]
    if not np.all(np.isfinite(lam)):
        raise EmbeddingError("Gram matrix is not finite (embedding values too large?)")
    top = max(float(lam[0]), 0.0)
    tol = (k * EPS_MACH if rtol is None else rtol) * top
    lam = np.where(lam > tol, lam, 0.0)
    return np.sqrt(lam[: min(n, k)])


def _numpy(x: Any) -> np.ndarray:
    if _is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _like(ref: Any, x: Any) -> Any:
    """``x`` converted to the array type (numpy / torch device) of ``ref``."""
    if _is_torch(ref):
        import torch

        return torch.as_tensor(_numpy(x), dtype=torch.float64, device=ref.device)
    return _numpy(x)
