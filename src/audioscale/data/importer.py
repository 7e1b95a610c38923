"""Folder-per-class audio → task folder (``manifest.csv`` + ``task.yaml``).

Layouts accepted under ``src``:

- ``src/<label>/**/<file>``: every file under a class folder (recursively) has that label;
  a deterministic stratified split assigns 70 % train, 10 % valid, 20 % test per label
  (:func:`stratified_split`).
- ``src/{train,valid,test}/<label>/**/<file>`` (``val``/``validation`` also name the
  validation split): the given splits are kept; ``train`` and ``test`` must exist.

Every file is checked with :func:`audioscale.audio.io.check_file`. Bad files (empty,
corrupt, not audio, NaN/Inf, too long, unreadable) are listed with their reason and
skipped; so are all-silent files unless ``keep_silent=True`` (a silent clip carries no
label information), and files lying outside any class folder.
Names starting with ``.`` are ignored. Good files are decoded, mixed to mono, resampled
to 16 kHz and written as ``out/audio/<label>/<name>.wav`` (PCM 16-bit, or 32-bit float
when the signal exceeds ±1 and would clip; :func:`audioscale.data.taskwrite.encode_wav`),
with ``duration`` and ``sha1`` columns and the original relative path in ``source``.
"""

from __future__ import annotations

import os
import shutil
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from audioscale.audio.io import (
    DEFAULT_LIMIT_SECONDS,
    FileReport,
    check_file,
    display_path,
    load_audio,
)
from audioscale.data.manifest import DOMAINS, METRICS
from audioscale.data.taskwrite import (
    COLUMNS,
    SAMPLE_RATE,
    safe_name,
    unique_dest,
    write_clip,
    write_task_files,
)
from audioscale.errors import BadAudioError, DataError
from audioscale.utils import track

SPLIT_ALIASES = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid"}
SPLIT_ALIASES["test"] = "test"
FRACTIONS = (0.7, 0.1, 0.2)


@dataclass
class ImportReport:
    """What ``import_folder`` did. ``skipped`` holds one FileReport per file left out."""

    out: str
    name: str
    layout: str  # "split-folders" or "stratified"
    n_files: int
    n_kept: int
    skipped: list[FileReport] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split → label → files
    hours: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def stratified_split(
    items_by_label: dict[str, list[str]], seed: int = 0, fractions=FRACTIONS
) -> dict[str, str]:
    """Deterministic stratified split: item → "train" | "valid" | "test".

    Per label, items are sorted, then shuffled with a generator seeded by ``(seed,
    crc32(label))`` (so one class's split does not depend on the others). Counts:
    ``n_test = round(f_test·n)``, ``n_valid = round(f_valid·n)`` (half rounds up), but at
    least one test item when n ≥ 2 and one valid item when n ≥ 3; train takes the rest."""
    out: dict[str, str] = {}
    _, f_valid, f_test = fractions
    for label, items in items_by_label.items():
        items = sorted(items)
        n = len(items)
        rng = np.random.default_rng([seed, zlib.crc32(label.encode("utf-8", "replace"))])
        order = rng.permutation(n)
        n_test = int(f_test * n + 0.5)
        n_valid = int(f_valid * n + 0.5)
        if n >= 2:
            n_test = max(n_test, 1)
        if n >= 3:
            n_valid = max(n_valid, 1)
        for rank, i in enumerate(order):
            split = "test" if rank < n_test else "valid" if rank < n_test + n_valid else "train"
            out[items[i]] = split
    return out


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _walk_files(folder: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        files += [Path(dirpath) / f for f in sorted(filenames) if not _is_hidden(f)]
    return files


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not _is_hidden(p.name))


def _collect(src: Path) -> tuple[str, list[tuple[Path, str, str | None]], list[Path]]:
    """(layout, [(file, label, split or None)], loose files outside class folders)."""
    subs = _subdirs(src)
    split_dirs = {SPLIT_ALIASES[p.name.lower()]: p for p in subs if p.name.lower() in SPLIT_ALIASES}
    loose = [p for p in sorted(src.iterdir()) if p.is_file() and not _is_hidden(p.name)]
    items: list[tuple[Path, str, str | None]] = []
    if split_dirs:
        for need in ("train", "test"):
            if need not in split_dirs:
                raise DataError(f"{display_path(src)}: has split folders but no '{need}' folder")
        for split, d in split_dirs.items():
            loose += [p for p in sorted(d.iterdir()) if p.is_file() and not _is_hidden(p.name)]
            for cls in _subdirs(d):
                items += [(f, display_path(cls.name), split) for f in _walk_files(cls)]
        return "split-folders", items, loose
    for cls in subs:
        items += [(f, display_path(cls.name), None) for f in _walk_files(cls)]
    return "stratified", items, loose


