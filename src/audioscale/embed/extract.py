"""Batched embedding extraction with an on-disk cache.

``extract(encoder, rows, layer, level, cache_dir, ...)`` turns the clips named by
manifest ``rows`` into clip embeddings (``level="clip"``: one row per good clip, the
encoder's ``pool`` of its valid frames, the masked mean over time by default) or frame
embeddings (``level="frame"``: all good clips' valid frames concatenated, with offsets).
``embed_clips`` returns just the array; ``iter_frames`` streams one clip's frames at a
time for metrics that must not hold all frames in memory.

Choices:

- Decoding: ``audio.io.load_audio`` at the encoder's rate (honouring a row's
  ``max_seconds`` / ``offset_seconds``), two decoder threads ahead of the encoder.
  A clip that fails to decode (``BadAudioError`` and kin) is skipped; its row index and
  reason land in ``Extraction.errors`` and ``Extraction.ok`` is False for it, so callers
  drop its label instead of misaligning.
- Long clips are cut into pieces of ``encoder.max_seconds`` (or ``max_mel_frames``),
  encoded separately and their frames concatenated. A trailing piece shorter than the
  encoder's minimum input is dropped; a clip shorter than it is zero-padded (waveform)
  or padded with the log-mel floor (mel path).
- Batching: pieces are sorted by length. Encoders with ``pads_exactly`` get padded
  batches plus ``lengths``; the others get only equal-length batches, so an embedding
  never depends on its batch mates. Every output is trimmed to ``n_frames(length)``.
- Mel fast path: for encoders with ``frames_from_mel`` (our MAEs) the log-mel of every
  clip is computed once and cached (float32, keyed by frontend config + sample rate +
  file list), then shared by every encoder of a study that uses the same frontend.
- Cache: ``<cache_dir>/<name>-<level>-L<layer>-<key>.f32`` (raw float32) + ``.json``
  (shape, mask, errors, offsets), key = hash of (extractor version, encoder identity,
  layer, level, ``file_list_hash(rows)``, frontend config, input path). The data file
  is written first and the json last, both atomically (``audioscale.utils.atomic_open``),
  so a killed run leaves no readable half-cache. The json records the data file's size
  and sha256 (``utils.digest``), checked at every read: a truncated or bit-flipped entry
  is named on stderr and computed again. A changed checkpoint changes the
  identity, so it never reads a stale entry.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from audioscale.config import config_hash
from audioscale.embed.base import Encoder, cut_pieces
from audioscale.errors import AudioscaleError, CorruptArtefactError
from audioscale.utils import (
    atomic_open,
    atomic_save_json,
    digest,
    ordered_map,
    progress_bar,
    resolve_device,
    verify,
)

EXTRACT_VERSION = 1
DECODE_THREADS = 2
BLOCK_CLIPS = 64  # clips decoded and batched together


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


# --------------------------------------------------------------------------- helpers


def _file_list_hash(rows: list[dict]) -> str:
    from audioscale.data.manifest import file_list_hash

    return file_list_hash(rows)


def _frontend_json(encoder: Encoder) -> dict | None:
    cfg = encoder.frontend_config
    return cfg.model_dump(mode="json") if cfg is not None else None


def cache_key(encoder: Encoder, rows: list[dict], layer: int, level: str, use_mel: bool) -> str:
    """The embedding cache key (see module docstring)."""
    return config_hash(
        {
            "v": EXTRACT_VERSION,
            "encoder": encoder.identity(),
            "layer": encoder.layer_index(layer),
            "level": level,
            "files": _file_list_hash(rows),
            "frontend": _frontend_json(encoder),
            "sr": encoder.sample_rate,
            "max_seconds": encoder.max_seconds,
            "mel": bool(use_mel and encoder.has_mel_path),
        },
        length=20,
    )


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:40] or "encoder"


@contextmanager
def _progress(total: int, desc: str, enabled: bool):
    """Yields an ``advance(n)`` callable over a progress bar on stderr."""
    with progress_bar(desc, enabled) as bar:
        tid = bar.add_task("", total=total)
        yield lambda n=1: bar.advance(tid, n)


def _load(row: dict, sr: int) -> np.ndarray:
    from audioscale.audio.io import load_audio

    return load_audio(
        row["path"],
        sr=sr,
        max_seconds=row.get("max_seconds"),
        offset_seconds=row.get("offset_seconds") or 0.0,
    )


def _safe(fn: Callable, x) -> tuple[object | None, str | None]:
    """fn(x) → (value, None) or (None, one-line reason) for a per-file failure."""
    try:
        return fn(x), None
    except (AudioscaleError, OSError, ValueError, RuntimeError, EOFError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        return None, msg


def _prefetch(fn: Callable, items: list, ahead: int = 16) -> Iterator[tuple[object, str | None]]:
    """Ordered ``_safe(fn, item)`` for each item, decoded on threads a bounded way ahead."""
    return ordered_map(lambda x: _safe(fn, x), items, DECODE_THREADS, ahead)


# --------------------------------------------------------------------------- inputs


class _Inputs:
    """Produces each good clip's encoder input (waveform or log-mel) in row order."""

    def __init__(self, encoder: Encoder, rows: list[dict], use_mel: bool, cache_dir, device):
        self.enc, self.rows, self.device = encoder, rows, device
        self.mel = bool(use_mel and encoder.has_mel_path)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.errors: dict[int, str] = {}
        self._frontend = None

    def frontend(self):
        if self._frontend is None:
            from audioscale.audio.frontend import LogMel

            self._frontend = LogMel(self.enc.frontend_config).to(self.device).eval()
        return self._frontend

    def _wave_to_mel(self, x: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            w = torch.from_numpy(x).to(self.device)[None]
            return self.frontend()(w)[0].float().cpu()

    def _decoded(self) -> Iterator[tuple[int, np.ndarray]]:
        sr = self.enc.sample_rate
        for i, (x, err) in enumerate(_prefetch(lambda r: _load(r, sr), self.rows)):
            if err is not None:
                self.errors[i] = err
                continue
            yield i, x

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor]]:
        if not self.mel:
            for i, x in self._decoded():
                yield i, torch.from_numpy(x)
        elif self.cache_dir is None:
            for i, x in self._decoded():
                yield i, self._wave_to_mel(x)
        else:
            yield from self._cached_mels()

    def _mel_paths(self) -> tuple[Path, Path]:
        key = config_hash(
            {
                "v": EXTRACT_VERSION,
                "frontend": _frontend_json(self.enc),
                "sr": self.enc.sample_rate,
                "files": _file_list_hash(self.rows),
            },
            length=20,
        )
        return _data_and_meta(self.cache_dir / "mel" / f"mel-{key}")

    def _cached_mels(self) -> Iterator[tuple[int, torch.Tensor]]:
        data, meta_path = self._mel_paths()
        meta = _read_meta(data, meta_path)
        if meta is None:
            meta = self._build_mel_cache(data, meta_path)
        self.errors.update({int(k): v for k, v in meta["errors"].items()})
        n_mels = meta["shape"][1]
        if meta["shape"][0] == 0:  # every clip failed: nothing to map
            return
        arr = np.memmap(data, dtype=np.float32, mode="r", shape=tuple(meta["shape"]))
        off = meta["offsets"]
        for j, i in enumerate(meta["index"]):
            yield i, torch.from_numpy(np.array(arr[off[j] : off[j + 1]]).T.reshape(n_mels, -1))

    def _build_mel_cache(self, data: Path, meta_path: Path) -> dict:
        index, offsets, total = [], [0], 0
        with _atomic_raw(data) as out:
            for i, x in self._decoded():
                m = self._wave_to_mel(x).T.contiguous().numpy()  # (T, n_mels) rows
                out.write(m)
                total += m.shape[0]
                index.append(i)
                offsets.append(total)
        meta = {
            "shape": [total, self.enc.frontend_config.n_mels],
            "index": index,
            "offsets": offsets,
            "errors": {str(k): v for k, v in self.errors.items()},
            "digest": digest(data),
        }
        atomic_save_json(meta_path, meta)
        self.errors.clear()  # re-read from meta by the caller
        return meta


