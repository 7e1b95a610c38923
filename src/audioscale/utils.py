"""Small shared helpers: atomic writes, JSON-safe numbers, an ordered thread map, hashing,
device choice, progress bars."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from audioscale import faults

# --------------------------------------------------------------------- atomic writes
# Every file the package writes goes through these: a temporary file in the same
# folder (``.<name>.<random>.tmp``), then ``os.replace`` onto the name, so a reader (or
# a run killed mid-write) sees the old file or the new one, never half of one. Each
# publish is one write of ``audioscale.faults`` (the fault-injection seam).


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path`` (``.<name>.<random>.tmp``: no glob
    for ``*.json`` or ``*.safetensors`` sees it); when the block ends without an
    exception it replaces ``path``, otherwise it is deleted. For writers that want a
    file name (safetensors); the writer must write exactly that name (``np.save``
    appends ``.npy``: give it the file object of ``atomic_open`` instead)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        faults.point(path)
        os.replace(tmp, path)
    except OSError as e:
        if e.filename is None and e.errno:  # a failed write names no file: name it
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """``open(path, mode)`` that publishes the file atomically (flushed and fsynced)
    when the block ends without an exception; ``mode`` is "wb" or "w"."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes a new file: mode 'wb' or 'w', not {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


# --------------------------------------------------------------------- JSON-safe numbers


def finite_or_none(x: Any) -> float | None:
    """``float(x)``, or None for None, NaN, ±Inf and anything ``float()`` rejects: the
    form of a number in every JSON file and results-table cell (NaN never appears)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def nan_to_none(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None, recursively through dicts,
    lists and tuples (tuples become lists, as JSON has them), for standard JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [nan_to_none(v) for v in obj]
    return obj


def float_or_nan(x: Any) -> float:
    """The reverse of ``finite_or_none``, for numeric code: ``float(x)``, or NaN for None
    and anything ``float()`` rejects (so missing values drop out of masked arrays)."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def ordered_map(
    fn: Callable[[Any], Any], items: Iterable, workers: int, ahead: int | None = None
) -> Iterator[Any]:
    """``map(fn, items)`` in order, computed on ``workers`` threads with at most ``ahead``
    items (default ``2 * workers``) in flight, so decoding runs ahead of the consumer
    without holding the whole list; ``workers <= 1`` runs inline. A result is released
    as soon as it is yielded. ``fn`` should return its failures, not raise them."""
    if workers <= 1:
        yield from map(fn, items)
        return
    ahead = max(1, ahead or 2 * workers)
    with ThreadPoolExecutor(workers) as ex:
        pending: deque = deque()
        for x in items:
            pending.append(ex.submit(fn, x))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def sha1_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------- artefact integrity
# Checkpoints, the feature cache and the embedding caches record ``digest`` of each data
# file when they write it and ``verify`` it when they read it: a truncated or bit-flipped
# file is one line naming it (``CorruptArtefactError``), never a garbled result.


def digest(path: str | Path, chunk: int = 1 << 22) -> dict[str, Any]:
    """``{"size", "sha256"}`` of a file (about 1.5 GB/s: a few ms for a checkpoint)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
            size += len(block)
    return {"size": size, "sha256": h.hexdigest()}


_SHA256_MEMO: dict[tuple, str] = {}


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes (``digest``'s), memoised in-process per (path, size, mtime,
    inode, ctime): encoder identities hash their weights files at every use."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    if key not in _SHA256_MEMO:
        _SHA256_MEMO[key] = digest(path)["sha256"]
    return _SHA256_MEMO[key]


def verify(path: str | Path, expected: dict | None, what: str, advice: str = "") -> None:
    """Raise ``CorruptArtefactError`` when ``path`` is missing or its size or sha256
    differ from ``expected`` (a ``digest``); nothing to check when ``expected`` is None
    (artefacts written before digests were recorded). The size is checked at every call;
    the sha256 once per process for a file whose identity, size and times are unchanged."""
    from audioscale.errors import CorruptArtefactError

    if not expected:
        return
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CorruptArtefactError(path, f"{what} is missing", advice) from None
    size = st.st_size
    if size != expected.get("size"):
        reason = f"{what} is {size} bytes, {expected.get('size')} were written (truncated?)"
        raise CorruptArtefactError(path, reason, advice)
    sha = expected.get("sha256")
    if not sha:
        return
    # the same file, unchanged since this process hashed it, is not hashed again: a
    # sweep worker opens the training feature cache (GBs) three times per run
    key = (str(path.resolve()), st.st_dev, st.st_ino, size, st.st_mtime_ns, st.st_ctime_ns, sha)
    if key in _VERIFIED:
        return
    if digest(path)["sha256"] != sha:
        raise CorruptArtefactError(path, f"{what} fails its sha256 check (corrupt)", advice)
    if time.time_ns() - st.st_mtime_ns > 2_000_000_000:
        _VERIFIED.add(key)  # a file changed in the last 2 s (coarse clocks) is hashed again


_VERIFIED: set[tuple] = set()  # (file, its stat, sha256) this process found intact


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def progress_bar(label: str, enabled: bool = True, transient: bool = True, eta: bool = False):
    """The one progress bar of the toolkit: rich, on stderr, disabled by ``enabled=False``
    (then ``add_task``/``advance`` are no-ops, so callers need no second code path)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn(label),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn() if eta else TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=transient,
    )


def track(items: list, label: str, enabled: bool = True):
    """Yield ``items`` while advancing a progress bar (none for fewer than two items)."""
    with progress_bar(label, enabled and len(items) > 1) as bar:
        task = bar.add_task("", total=len(items))
        for item in items:
            yield item
            bar.advance(task)
