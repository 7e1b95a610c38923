"""Task folders and their WAV clips: the one writer of the demo and every importer.

The parts every writer of a task folder shares: :func:`encode_wav` (16 kHz mono WAV
bytes), :func:`write_clip` (one clip under ``audio/``, with its duration and sha1),
:func:`unique_dest` (``audio/<folder>/<stem>[_k].wav``), :func:`safe_name` and
:func:`write_task_files` (``manifest.csv`` + ``task.yaml``; see
:mod:`audioscale.data.manifest`). The demo corpus, ``import-folder`` and ``import-pool``
use them directly.

The benchmark importers (HEAR 2021, X-ARES, metadata CSVs) turn their source's layout
into calls to :class:`TaskWriter`: ``add`` one clip (a file or a zip member, its labels
and split), ``problem`` for anything it cannot use (a missing file, an unknown split, a
label outside the task's set, ...), then ``finish`` writes the task folder
(``manifest.csv`` with ``path,label,split,duration,sha1,source`` and ``task.yaml``).
Clips are decoded, mixed to mono, resampled to 16 kHz and written as
``audio/<split>/<name>.wav``.

Bad input is never fatal clip by clip: each problem is one :class:`FileReport` (file,
kind, reason) in ``TaskImport.skipped``; ``finish`` raises DataError only when no clip
could be imported, so the CLI exits non-zero exactly then.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

from audioscale.audio.io import (
    DEFAULT_LIMIT_SECONDS,
    SILENCE_PEAK,
    FileReport,
    display_path,
    load_audio,
)
from audioscale.data.manifest import DOMAINS, LABEL_SEP, METRICS, write_manifest
from audioscale.errors import BadAudioError, DataError
from audioscale.utils import atomic_write_bytes, atomic_write_text

SAMPLE_RATE = 16000
COLUMNS = ["path", "label", "split", "duration", "sha1", "source"]
PCM16_MAX = 32767 / 32768  # the largest 16-bit sample


def encode_wav(x: np.ndarray, sr: int = SAMPLE_RATE, overflow: str = "float") -> bytes:
    """Mono WAV bytes of float samples ``x``: 16-bit PCM; a signal beyond ±1 is kept as
    32-bit float (``overflow="float"``: the importers never clip a user's audio) or
    clipped to [-1, 1) (``"clip"``: the demo's renders, always 16-bit)."""
    buf = io.BytesIO()
    if overflow == "clip":
        sf.write(buf, np.clip(x, -1.0, PCM16_MAX), sr, format="WAV", subtype="PCM_16")
    else:
        subtype = "FLOAT" if x.size and float(np.abs(x).max()) > 1.0 else "PCM_16"
        sf.write(buf, x, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def safe_name(name: str) -> str:
    """A portable file-name part: NFC, undecodable bytes → U+FFFD → "_", odd chars → "_"."""
    s = unicodedata.normalize("NFC", display_path(name))
    s = re.sub(r"[^\w.\-]+", "_", s).strip("._")
    return s or "x"


def unique_dest(used: set[str], folder: str, stem: str) -> str:
    """``audio/<folder>/<stem>.wav``, or ``<stem>_2.wav``, ``_3`` … when taken; marks it used."""
    dest, k = f"audio/{folder}/{stem}.wav", 1
    while dest in used:
        k += 1
        dest = f"audio/{folder}/{stem}_{k}.wav"
    used.add(dest)
    return dest


def write_clip(path: Path, x: np.ndarray) -> tuple[float, str]:
    """Write ``x`` as a 16 kHz WAV at ``path`` (atomically); returns its duration in
    seconds (6 decimals) and the sha1 of its bytes."""
    data = encode_wav(x)
    atomic_write_bytes(path, data)
    return round(len(x) / SAMPLE_RATE, 6), hashlib.sha1(data).hexdigest()


def write_task_files(out: Path, rows: list[dict], columns: list[str], meta: dict) -> None:
    """A task folder's ``manifest.csv`` (``rows`` in ``columns``) and ``task.yaml``
    (``meta``: name, domain, metric, multilabel, description, extra keys)."""
    write_manifest(out / "manifest.csv", rows, columns)
    text = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    atomic_write_text(out / "task.yaml", text)


@dataclass
class TaskImport:
    """What an importer did: counts per split and label, and one line per problem."""

    out: str
    name: str
    source: str  # "hear" | "xares" | "csv"
    n_kept: int = 0
    skipped: list[FileReport] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split → label → clips
    hours: float = 0.0
    warnings: list[str] = field(default_factory=list)
    weight: float | None = None  # the task's suite weight when its source gives one

    def to_dict(self) -> dict:
        return asdict(self)


class NothingImported(DataError):
    """No clip could be imported; ``skipped`` holds every problem (the CLI lists them)."""

    def __init__(self, message: str, skipped: list[FileReport]):
        super().__init__(message)
        self.skipped = skipped


def short_stem(stem: str, limit: int = 120) -> str:
    """``stem`` cut to ``limit`` UTF-8 bytes, so that a WAV named after a deep path stays
    under the 255-byte file-name limit (with its suffixes and the atomic write's ``.tmp``)."""
    return stem.encode("utf-8")[:limit].decode("utf-8", "ignore")


def fold_id(k: int) -> str:
    """Our fold id for the 1-based fold number ``k`` (``fold1`` …)."""
    return f"fold{k}"


def prepare_out(out: Path, force: bool) -> None:
    """Create ``out``; an existing task there is replaced only with ``force``."""
    if (out / "manifest.csv").exists() or (out / "audio").exists():
        if not force:
            raise DataError(f"{display_path(out)}: already holds a task (use --force)")
        shutil.rmtree(out / "audio", ignore_errors=True)
        (out / "manifest.csv").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


class TaskWriter:
    """Collects clips into a task folder at ``out`` (see the module doc)."""

    def __init__(
        self,
        out: str | Path,
        name: str,
        source: str,
        labels: set[str] | None = None,
        force: bool = False,
        limit_seconds: float = DEFAULT_LIMIT_SECONDS,
    ):
        self.out = Path(out)
        prepare_out(self.out, force)
        self.labels = labels  # the task's label set; None = any label
        self.limit_seconds = limit_seconds
        self.report = TaskImport(str(self.out), name, source)
        self.rows: list[dict] = []
        self.used: set[str] = set()

    def problem(self, shown: str, kind: str, reason: str) -> None:
        self.report.skipped.append(FileReport(display_path(shown), False, kind, reason))

    def _dest(self, split: str, shown: str) -> Path:
        stem = safe_name(Path(shown.split("::")[-1]).with_suffix("").as_posix().replace("/", "__"))
        return self.out / unique_dest(self.used, split, short_stem(stem))

    def _decode(self, path: str | Path, shown: str) -> np.ndarray | None:
        try:
            x = load_audio(path, sr=SAMPLE_RATE, limit_seconds=self.limit_seconds)
        except BadAudioError as e:
            self.problem(shown, e.kind, e.reason)
            return None
        if not x.size or float(np.abs(x).max()) < SILENCE_PEAK:
            self.problem(shown, "silent", "all-silent clip (no label information)")
            return None
        return x

    def add(self, path: str | Path, shown: str, labels: list[str], split: str) -> bool:
        """Decode ``path`` and add it with ``labels`` to ``split``; False (and one problem
        line) when the clip is unusable or a label is outside the task's label set."""
        labels = [lab.strip() for lab in labels if lab.strip()]
        if not labels:
            self.problem(shown, "no-label", "no label")
            return False
        unknown = [lab for lab in labels if self.labels is not None and lab not in self.labels]
        if unknown:
            self.problem(shown, "unknown-label", f"label {unknown[0]!r} is not in the label set")
            return False
        x = self._decode(path, shown)
        if x is None:
            return False
        dest = self._dest(split, shown)
        duration, sha1 = write_clip(dest, x)
        label = LABEL_SEP.join(labels)
        self.rows.append(
            dict(
                path=str(dest),
                label=label,
                split=split,
                duration=duration,
                sha1=sha1,
                source=display_path(shown),
            )
        )
        counts = self.report.counts.setdefault(split, {})
        for lab in labels:
            counts[lab] = counts.get(lab, 0) + 1
        self.report.hours += duration / 3600
        return True

    def finish(self, meta: dict) -> TaskImport:
        """Write ``manifest.csv`` and ``task.yaml`` (``meta``: name, domain, metric,
        multilabel, description, extra keys); DataError when no clip was kept."""
        rep = self.report
        if not self.rows:
            msg = f"{rep.name}: nothing could be imported ({len(rep.skipped)} problems)"
            raise NothingImported(msg, rep.skipped)
        if meta["domain"] not in DOMAINS or meta["metric"] not in METRICS:
            raise DataError(f"{rep.name}: domain/metric {meta['domain']}/{meta['metric']} unknown")
        rep.n_kept = len(self.rows)
        rep.counts = {s: dict(sorted(c.items())) for s, c in sorted(rep.counts.items())}
        train = {lab for s, c in rep.counts.items() if s != "test" for lab in c}
        rep.warnings += [
            f"label {lab!r} has no training clips"
            for lab in sorted({lab for c in rep.counts.values() for lab in c} - train)
        ]
        write_task_files(self.out, self.rows, COLUMNS, meta)
        return rep
