"""Measure an encoder (or an embedding matrix) on a pool of clips: every spectral metric
with the options that produced it, as one JSON-ready dict.

Protocol (docs/ARCHITECTURE.md, "The RankMe estimator"), each option named in the result:

- Pool and N: ``samples`` rows of the pool (default 25,600), or all when the pool is
  smaller. The subsample is a deterministic function of (pool order, seed): the first
  ``samples`` entries of ``numpy.random.default_rng(seed).permutation(len(rows))``,
  put back in pool order (``sampling.sample_indices``, ``"permutation"``). Subsamples
  are nested: at one seed, the rows for N1 < N2 are a subset of those for N2 (so
  RankMe-vs-N curves reuse clips). The pool is named in the result (``pool``, default
  ``pool-<hash>``) together with ``pool_hash``, a hash of the chosen file list (paths,
  sizes, mtimes), so two results are comparable exactly when their pool hashes match.
- Level: ``"clip"`` (default) measures one embedding per clip (the encoder's pool of
  its valid frames: mean over time of the chosen layer); ``n`` is then the number of
  clips embedded. ``"frame"`` measures every valid frame of the chosen clips, streamed
  clip by clip through the GramAccumulator (never holding the N x K frame matrix);
  ``n`` is then the number of frames. ``samples`` always counts clips.
- Layer: ``layer`` as given (-1 = last block) and ``layer_index`` (0-based) both go
  into the result.
- Centring: uncentred by default (RankMe as defined); ``centred=True`` measures the
  covariance spectrum instead (``centred`` in the result).
- Route: clip level takes the automatic route of ``spectrum_metrics`` (SVD up to
  2^25 entries, else Gram); frame level is always the streaming Gram route.
- Clips that fail to decode or embed are skipped (``clips_skipped`` and the first few
  reasons in ``skipped``); they never stop the measurement. With no clip left an
  EmbeddingError says why.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from audioscale.errors import EmbeddingError
from audioscale.metrics.gram import GramAccumulator, check_matrix
from audioscale.metrics.rankme import EPS, GRAM_BATCH_ROWS
from audioscale.metrics.spectral import spectrum_metrics
from audioscale.sampling import sample_indices

DEFAULT_SAMPLES = 25_600
LEVELS = ("clip", "frame")
MAX_REASONS = 5


def subsample_indices(n: int, samples: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a deterministic, nested subsample of ``samples`` of ``n`` items
    (all of them when ``samples`` is None, 0 or at least ``n``)."""
    if not samples:
        return np.arange(n)
    if samples < 0:
        raise EmbeddingError(f"samples must be positive, got {samples}")
    return sample_indices(n, samples, seed, "permutation")


def subsample_rows(rows: list[dict], samples: int | None, seed: int = 0) -> list[dict]:
    """The rows ``subsample_indices`` picks, in pool order."""
    return [rows[i] for i in subsample_indices(len(rows), samples, seed)]


def measure_embeddings(
    z: Any,
    centred: bool = False,
    samples: int | None = None,
    seed: int = 0,
    level: str = "clip",
    layer: int | None = None,
    pool_name: str | None = None,
    route: str = "auto",
    eps: float = EPS,
) -> dict:
    """Every metric of an (N, K) matrix already at hand (numpy, memmap or torch), with
    the options in the result. ``samples`` subsamples rows as ``measure`` does (default:
    all rows); a memory-mapped matrix is streamed in row batches on the Gram route."""
    t0 = time.perf_counter()
    check_matrix(z)
    n_all = int(z.shape[0])
    idx = subsample_indices(n_all, samples, seed)
    if len(idx) < n_all:
        z = z[idx] if not _is_torch(z) else z[_torch_index(idx, z)]
    res = spectrum_metrics(z, centred=centred, eps=eps, route=route)  # Gram route streams
    out = res.to_dict()
    out.update(
        level=level,
        layer=layer,
        pool=pool_name or "embeddings",
        pool_rows=n_all,
        samples=samples,
        seed=seed,
        wall_s=round(time.perf_counter() - t0, 3),
    )
    return out


