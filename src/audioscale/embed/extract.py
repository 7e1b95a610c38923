"""Batched embedding extraction with an on-disk cache.

``extract(encoder, rows, layer, level, cache_dir, ...)`` turns the clips named by
manifest ``rows`` into clip embeddings (``level="clip"``: one row per good clip, the
encoder's ``pool`` of its valid frames, the masked mean over time by default) or frame
embeddings (``level="frame"``: all good clips' valid frames concatenated, with offsets).
``embed_clips`` returns just the array; ``iter_frames`` streams one clip's frames at a
time for metrics that must not hold all frames in memory.

The parts, one module each:

- :mod:`audioscale.embed.inputs`: decoding and log-mels (the mel fast path for encoders
  with ``frames_from_mel``, read through the float32 feature cache of
  :mod:`audioscale.data.featcache` under ``<cache_dir>/mel``). A clip that fails to
  decode is skipped; its row index and reason land in ``Extraction.errors`` and
  ``Extraction.ok`` is False for it, so callers drop its label instead of misaligning.
- :mod:`audioscale.embed.engine`: long clips cut into pieces, length-sorted batches,
  outputs trimmed to each piece's valid frames.
- :mod:`audioscale.embed.embcache`: the embedding cache files
  ``<cache_dir>/<name>-<level>-L<layer>-<key>.f32|.json``, key = hash of (extractor
  version, encoder identity, layer, level, ``file_list_hash(rows)``, frontend config,
  input path). A changed checkpoint changes the identity, so it never reads a stale
  entry.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from audioscale.config import config_hash
from audioscale.embed import embcache
from audioscale.embed.base import Encoder
from audioscale.embed.engine import Engine
from audioscale.embed.inputs import ClipInputs
from audioscale.utils import progress_bar, resolve_device

EXTRACT_VERSION = 1


@dataclass
class Extraction:
    """Result of ``extract``. ``emb`` holds good clips only, in row order."""

    emb: np.ndarray  # clip: (n_ok, clip_dim); frame: (total_frames, dim)
    ok: np.ndarray  # (N,) bool: row i was embedded
    errors: dict[int, str] = field(default_factory=dict)  # row index -> reason
    offsets: np.ndarray | None = None  # frame level: (n_ok + 1,) start of each clip's frames
    level: str = "clip"
    key: str = ""
    from_cache: bool = False
    audio_seconds: float = 0.0
    wall_s: float = 0.0

    def full(self, fill: float = np.nan) -> np.ndarray:
        """Clip level: (N, D) aligned with the rows, bad rows filled with ``fill``."""
        out = np.full((len(self.ok), self.emb.shape[1]), fill, dtype=np.float32)
        out[self.ok] = self.emb
        return out

    def meta(self, rows: list[dict]) -> dict:
        """What the embedding cache stores beside the array."""
        return {
            "shape": list(self.emb.shape),
            "ok": self.ok.astype(int).tolist(),
            "errors": {str(k): v for k, v in self.errors.items()},
            "paths": {str(k): str(rows[k]["path"]) for k in self.errors},
            "offsets": self.offsets.tolist() if self.offsets is not None else None,
            "audio_seconds": self.audio_seconds,
            "level": self.level,
            "key": self.key,
        }


def cache_key(encoder: Encoder, rows: list[dict], layer: int, level: str, use_mel: bool) -> str:
    """The embedding cache key (see module docstring)."""
    from audioscale.data.manifest import file_list_hash

    cfg = encoder.frontend_config
    return config_hash(
        {
            "v": EXTRACT_VERSION,
            "encoder": encoder.identity(),
            "layer": encoder.layer_index(layer),
            "level": level,
            "files": file_list_hash(rows),
            "frontend": cfg.model_dump(mode="json") if cfg is not None else None,
            "sr": encoder.sample_rate,
            "max_seconds": encoder.max_seconds,
            "mel": bool(use_mel and encoder.has_mel_path),
        },
        length=20,
    )


@contextmanager
def _progress(total: int, desc: str, enabled: bool):
    """Yields an ``advance(n)`` callable over a progress bar on stderr."""
    with progress_bar(desc, enabled) as bar:
        tid = bar.add_task("", total=total)
        yield lambda n=1: bar.advance(tid, n)


def _prepare(encoder: Encoder, device: str) -> Encoder:
    from audioscale.errors import EmbeddingError

    dev = resolve_device(device)
    try:
        target = torch.device(dev)
    except RuntimeError:
        raise EmbeddingError(f"device {device!r}: expected auto, cpu, cuda or cuda:N") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise EmbeddingError(f"device {device!r}: CUDA is not available here")
    if target != encoder.device:
        encoder.to(dev)
    return encoder


def _stream(encoder, rows, layer, batch_size, use_mel, cache_dir, device, progress, sink):
    """Core loop shared by ``extract`` and ``iter_frames``: yields (row index, frames)."""
    enc = _prepare(encoder, device)
    inputs = ClipInputs(enc, rows, use_mel, cache_dir, enc.device)
    engine = Engine(enc, layer, batch_size, inputs.mel)
    desc = f"embed {enc.name}"
    with _progress(len(rows), desc, progress) as advance:
        last = -1
        for i, frames in engine(inputs):
            advance(i - last)
            last = i
            if frames.shape[0] == 0:
                inputs.errors[i] = "no output frames (clip too short for the encoder)"
                continue
            if not np.isfinite(frames).all():
                inputs.errors[i] = "encoder produced NaN/Inf frames"
                continue
            yield i, frames
    sink["errors"] = inputs.errors
    sink["audio_seconds"] = engine.audio_seconds


def _from_cache(data: Path, meta: dict, key: str, level: str) -> Extraction:
    off = meta.get("offsets")
    return Extraction(
        emb=embcache.read_array(data, meta),
        ok=np.array(meta["ok"], dtype=bool),
        errors={int(k): v for k, v in meta["errors"].items()},
        offsets=np.array(off, dtype=np.int64) if off is not None else None,
        level=level,
        key=key,
        from_cache=True,
        audio_seconds=float(meta.get("audio_seconds", 0.0)),
    )


def _compute(encoder, rows, layer, level, cache_dir, batch_size, device, progress, use_mel):
    """Extraction of every row (no cache read), its arrays gathered in row order."""
    sink: dict = {}
    ok = np.zeros(len(rows), dtype=bool)
    chunks, offsets = [], [0]
    stream = _stream(encoder, rows, layer, batch_size, use_mel, cache_dir, device, progress, sink)
    for i, frames in stream:
        ok[i] = True
        if level == "clip":
            chunks.append(encoder.pool(torch.from_numpy(frames)).numpy()[None])
        else:
            chunks.append(frames)
            offsets.append(offsets[-1] + frames.shape[0])
    width = encoder.clip_dim if level == "clip" else encoder.dim
    emb = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, width), np.float32)
    return Extraction(
        emb=emb,
        ok=ok,
        errors=dict(sorted(sink["errors"].items())),
        offsets=np.array(offsets, dtype=np.int64) if level == "frame" else None,
        level=level,
        audio_seconds=sink["audio_seconds"],
    )


def extract(
    encoder: Encoder,
    rows: list[dict],
    layer: int = -1,
    level: str = "clip",
    cache_dir: str | Path | None = None,
    batch_size: int = 16,
    device: str = "auto",
    progress: bool = True,
    use_mel: bool = True,
) -> Extraction:
    """Embed every clip of ``rows`` (see module docstring); reads/writes the cache."""
    if level not in ("clip", "frame"):
        raise ValueError(f"level must be 'clip' or 'frame', got {level!r}")
    t0 = time.perf_counter()
    layer = encoder.layer_index(layer)
    key = cache_key(encoder, rows, layer, level, use_mel)
    if cache_dir is not None:
        data, meta_path = embcache.cache_paths(cache_dir, encoder, level, layer, key)
        meta = embcache.read_meta(data, meta_path)
        if meta is not None:
            ex = _from_cache(data, meta, key, level)
            ex.wall_s = time.perf_counter() - t0
            return ex
    ex = _compute(encoder, rows, layer, level, cache_dir, batch_size, device, progress, use_mel)
    ex.key = key
    if cache_dir is not None:
        embcache.save(data, meta_path, ex.emb, ex.meta(rows))
    ex.wall_s = time.perf_counter() - t0
    _report_errors(ex.errors, rows, encoder.name, progress)
    return ex


def _report_errors(errors: dict[int, str], rows: list[dict], name: str, progress: bool) -> None:
    if not errors or not progress:
        return
    print(f"audioscale: {name}: skipped {len(errors)} of {len(rows)} clips", file=sys.stderr)
    for i, reason in list(errors.items())[:5]:
        print(f"  row {i}: {reason}", file=sys.stderr)


def embed_clips(
    encoder: Encoder,
    rows: list[dict],
    layer: int = -1,
    level: str = "clip",
    cache_dir: str | Path | None = None,
    batch_size: int = 16,
    device: str = "auto",
    progress: bool = True,
) -> np.ndarray:
    """Embeddings of the good clips, float32: clip level (n_ok, clip_dim), frame level
    (total_frames, dim). Use ``extract`` for the mask of skipped clips and the offsets."""
    return extract(encoder, rows, layer, level, cache_dir, batch_size, device, progress).emb


def iter_frames(
    encoder: Encoder,
    rows: list[dict],
    layer: int = -1,
    cache_dir: str | Path | None = None,
    batch_size: int = 16,
    device: str = "auto",
    progress: bool = True,
    errors: dict[int, str] | None = None,
) -> Iterator[np.ndarray]:
    """Yield each good clip's frames (n_frames, dim) float32, in row order, streaming.

    With ``cache_dir`` the frame cache is read when present, else written as the frames
    stream (committed only when the stream completes). Skipped clips go into ``errors``."""
    layer = encoder.layer_index(layer)
    errors = {} if errors is None else errors
    if cache_dir is None:
        sink: dict = {}
        stream = _stream(encoder, rows, layer, batch_size, True, None, device, progress, sink)
        for _, frames in stream:
            yield frames
        errors.update(sink["errors"])
        return
    key = cache_key(encoder, rows, layer, "frame", True)
    data, meta_path = embcache.cache_paths(cache_dir, encoder, "frame", layer, key)
    meta = embcache.read_meta(data, meta_path)
    if meta is not None:
        errors.update({int(k): v for k, v in meta["errors"].items()})
        yield from embcache.iter_rows(data, meta)
        return
    args = (batch_size, device, progress, errors, data, meta_path, key)
    yield from _iter_and_cache(encoder, rows, layer, cache_dir, *args)


def _iter_and_cache(
    encoder, rows, layer, cache_dir, batch_size, device, progress, errors, data, meta_path, key
) -> Iterator[np.ndarray]:
    sink: dict = {}
    ok = np.zeros(len(rows), dtype=bool)
    offsets = [0]
    with embcache.atomic_raw(data) as out:
        stream = _stream(encoder, rows, layer, batch_size, True, cache_dir, device, progress, sink)
        for i, frames in stream:
            ok[i] = True
            out.write(frames)
            offsets.append(offsets[-1] + frames.shape[0])
            yield frames
    ex = Extraction(
        emb=np.zeros((offsets[-1], encoder.dim), np.float32),  # shape only
        ok=ok,
        errors=dict(sorted(sink["errors"].items())),
        offsets=np.array(offsets),
        level="frame",
        key=key,
        audio_seconds=sink["audio_seconds"],
    )
    embcache.publish_meta(meta_path, data, ex.meta(rows))
    errors.update(ex.errors)
