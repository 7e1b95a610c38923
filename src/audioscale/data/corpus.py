"""Pretraining clips from a feature cache: random crops for training, fixed crops for
held-out evaluation.

Sampling (``ClipDataset``): the batch of training step ``k`` is a pure function of
``(seed, k)``. A ``numpy`` generator seeded with ``[seed, k]`` draws, for each of the
``batch_size`` examples, a frame position uniformly over all frames of the cache (so an
item is chosen with probability proportional to its length, i.e. every second of audio is
equally likely), then a crop start uniform over the item's valid starts. Items shorter
than the clip are padded at the end with the cache floor ``10 * log10(amin)`` (silence).
This is fixed-length chunking with random crop and pad, without an epoch boundary.

Why a function of the step: resuming at step ``k`` needs no sampler state beyond ``k``,
the order does not depend on ``num_workers``, and data-parallel ranks take disjoint
slices of the same global batch (rank ``r`` of ``W`` gets examples ``r*B/W .. (r+1)*B/W``),
so ``W`` processes see exactly the batch one process would.

Assembly is a few memmap slices and one fp16→fp32 copy per example; ``make_loader`` adds
worker processes and pinned memory on CUDA so the GPU is never waiting
(``bench/bench_featcache.py`` measures batches/s).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from audioscale.data.featcache import FeatureCache
from audioscale.errors import DataError


class ClipDataset(Dataset):
    """Map-style dataset whose index is the training step; item ``k`` is the batch
    ``(batch_size // world_size, n_mels, clip_frames)`` float32 of this rank at step ``k``."""

    def __init__(
        self,
        cache: FeatureCache,
        clip_frames: int,
        seed: int = 0,
        batch_size: int = 64,
        rank: int = 0,
        world_size: int = 1,
    ):
        if cache.n_items == 0:
            raise DataError(f"{cache.root}: the feature cache holds no readable audio")
        if clip_frames <= 0:
            raise DataError(f"clip_frames must be positive, got {clip_frames}")
        if batch_size % world_size:
            raise DataError(f"batch size {batch_size} does not split over {world_size} processes")
        self.cache = cache
        self.clip_frames = clip_frames
        self.seed = seed
        self.batch_size = batch_size
        self.rank, self.world_size = rank, world_size
        self.local_batch = batch_size // world_size
        self._cum = np.cumsum(cache.lengths)

    def global_indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(item, start) of every example of the global batch at ``step``."""
        rng = np.random.default_rng([self.seed, step])
        pos = rng.random(self.batch_size) * self._cum[-1]
        items = np.searchsorted(self._cum, pos, side="right")
        room = np.maximum(self.cache.lengths[items] - self.clip_frames + 1, 1)
        starts = np.minimum((rng.random(self.batch_size) * room).astype(np.int64), room - 1)
        return items, starts

    def __getitem__(self, step: int) -> torch.Tensor:
        items, starts = self.global_indices(int(step))
        lo = self.rank * self.local_batch
        out = np.empty((self.local_batch, self.cache.n_mels, self.clip_frames), np.float32)
        for j in range(self.local_batch):
            out[j] = self.cache.frames(int(items[lo + j]), int(starts[lo + j]), self.clip_frames)
        return torch.from_numpy(out)

    def __len__(self) -> int:  # steps are unbounded; the sampler decides which are read
        return 1 << 62


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def make_loader(
    dataset: ClipDataset,
    start_step: int,
    stop_step: int,
    num_workers: int = 0,
    pin_memory: bool = False,
    prefetch_factor: int = 4,
) -> DataLoader:
    """Batches of steps ``start_step .. stop_step - 1`` in order. ``num_workers`` processes
    assemble batches ahead (``prefetch_factor`` each); ``pin_memory`` for CUDA copies."""
    kw = {}
    if num_workers > 0:
        kw = {"prefetch_factor": prefetch_factor, "worker_init_fn": _worker_init}
    return DataLoader(
        dataset,
        batch_size=None,
        sampler=range(start_step, stop_step),
        num_workers=num_workers,
        pin_memory=pin_memory,
        **kw,
    )


def fixed_clips(cache: FeatureCache, clip_frames: int, max_clips: int = 256) -> torch.Tensor:
    """Deterministic evaluation clips ``(N, n_mels, clip_frames)`` float32.

    Every item is cut into consecutive non-overlapping clips from its start (at least one
    per item, padded with the floor when short); when that gives more than ``max_clips``,
    ``max_clips`` of them are taken evenly spaced in (item, position) order. No randomness,
    so every run of a study that shares the held-out split is scored on the same clips."""
    if cache.n_items == 0:
        raise DataError(f"{cache.root}: the feature cache holds no readable audio")
    where = [
        (i, k * clip_frames)
        for i, n in enumerate(cache.lengths.tolist())
        for k in range(max(1, n // clip_frames))
    ]
    if len(where) > max_clips:
        pick = np.linspace(0, len(where) - 1, max_clips).round().astype(int)
        where = [where[p] for p in pick]
    clips = [cache.frames(i, s, clip_frames) for i, s in where]
    return torch.from_numpy(np.stack(clips))


def synthetic_pool(
    out: str | Path,
    n_train: int = 10,
    n_heldout: int = 2,
    seconds: tuple[float, float] = (1.5, 3.0),
    sr: int = 16000,
    seed: int = 0,
) -> Path:
    """Write a tiny pool of synthetic 16-bit wav files (tones with harmonics, chirps, noise
    bursts; random length in ``seconds``) and its ``manifest.csv`` (path, duration, source,
    split) to ``out``; for tests, benchmarks and smoke runs. Returns ``out``."""
    from audioscale.data.manifest import write_manifest
    from audioscale.data.taskwrite import encode_wav

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_train + n_heldout):
        n = int(rng.uniform(*seconds) * sr)
        t = np.arange(n) / sr
        kind = ("tone", "chirp", "noise")[i % 3]
        if kind == "tone":
            f0 = rng.uniform(110, 880)
            x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3))
        elif kind == "chirp":
            f0, f1 = rng.uniform(100, 500), rng.uniform(1000, 6000)
            x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * t[-1])))
        else:
            x = rng.standard_normal(n) * (np.sin(2 * np.pi * rng.uniform(1, 4) * t) > 0)
        x = 0.3 * x / max(1e-9, np.abs(x).max())
        path = out / f"{kind}_{i:03d}.wav"
        path.write_bytes(encode_wav(x.astype(np.float32), sr))  # peak 0.3: 16-bit PCM
        split = "train" if i < n_train else "heldout"
        rows.append({"path": str(path), "duration": n / sr, "source": kind, "split": split})
    write_manifest(out / "manifest.csv", rows, columns=["path", "duration", "source", "split"])
    return out