class _Float32Writer:
    """Appends arrays as raw float32 to an ``atomic_open`` file (published on clean exit)."""

    def __init__(self, f):
        self.f = f

    def write(self, a: np.ndarray) -> None:
        self.f.write(np.ascontiguousarray(a, dtype=np.float32).tobytes())


@contextmanager
def _atomic_raw(path: Path) -> Iterator[_Float32Writer]:
    with atomic_open(path, "wb") as f:
        yield _Float32Writer(f)


def _read_meta(data: Path, meta_path: Path) -> dict | None:
    """The cache's meta when both files exist, agree in size and the data file passes
    its recorded ``digest``; else None (a corrupt entry is named on stderr and the
    caller computes it again)."""
    if not (data.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        shape = [int(n) for n in meta["shape"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        verify(data, meta.get("digest") or {"size": 4 * int(np.prod(shape))}, "embedding cache")
    except CorruptArtefactError as e:
        print(f"audioscale: {e.path}: {e.reason}; computing it again", file=sys.stderr)
        return None
    return meta


# --------------------------------------------------------------------------- encoding


def _batches(lengths: list[int], batch_size: int, pads: bool) -> list[list[int]]:
    """Piece indices per batch: longest first; equal lengths only unless ``pads``."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out: list[list[int]] = []
    for i in order:
        last = out[-1] if out else None
        fits = last is not None and len(last) < batch_size
        if fits and (pads or lengths[last[0]] == lengths[i]):
            last.append(i)
        else:
            out.append([i])
    return out


class _Engine:
    """Runs the encoder on blocks of clip inputs and yields (row index, frames (T, D))."""

    def __init__(self, enc: Encoder, layer: int, batch_size: int, mel: bool):
        self.enc, self.layer, self.bs, self.mel = enc, layer, batch_size, mel
        if mel:
            floor = 10.0 * float(np.log10(enc.frontend_config.amin))
            self.max_len, self.min_len, self.pad = enc.max_mel_frames, enc.min_mel_frames, floor
            self.run, self.valid = enc.frames_from_mel, enc.n_frames_from_mel
        else:
            self.max_len, self.min_len, self.pad = enc.max_samples(), enc.min_samples, 0.0
            self.run, self.valid = enc.frames, enc.n_frames
        self.audio_seconds = 0.0

    def seconds(self, x: torch.Tensor) -> float:
        if self.mel:
            return x.shape[-1] * self.enc.frontend_config.hop_length / self.enc.sample_rate
        return x.shape[-1] / self.enc.sample_rate

    def __call__(self, inputs: Iterable[tuple[int, torch.Tensor]]):
        block: list[tuple[int, torch.Tensor]] = []
        for item in inputs:
            block.append(item)
            if len(block) >= BLOCK_CLIPS:
                yield from self._block(block)
                block = []
        if block:
            yield from self._block(block)

    def _block(self, block: list[tuple[int, torch.Tensor]]):
        pieces, owner = [], []
        for c, (_, x) in enumerate(block):
            self.audio_seconds += self.seconds(x)
            for p in cut_pieces(x.float(), self.max_len, self.min_len, self.pad):
                pieces.append(p)
                owner.append(c)
        lengths = [p.shape[-1] for p in pieces]
        outs: list[np.ndarray | None] = [None] * len(pieces)
        for idx in _batches(lengths, self.bs, self.enc.pads_exactly):
            for j, f in zip(idx, self._run([pieces[j] for j in idx]), strict=True):
                outs[j] = f
        per_clip: list[list[np.ndarray]] = [[] for _ in block]
        for j, c in enumerate(owner):
            per_clip[c].append(outs[j])
        for c, (i, _) in enumerate(block):
            yield i, np.concatenate(per_clip[c], axis=0)

    def _run(self, items: list[torch.Tensor]) -> list[np.ndarray]:
        lens = [p.shape[-1] for p in items]
        t = max(lens)
        batch = torch.stack(
            [torch.nn.functional.pad(p, (0, t - p.shape[-1]), value=self.pad) for p in items]
        ).to(self.enc.device)
        lengths = None
        if min(lens) != t:
            lengths = torch.tensor(lens, device=self.enc.device)
        with torch.inference_mode():
            f = self.run(batch, [self.layer], lengths)[0]
        f = f.float().cpu().numpy()
        return [f[k, : self.valid(n)] for k, n in enumerate(lens)]


# --------------------------------------------------------------------------- public API


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


def _data_and_meta(base: Path) -> tuple[Path, Path]:
    # Appended, not Path.with_suffix: names such as "atto-h0.5-..." hold dots of their own.
    return base.parent / f"{base.name}.f32", base.parent / f"{base.name}.json"


def _paths(cache_dir, encoder, level, layer, key) -> tuple[Path, Path]:
    return _data_and_meta(Path(cache_dir) / f"{_slug(encoder.name)}-{level}-L{layer}-{key}")


def _from_meta(arr: np.ndarray, meta: dict, key: str, level: str) -> Extraction:
    ok = np.array(meta["ok"], dtype=bool)
    off = np.array(meta["offsets"], dtype=np.int64) if meta.get("offsets") is not None else None
    return Extraction(
        emb=arr,
        ok=ok,
        errors={int(k): v for k, v in meta["errors"].items()},
        offsets=off,
        level=level,
        key=key,
        from_cache=True,
        audio_seconds=float(meta.get("audio_seconds", 0.0)),
    )


def _stream(encoder, rows, layer, batch_size, use_mel, cache_dir, device, progress, sink):
    """Core loop shared by ``extract`` and ``iter_frames``: yields (row index, frames)."""
    enc = _prepare(encoder, device)
    inputs = _Inputs(enc, rows, use_mel, cache_dir, enc.device)
    engine = _Engine(enc, layer, batch_size, inputs.mel)
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
    data = meta_path = None
    if cache_dir is not None:
        data, meta_path = _paths(cache_dir, encoder, level, layer, key)
        meta = _read_meta(data, meta_path)
        if meta is not None:
            arr = np.fromfile(data, dtype=np.float32).reshape(meta["shape"])
            ex = _from_meta(arr, meta, key, level)
            ex.wall_s = time.perf_counter() - t0
            return ex
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
    ex = Extraction(
        emb=emb,
        ok=ok,
        errors=dict(sorted(sink["errors"].items())),
        offsets=np.array(offsets, dtype=np.int64) if level == "frame" else None,
        level=level,
        key=key,
        audio_seconds=sink["audio_seconds"],
    )
    if data is not None:
        _save(ex, data, meta_path, rows)
    ex.wall_s = time.perf_counter() - t0
    _report_errors(ex.errors, rows, encoder.name, progress)
    return ex


def _save(ex: Extraction, data: Path, meta_path: Path, rows: list[dict]) -> None:
    with _atomic_raw(data) as out:
        out.write(ex.emb)
    atomic_save_json(meta_path, _meta(ex, rows) | {"digest": digest(data)})


def _meta(ex: Extraction, rows: list[dict]) -> dict:
    return {
        "shape": list(ex.emb.shape),
        "ok": ex.ok.astype(int).tolist(),
        "errors": {str(k): v for k, v in ex.errors.items()},
        "paths": {str(k): str(rows[k]["path"]) for k in ex.errors},
        "offsets": ex.offsets.tolist() if ex.offsets is not None else None,
        "audio_seconds": ex.audio_seconds,
        "level": ex.level,
        "key": ex.key,
    }


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
    if cache_dir is not None:
        key = cache_key(encoder, rows, layer, "frame", True)
        data, meta_path = _paths(cache_dir, encoder, "frame", layer, key)
        meta = _read_meta(data, meta_path)
        if meta is not None:
            if errors is not None:
                errors.update({int(k): v for k, v in meta["errors"].items()})
            if meta["shape"][0] == 0:
                return
            arr = np.memmap(data, dtype=np.float32, mode="r", shape=tuple(meta["shape"]))
            off = meta["offsets"]
            for j in range(len(off) - 1):
                yield np.array(arr[off[j] : off[j + 1]])
            return
        yield from _iter_and_cache(
            encoder,
            rows,
            layer,
            cache_dir,
            batch_size,
            device,
            progress,
            errors,
            data,
            meta_path,
            key,
        )
        return
    sink: dict = {}
    for _, frames in _stream(encoder, rows, layer, batch_size, True, None, device, progress, sink):
        yield frames
    if errors is not None:
        errors.update(sink["errors"])


def _iter_and_cache(
    encoder, rows, layer, cache_dir, batch_size, device, progress, errors, data, meta_path, key
) -> Iterator[np.ndarray]:
    sink: dict = {}
    ok = np.zeros(len(rows), dtype=bool)
    offsets = [0]
    with _atomic_raw(data) as out:
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
    atomic_save_json(meta_path, _meta(ex, rows) | {"digest": digest(data)})
    if errors is not None:
        errors.update(ex.errors)
