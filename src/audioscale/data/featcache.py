"""Feature cache: the log-mel of every file, computed once, read by memory map.

Layout of one cache (a folder ``<cache_dir>/<key>/``):

- ``shard_00000.f16``, ``shard_00001.f16``, ...: raw little-endian float16 (``.f32``:
  float32 for a ``dtype="float32"`` cache), items back to back, each item stored
  (T, n_mels) row-major so that a time crop is one contiguous slice of the file. A shard
  is closed once it would pass ``shard_bytes`` (256 MB by default); an item bigger than
  that gets a shard of its own.
- ``index.json``: the cache key, the frontend config, ``n_mels``, the floor value, the
  size and sha256 of every shard (``digests``: checked at every open; a corrupt cache
  is named on stderr and built again), and one
  entry per input row in input order: ``{path, status: "ok", shard, offset, length,
  seconds}`` (offset and length in frames) or ``{path, status: <kind>, reason}`` for a file
  that could not be read (``kind`` from :class:`audioscale.errors.BadAudioError`:
  empty, corrupt, not-audio, nan, too-long, unreadable; ``error`` for anything else). One
  bad file never stops a build; it is skipped and its reason kept.

Choices:

- Key: ``sha256`` of (cache format version, the full frontend config, ``file_list_hash``
  of the rows, which covers each path, its size and mtime or sha1, and its
  ``max_seconds``/``offset_seconds``, the build's ``max_seconds`` cap, and the dtype when
  it is not float16). A changed config or a changed file gives a new key, so a stale
  cache is never read.
- Atomic build: features are written to ``.tmp-<key>-<pid>-<rand>/`` and the folder is
  renamed to ``<key>/`` only when complete (``index.json`` written last). A killed build
  leaves only a temporary folder, removed by the next build of that key.
- Concurrency: builders of one key take an exclusive ``flock`` on ``.<key>.lock``; the
  second waits, then finds the finished cache and opens it. Should locking be unavailable
  (some network file systems), the rename still decides: the loser drops its copy.
- Two dtypes. ``float16`` (the default; training crops): log-mel dB lies within about
  -100..+60, where fp16 keeps ~0.03 dB; long files are computed in 60 s blocks with
  enough context on each side (``ceil(n_fft / 2 / hop)`` frames) that every frame equals
  the whole-file computation up to float rounding (with ``top_db`` set, a per-file
  maximum, the file is computed whole). ``float32`` (embedding extraction, under
  ``<cache_dir>/mel``): every file computed whole on the caller's ``device``, so an item
  is exactly what ``LogMel`` gives for the file.
- The floor value ``audio.frontend.floor_db`` (``10 * log10(amin)``, -100 dB by default)
  is what silence maps to and what :meth:`FeatureCache.frames` pads with past an item's
  end.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from audioscale import faults
from audioscale.audio.frames import frames_for
from audioscale.audio.frontend import floor_db
from audioscale.audio.io import display_path
from audioscale.config import FrontendConfig, config_hash
from audioscale.errors import BadAudioError, CorruptArtefactError, DataError
from audioscale.utils import digest, ordered_map, progress_bar, verify

CACHE_VERSION = 1
SHARD_BYTES = 256 << 20
CHUNK_SECONDS = 60.0
INDEX = "index.json"
DTYPES = {"float16": ("<f2", ".f16"), "float32": ("<f4", ".f32")}  # numpy dtype, suffix


def cache_key(
    rows: list[dict],
    frontend_cfg: FrontendConfig,
    max_seconds: float | None = None,
    dtype: str = "float16",
) -> str:
    """The cache identity (see module docstring)."""
    from audioscale.data.manifest import file_list_hash

    blob = {
        "version": CACHE_VERSION,
        "frontend": frontend_cfg.model_dump(mode="json"),
        "files": file_list_hash(rows),
        "max_seconds": max_seconds,
    }
    if dtype != "float16":  # float16 caches keep the keys they had before dtypes existed
        blob["dtype"] = dtype
    return config_hash(blob, length=20)


# ----------------------------------------------------------------------------- compute


def logmel_long(
    wave: np.ndarray, module: torch.nn.Module, cfg: FrontendConfig, block_frames: int | None
) -> np.ndarray:
    """Log-mel ``(T, n_mels)`` float32 of a 1-D wave, computed on the module's device in
    blocks of ``block_frames`` frames (None: the whole wave at once).

    Each block is computed on its samples plus ``C = ceil(n_fft/2/hop) * hop`` samples of
    context each side, and only frames whose window lies inside that span are kept, so
    the result equals ``module(wave)`` frame for frame (the file's own edges are padded by
    the module as usual)."""
    n, hop = len(wave), cfg.hop_length
    total = frames_for(n, cfg)
    device = next(module.buffers()).device
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)).to(device)
    if block_frames is None or cfg.top_db is not None or total <= block_frames:
        with torch.no_grad():
            return module(x[None])[0].T.cpu().numpy()
    ctx = math.ceil(cfg.n_fft / 2 / hop) * hop
    out = []
    for j0 in range(0, total, block_frames):
        j1 = min(j0 + block_frames, total)
        lo, hi = max(0, j0 * hop - ctx), min(n, j1 * hop + ctx)
        k0 = (j0 * hop - lo) // hop
        with torch.no_grad():
            mel = module(x[None, lo:hi])[0]
        out.append(mel[:, k0 : k0 + (j1 - j0)].T.cpu().numpy())
    return np.concatenate(out, axis=0)


def _features(row: dict, cfg: FrontendConfig, module: torch.nn.Module, max_seconds, dtype: str):
    """Load one row and return its (T, n_mels) features of ``dtype`` and its seconds."""
    from audioscale.audio.io import load_audio

    cap = row.get("max_seconds")
    if max_seconds is not None:
        cap = max_seconds if cap is None else min(float(cap), max_seconds)
    wave = load_audio(
        row["path"],
        sr=cfg.sample_rate,
        max_seconds=cap,
        offset_seconds=float(row.get("offset_seconds") or 0.0),
    )
    block = int(CHUNK_SECONDS * cfg.sample_rate / cfg.hop_length) if dtype == "float16" else None
    feats = logmel_long(wave, module, cfg, block)
    if not np.isfinite(feats).all():
        raise BadAudioError(row["path"], "non-finite log-mel values", "nan")
    return feats.astype(DTYPES[dtype][0]), len(wave) / cfg.sample_rate


def _safe_features(row, cfg, module, max_seconds, dtype):
    try:
        return _features(row, cfg, module, max_seconds, dtype)
    except BadAudioError as e:
        return e
    except Exception as e:  # one bad file never kills the build
        return BadAudioError(row["path"], f"{type(e).__name__}: {e}".splitlines()[0], "error")


class _Shards:
    """Appends items to ``shard_*`` files of at most ``shard_bytes`` (one item may pass it)."""

    def __init__(self, tmp: Path, shard_bytes: int, suffix: str, row_bytes: int):
        self.tmp, self.shard_bytes, self.suffix, self.row_bytes = (
            tmp,
            shard_bytes,
            suffix,
            row_bytes,
        )
        self.names: list[str] = []
        self.fh, self.used = None, 0

    def add(self, feats: np.ndarray) -> tuple[int, int]:
        """Write ``feats``; returns (shard number, offset in frames)."""
        if self.fh is None or (self.used and self.used + feats.nbytes > self.shard_bytes):
            if self.fh is not None:
                self.fh.close()
            self.names.append(f"shard_{len(self.names):05d}{self.suffix}")
            faults.point(self.tmp / self.names[-1])
            self.fh, self.used = open(self.tmp / self.names[-1], "wb"), 0
        self.fh.write(feats.tobytes())
        where = (len(self.names) - 1, self.used // self.row_bytes)
        self.used += feats.nbytes
        return where

    def close(self) -> None:
        if self.fh is not None:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()


def _write_cache(
    tmp: Path,
    rows,
    cfg,
    key,
    max_seconds,
    shard_bytes,
    progress,
    workers,
    dtype: str = "float16",
    device: str | torch.device = "cpu",
) -> None:
    from audioscale.audio.frontend import LogMel

    tmp.mkdir(parents=True)
    module = LogMel(cfg).to(device).eval()
    np_dtype, suffix = DTYPES[dtype]
    shards = _Shards(tmp, shard_bytes, suffix, cfg.n_mels * np.dtype(np_dtype).itemsize)
    entries: list[dict] = []
    fn = lambda r: _safe_features(r, cfg, module, max_seconds, dtype)  # noqa: E731
    with progress_bar("log-mel cache", progress, eta=True) as bar:
        task = bar.add_task("build", total=len(rows))
        for row, res in zip(rows, ordered_map(fn, rows, workers), strict=True):
            bar.advance(task)
            if isinstance(res, BadAudioError):
                entries.append({"path": str(row["path"]), "status": res.kind, "reason": res.reason})
                continue
            feats, seconds = res
            shard, offset = shards.add(feats)
            entries.append(
                {
                    "path": str(row["path"]),
                    "status": "ok",
                    "shard": shard,
                    "offset": offset,
                    "length": int(feats.shape[0]),
                    "seconds": seconds,
                }
            )
    shards.close()
    index = {
        "version": CACHE_VERSION,
        "key": key,
        "frontend": cfg.model_dump(mode="json"),
        "n_mels": cfg.n_mels,
        "dtype": dtype,
        "layout": "(T, n_mels) row-major per item",
        "floor": floor_db(cfg),
        "max_seconds": max_seconds,
        "shards": shards.names,
        "digests": {name: digest(tmp / name) for name in shards.names},
        "items": entries,
    }
    faults.point(tmp / INDEX)
    (tmp / INDEX).write_text(json.dumps(index, default=str), encoding="utf-8")


@contextmanager
def _locked(path: Path):
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX)
        except OSError:  # no locking on this file system: the rename race still decides
            pass
        try:
            yield
        finally:
            try:
                fcntl.flock(f, fcntl.LOCK_UN)
            except OSError:
                pass


def _is_valid(root: Path, key: str, report: bool = True) -> bool:
    """Whether ``root`` holds the finished cache of ``key`` with every shard as written
    (size and sha256 of the index's ``digests``); a corrupt one is named on stderr and
    the caller builds it again."""
    try:
        index = json.loads((root / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if index.get("key") != key or index.get("version") != CACHE_VERSION:
        return False
    try:
        for name, expected in (index.get("digests") or {}).items():
            verify(root / name, expected, "feature cache shard")
    except CorruptArtefactError as e:
        if report:
            print(
                f"audioscale: {e.path}: {e.reason}; building the feature cache again",
                file=sys.stderr,
            )
        return False
    return True


# ----------------------------------------------------------------------------- the cache


class FeatureCache:
    """A built cache, read through memory maps. Item ``i`` is the ``i``-th readable row
    (input row ``row_index[i]``)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        try:
            index = json.loads((self.root / INDEX).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DataError(f"{self.root}: not a feature cache ({e.__class__.__name__})") from None
        self.key: str = index["key"]
        self.n_mels: int = int(index["n_mels"])
        self.floor: float = float(index["floor"])
        self.frontend = FrontendConfig.model_validate(index["frontend"])
        self.shards: list[str] = index["shards"]
        self.dtype: str = index.get("dtype", "float16")
        self.items = [e for e in index["items"] if e["status"] == "ok"]
        self.skipped = [e for e in index["items"] if e["status"] != "ok"]
        self.row_index = np.array(
            [i for i, e in enumerate(index["items"]) if e["status"] == "ok"], dtype=np.int64
        )
        self._problems = {
            i: f"{display_path(e['path'])}: {e['reason']}"
            for i, e in enumerate(index["items"])
            if e["status"] != "ok"
        }
        self.lengths = np.array([e["length"] for e in self.items], dtype=np.int64)
        self.seconds = np.array([e["seconds"] for e in self.items], dtype=np.float64)
        self.paths = [e["path"] for e in self.items]
        self._shard_idx = np.array([e["shard"] for e in self.items], dtype=np.int64)
        self._offsets = np.array([e["offset"] for e in self.items], dtype=np.int64)
        self._maps: dict[int, np.ndarray] = {}

    # -- building

    @classmethod
    def build(
        cls,
        rows: list[dict],
        frontend_cfg: FrontendConfig,
        cache_dir: str | Path,
        progress: bool = True,
        *,
        max_seconds: float | None = None,
        shard_bytes: int = SHARD_BYTES,
        workers: int = 1,
        dtype: str = "float16",
        device: str | torch.device = "cpu",
    ) -> FeatureCache:
        """Open the cache of ``rows`` under ``cache_dir``, building it first if needed.

        ``max_seconds`` caps what is read of every file (part of the key); ``workers``
        decodes files on that many threads (the layout does not depend on it); ``dtype``
        float16 or float32 (see the module doc; part of the key); ``device`` computes the
        log-mels there (not part of the key)."""
        cache_dir = Path(cache_dir)
        key = cache_key(rows, frontend_cfg, max_seconds, dtype)
        root = cache_dir / key
        if _is_valid(root, key):
            return cls(root)
        cache_dir.mkdir(parents=True, exist_ok=True)
        with _locked(cache_dir / f".{key}.lock"):
            if _is_valid(root, key, report=False):  # built by another process meanwhile
                return cls(root)
            for stale in cache_dir.glob(f".tmp-{key}-*"):  # left by killed builds
                shutil.rmtree(stale, ignore_errors=True)
            if root.exists():
                shutil.rmtree(root)
            tmp = cache_dir / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            try:
                _write_cache(
                    tmp,
                    *(rows, frontend_cfg, key, max_seconds, shard_bytes, progress, workers),
                    dtype=dtype,
                    device=device,
                )
                os.rename(tmp, root)
            except OSError:
                if not _is_valid(root, key):
                    raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        cache = cls(root)
        if cache.skipped and progress:
            print(
                f"feature cache: skipped {len(cache.skipped)} of {len(rows)} files "
                f"(reasons in {root / INDEX})",
                file=sys.stderr,
            )
        return cache

    # -- reading

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def total_frames(self) -> int:
        return int(self.lengths.sum())

    @property
    def total_seconds(self) -> float:
        return float(self.seconds.sum())

    def _map(self, shard: int) -> np.ndarray:
        m = self._maps.get(shard)
        if m is None:
            path = self.root / self.shards[shard]
            m = np.memmap(path, dtype=DTYPES[self.dtype][0], mode="r").reshape(-1, self.n_mels)
            self._maps[shard] = m
        return m

    def problems(self) -> dict[int, str]:
        """Input row index → ``"<path>: <reason>"`` for every row that could not be read."""
        return dict(self._problems)

    def item(self, i: int) -> np.ndarray:
        """Item ``i`` as stored: a read-only (T, n_mels) memory-mapped view (float16, or
        float32 for a float32 cache)."""
        off = self._offsets[i]
        return self._map(int(self._shard_idx[i]))[off : off + self.lengths[i]]

    def get(self, i: int) -> np.ndarray:
        """Item ``i`` as (n_mels, T) as stored (a transposed view, no copy)."""
        return self.item(i).T

    def frames(self, i: int, start: int, n: int) -> np.ndarray:
        """Frames ``start .. start+n`` of item ``i`` as (n_mels, n) float32, padded with
        the floor value past the item's end."""
        x = self.item(i)[start : start + n]
        out = np.full((self.n_mels, n), self.floor, dtype=np.float32)
        out[:, : x.shape[0]] = x.T
        return out

    def crop(self, i: int, frames: int, rng: np.random.Generator) -> np.ndarray:
        """A uniformly random crop of ``frames`` frames of item ``i`` (padded if short)."""
        start = int(rng.integers(0, max(1, int(self.lengths[i]) - frames + 1)))
        return self.frames(i, start, frames)

    def __getstate__(self) -> dict:  # memory maps are reopened in each process
        state = dict(self.__dict__)
        state["_maps"] = {}
        return state

    def __repr__(self) -> str:
        return (
            f"FeatureCache({self.root}, items={self.n_items}, skipped={len(self.skipped)}, "
            f"hours={self.total_seconds / 3600:.3f})"
        )
