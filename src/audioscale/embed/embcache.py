"""The embedding cache: one extraction's array on disk, written atomically, read verified.

``<cache_dir>/<name>-<level>-L<layer>-<key>.f32`` (raw float32) + ``.json`` (shape, mask,
errors, offsets, the data file's ``digest``). The data file is written first and the json
last, both atomically (``audioscale.utils.atomic_open``), so a killed run leaves no
readable half-cache. The json records the data file's size and sha256
(``utils.digest``), checked at every read: a truncated or bit-flipped entry is named on
stderr and computed again.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from audioscale.errors import CorruptArtefactError
from audioscale.utils import atomic_open, atomic_save_json, digest, verify


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:40] or "encoder"


def cache_paths(cache_dir, encoder, level: str, layer: int, key: str) -> tuple[Path, Path]:
    """The data and meta files of one entry."""
    base = f"{_slug(encoder.name)}-{level}-L{layer}-{key}"
    # Appended, not Path.with_suffix: names such as "atto-h0.5-..." hold dots of their own.
    return Path(cache_dir) / f"{base}.f32", Path(cache_dir) / f"{base}.json"


class Float32Writer:
    """Appends arrays as raw float32 to an ``atomic_open`` file (published on clean exit)."""

    def __init__(self, f):
        self.f = f

    def write(self, a: np.ndarray) -> None:
        self.f.write(np.ascontiguousarray(a, dtype=np.float32).tobytes())


@contextmanager
def atomic_raw(path: Path) -> Iterator[Float32Writer]:
    with atomic_open(path, "wb") as f:
        yield Float32Writer(f)


def read_meta(data: Path, meta_path: Path) -> dict | None:
    """The entry's meta when both files exist, agree in size and the data file passes
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


def publish_meta(meta_path: Path, data: Path, meta: dict) -> None:
    """Write the meta (with the data file's digest) last: the entry becomes readable."""
    atomic_save_json(meta_path, meta | {"digest": digest(data)})


def save(data: Path, meta_path: Path, emb: np.ndarray, meta: dict) -> None:
    """Write one whole entry: the array, then its meta."""
    with atomic_raw(data) as out:
        out.write(emb)
    publish_meta(meta_path, data, meta)


def read_array(data: Path, meta: dict) -> np.ndarray:
    """The whole array of an entry whose meta passed ``read_meta``."""
    return np.fromfile(data, dtype=np.float32).reshape(meta["shape"])


def iter_rows(data: Path, meta: dict) -> Iterator[np.ndarray]:
    """A frame-level entry's arrays, one per clip, through a memory map."""
    if meta["shape"][0] == 0:
        return
    arr = np.memmap(data, dtype=np.float32, mode="r", shape=tuple(meta["shape"]))
    off = meta["offsets"]
    for j in range(len(off) - 1):
        yield np.array(arr[off[j] : off[j + 1]])