def measure(
    encoder: Any,
    rows: list[dict],
    samples: int | None = DEFAULT_SAMPLES,
    level: str = "clip",
    layer: int = -1,
    centred: bool = False,
    seed: int = 0,
    pool_name: str | None = None,
    cache_dir: str | None = None,
    device: str = "auto",
    progress: bool = False,
    batch_size: int = 16,
    route: str = "auto",
    eps: float = EPS,
) -> dict:
    """Embed a deterministic subsample of ``rows`` with ``encoder`` (an
    ``audioscale.embed.base.Encoder``) and measure every spectral metric; see the
    module docstring for the protocol. Returns a JSON-ready dict: the SpectralResult
    fields plus level, layer, layer_index, pool, pool_hash, pool_rows, samples, seed,
    clips, clips_skipped, skipped, encoder, wall_s."""
    from audioscale.data.manifest import file_list_hash

    t0 = time.perf_counter()
    if level not in LEVELS:
        raise EmbeddingError(f"level must be 'clip' or 'frame', got {level!r}")
    if not rows:
        raise EmbeddingError(f"pool {pool_name}: no rows to measure" if pool_name else "no rows")
    layer_index = _layer_index(encoder, layer)
    chosen = subsample_rows(rows, samples, seed)
    pool_hash = file_list_hash(chosen)
    args = (encoder, chosen, layer, cache_dir, batch_size, device, progress)
    if level == "clip":
        res, errors = _clip_level(*args, centred, route, eps)
    else:
        res, errors = _frame_level(*args, centred, eps)
    out = res.to_dict()
    out.update(
        level=level,
        layer=layer,
        layer_index=layer_index,
        pool=pool_name or f"pool-{pool_hash[:12]}",
        pool_hash=pool_hash,
        pool_rows=len(rows),
        samples=samples,
        seed=seed,
        clips=len(chosen) - len(errors),
        clips_skipped=len(errors),
        skipped={str(chosen[i]["path"]): r for i, r in list(sorted(errors.items()))[:MAX_REASONS]},
        encoder=encoder.name,
        wall_s=round(time.perf_counter() - t0, 3),
    )
    return out


def _layer_index(encoder: Any, layer: int) -> int:
    try:
        return encoder.layer_index(layer)
    except ValueError:
        raise EmbeddingError(
            f"layer {layer}: out of range for {encoder.name} ({encoder.n_layers} layers)"
        ) from None


def _no_clips(errors: dict[int, str], n: int) -> EmbeddingError:
    first = next(iter(sorted(errors.items())), (None, "no output"))[1]
    return EmbeddingError(f"none of the {n} clips could be embedded (first reason: {first})")


def _clip_level(encoder, rows, layer, cache_dir, batch_size, device, progress, centred, route, eps):
    from audioscale.embed.extract import extract

    ex = extract(encoder, rows, layer, "clip", cache_dir, batch_size, device, progress)
    if ex.emb.shape[0] == 0:
        raise _no_clips(ex.errors, len(rows))
    return spectrum_metrics(ex.emb, centred=centred, eps=eps, route=route), ex.errors


def _frame_level(encoder, rows, layer, cache_dir, batch_size, device, progress, centred, eps):
    from audioscale.embed.extract import iter_frames

    errors: dict[int, str] = {}
    acc = GramAccumulator(encoder.dim, centred=centred)
    buf: list[np.ndarray] = []
    held = 0
    frames_iter = iter_frames(encoder, rows, layer, cache_dir, batch_size, device, progress, errors)
    for frames in frames_iter:
        buf.append(frames)
        held += frames.shape[0]
        if held >= GRAM_BATCH_ROWS:  # BLAS is faster on tall batches than clip by clip
            acc.update(np.concatenate(buf))
            buf, held = [], 0
    if buf:
        acc.update(np.concatenate(buf))
    if acc.rows_seen == 0:
        raise _no_clips(errors, len(rows))
    return spectrum_metrics(acc, eps=eps), errors


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _torch_index(idx: np.ndarray, z: Any) -> Any:
    import torch

    return torch.as_tensor(idx, device=z.device)
