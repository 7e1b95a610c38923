"""``data check``: scan a folder or a manifest and report every file's problems.

- A folder holding ``manifest.csv`` (a task or pool folder), or a ``.csv`` file, is checked
  as a manifest: each listed path is checked; a path listed twice is a warning; when a
  ``task.yaml`` sits beside it, the task is validated too (problems go to ``errors``).
- Any other folder is walked recursively (names starting with ``.`` ignored). Files with
  an audio extension are fully decoded by :func:`audioscale.audio.io.check_file`; zip
  archives (``.zip``, ``.pk3``) are opened and their audio members checked as
  ``archive::member``; every other file is reported ``not-audio`` from its extension.

Status per file: ``bad`` (unusable; ``kind`` says why), ``warn`` (usable but suspicious:
all-silent, listed twice), ``ok``. Multichannel files are ok (mixed down on load); the
rate and channel count are in their own columns.
"""

from __future__ import annotations

import os
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from audioscale.audio.io import (
    ARCHIVE_EXTENSIONS,
    AUDIO_EXTENSIONS,
    DEFAULT_LIMIT_SECONDS,
    FileReport,
    check_file,
    display_path,
)
from audioscale.data.manifest import load_task, read_manifest
from audioscale.errors import DataError
from audioscale.utils import track

COLUMNS = ("path", "status", "kind", "reason", "duration", "sample_rate", "channels")


@dataclass
class CheckReport:
    root: str
    mode: str  # "folder" or "manifest"
    rows: list[dict] = field(default_factory=list)  # one per file, keys COLUMNS
    errors: list[str] = field(default_factory=list)  # manifest/task-level problems
    summary: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def bad(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "bad"]


def _row(shown: str, rep: FileReport) -> dict:
    status = "bad" if not rep.ok else "warn" if rep.silent else "ok"
    return dict(
        path=shown,
        status=status,
        kind=rep.kind or ("silent" if rep.silent else ""),
        reason=rep.reason,
        duration=rep.duration,
        sample_rate=rep.sample_rate,
        channels=rep.channels,
    )


def _bad(shown: str, kind: str, reason: str) -> dict:
    return dict(
        path=shown, status="bad", kind=kind, reason=reason, duration=None, sample_rate=None,
        channels=None,
    )  # fmt: skip


def _zip_rows(path: Path, shown: str, limit: float) -> list[dict]:
    try:
        with zipfile.ZipFile(path) as zf:
            members = sorted(n for n in zf.namelist() if not n.endswith("/"))
    except (zipfile.BadZipFile, OSError) as e:
        return [_bad(shown, "corrupt", f"archive cannot be opened ({e})")]
    rows = []
    for m in members:
        if os.path.splitext(m)[1].lower() in AUDIO_EXTENSIONS:
            rep = check_file(f"{path}::{m}", limit_seconds=limit)
            rows.append(_row(f"{shown}::{m}", rep))
    return rows


def _scan_folder(root: Path, limit: float, progress: bool) -> list[dict]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
    rows = []
    for f in track(files, "checking", progress):
        shown = display_path(f.relative_to(root))
        ext = f.suffix.lower()
        if ext in AUDIO_EXTENSIONS:
            rows.append(_row(shown, check_file(f, limit_seconds=limit)))
        elif ext in ARCHIVE_EXTENSIONS:
            rows += _zip_rows(f, shown, limit)
        else:
            reason = f"extension {ext!r} is not an audio format" if ext else "no file extension"
            rows.append(_bad(shown, "not-audio", reason))
    return rows


def _scan_manifest(mpath: Path, limit: float, progress: bool, errors: list[str]) -> list[dict]:
    entries = read_manifest(mpath)
    base = mpath.resolve().parent
    task_yaml = mpath.parent / "task.yaml"
    if task_yaml.is_file() and mpath.name == "manifest.csv":
        try:
            load_task(mpath.parent)
        except DataError as e:
            errors.append(str(e))
    rows, seen = [], set()
    for r in track(entries, "checking", progress):
        p = r["path"]
        try:
            shown = display_path(os.path.relpath(p, base))
        except ValueError:
            shown = display_path(p)
        row = _row(shown, check_file(p, limit_seconds=limit))
        if p in seen:
            if row["status"] == "ok":
                row["status"], row["kind"] = "warn", "duplicate"
            row["reason"] = "; ".join(filter(None, [row["reason"], "listed twice"]))
        seen.add(p)
        rows.append(row)
    return rows


def summarise(rows: list[dict]) -> dict:
    status = Counter(r["status"] for r in rows)
    usable = [r for r in rows if r["status"] != "bad"]
    return dict(
        files=len(rows),
        ok=status["ok"],
        warn=status["warn"],
        bad=status["bad"],
        kinds=dict(sorted(Counter(r["kind"] for r in rows if r["kind"]).items())),
        hours_usable=round(sum(r["duration"] or 0.0 for r in usable) / 3600, 6),
        sample_rates={
            str(k): v for k, v in sorted(Counter(r["sample_rate"] for r in usable).items())
        },
        channels={str(k): v for k, v in sorted(Counter(r["channels"] for r in usable).items())},
    )


def check_path(
    path: str | Path, limit_seconds: float = DEFAULT_LIMIT_SECONDS, progress: bool = False
) -> CheckReport:
    """Check a folder, a task/pool folder or a manifest CSV (see module doc).

    Raises DataError only when ``path`` cannot be scanned at all (missing, unreadable
    manifest); bad files are rows, never exceptions."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{display_path(p)}: no such file or folder")
    if p.is_dir() and (p / "manifest.csv").is_file():
        p = p / "manifest.csv"
    report = CheckReport(root=display_path(p), mode="folder" if p.is_dir() else "manifest")
    if p.is_dir():
        report.rows = _scan_folder(p, limit_seconds, progress)
    elif p.suffix.lower() == ".csv":
        report.rows = _scan_manifest(p, limit_seconds, progress, report.errors)
    else:  # a single file
        report.mode = "file"
        report.rows = [_row(display_path(p.name), check_file(p, limit_seconds=limit_seconds))]
    report.summary = summarise(report.rows)
    return report