def _prepare_out(out: Path, src: Path, force: bool) -> None:
    s, o = src.resolve(), out.resolve()
    if o == s or s in o.parents:
        raise DataError(f"{display_path(out)}: output folder must not lie inside SRC")
    if (out / "manifest.csv").exists() or (out / "audio").exists():
        if not force:
            raise DataError(f"{display_path(out)}: already holds a task (use force / --force)")
        shutil.rmtree(out / "audio", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def _check_args(src: Path, domain: str, metric: str) -> None:
    if not src.is_dir():
        raise DataError(f"{display_path(src)}: source folder not found")
    if domain not in DOMAINS:
        raise DataError(f"domain {domain!r} is not one of {DOMAINS}")
    if metric not in METRICS:
        raise DataError(f"metric {metric!r} is not one of {METRICS}")


def _checked(items, src: Path, report: ImportReport, keep_silent, limit_seconds, progress):
    """The items whose file passes ``check_file`` (silent ones only with ``keep_silent``),
    as (file, label, split, FileReport); the others go to ``report.skipped``."""
    good = []
    for f, label, split in track(items, "checking", progress):
        rep = check_file(f, limit_seconds=limit_seconds)
        rep.path = display_path(f.relative_to(src))
        if not rep.ok:
            report.skipped.append(rep)
        elif rep.silent and not keep_silent:
            rep.ok, rep.kind = False, "silent"
            report.skipped.append(rep)
        else:
            good.append((f, label, split, rep))
    return good


def _assign_splits(good: list, src: Path, seed: int) -> list:
    """The stratified layout's items with their split from :func:`stratified_split`."""
    by_label: dict[str, list[str]] = {}
    for f, label, _, _ in good:
        by_label.setdefault(label, []).append(str(f.relative_to(src)))
    assign = stratified_split(by_label, seed)
    return [(f, lab, assign[str(f.relative_to(src))], r) for f, lab, _, r in good]


def _convert(good, src: Path, out: Path, layout: str, report, limit_seconds, progress):
    """Decode each good file and write it under ``out/audio/<label>/``; the manifest rows."""
    rows, used = [], set()
    for f, label, split, rep in track(good, "converting", progress):
        try:
            x = load_audio(f, sr=SAMPLE_RATE, limit_seconds=limit_seconds)
        except BadAudioError as e:  # decoded fine in check_file; guard against races
            report.skipped.append(FileReport(rep.path, False, e.kind, e.reason))
            continue
        rel = f.relative_to(src)
        parts = list(rel.parts[2:] if layout == "split-folders" else rel.parts[1:])
        stem = safe_name("__".join(parts[:-1] + [Path(parts[-1]).stem]))
        dest = out / unique_dest(used, safe_name(label), stem)
        duration, sha1 = write_clip(dest, x)
        rows.append(
            dict(path=str(dest), label=label, split=split, duration=duration, sha1=sha1,
                 source=rep.path)
        )  # fmt: skip
        report.counts.setdefault(split, {}).setdefault(label, 0)
        report.counts[split][label] += 1
        report.hours += len(x) / SAMPLE_RATE / 3600
    return rows


def _finish(report: ImportReport, rows: list[dict]) -> None:
    """Counts sorted, and the warnings: labels without training files, no test files."""
    report.n_kept = len(rows)
    report.counts = {s: dict(sorted(c.items())) for s, c in sorted(report.counts.items())}
    labels = sorted({r["label"] for r in rows})
    train_labels = set(report.counts.get("train", {}))
    for lab in labels:
        if lab not in train_labels:
            report.warnings.append(f"label {lab!r} has no training files")
    if "test" not in report.counts:
        report.warnings.append("no test files (too few files per class)")


def import_folder(
    src: str | Path,
    out: str | Path,
    name: str | None = None,
    domain: str = "environment",
    seed: int = 0,
    metric: str = "accuracy",
    keep_silent: bool = False,
    limit_seconds: float = DEFAULT_LIMIT_SECONDS,
    force: bool = False,
    progress: bool = False,
) -> ImportReport:
    """Import a folder-per-class tree into a task folder at ``out`` (see module doc)."""
    src, out = Path(src), Path(out)
    _check_args(src, domain, metric)
    name = name or safe_name(src.resolve().name)
    layout, items, loose = _collect(src)
    if not items:
        raise DataError(f"{display_path(src)}: no files inside class folders")
    _prepare_out(out, src, force)
    report = ImportReport(str(out), name, layout, n_files=len(items) + len(loose), n_kept=0)
    for p in loose:
        report.skipped.append(
            FileReport(display_path(p.relative_to(src)), False, "no-label", "not in a class folder")
        )
    good = _checked(items, src, report, keep_silent, limit_seconds, progress)
    if layout == "stratified":
        good = _assign_splits(good, src, seed)
    rows = _convert(good, src, out, layout, report, limit_seconds, progress)
    if not rows:
        raise DataError(
            f"{display_path(src)}: no usable audio ({len(report.skipped)} files skipped)"
        )
    _finish(report, rows)
    desc = f"imported from {display_path(src.resolve())} ({layout} split, seed {seed})"
    meta = dict(name=name, domain=domain, metric=metric, multilabel=False, description=desc)
    write_task_files(out, rows, COLUMNS, meta)
    return report
