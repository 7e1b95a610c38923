"""Any audio folder(s) → an unlabeled pretraining pool (``audioscale data import-pool``).

Walks every ``SRC`` recursively (names starting with ``.`` ignored): files with an audio
extension, and the audio members of zip archives (``.zip``, ``.pk3``, as
``archive::member``). Each is fully decoded once by
:func:`audioscale.audio.io.check_file`; bad ones (empty, corrupt, NaN, too long,
unreadable, all-silent) are listed with their reason, the rest kept. Other files are
counted as ignored. A task folder, or a HEAR / X-ARES import, is a folder of audio like
any other: its labels are unused.

Split: ``heldout`` when the first 48 bits of sha1(``<path relative to SRC>``) fall below
``heldout_fraction``, else ``train``, so adding files never moves old ones.

Scale: the scan runs in ``workers`` processes with a progress bar; every result is
appended to ``OUT/.pool-scan.jsonl`` keyed by (absolute path, size, mtime, length limit), so an
interrupted import resumes and a rerun on a grown folder scans only new or changed files.

Output: ``OUT/manifest.csv`` (``path,duration,source,split``; ``source`` = SRC's folder
name; see :func:`audioscale.data.manifest.load_pool`) pointing at the files where they
are, and ``OUT/problems.csv`` (``path,kind,reason``). ``copy=True`` instead converts each
kept file to 16 kHz mono WAV under ``OUT/audio/<source>/`` (resumable too: done files are
skipped).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

from audioscale.audio.io import (
    ARCHIVE_EXTENSIONS,
    AUDIO_EXTENSIONS,
    DEFAULT_LIMIT_SECONDS,
    FileReport,
    check_file,
    display_path,
    load_audio,
)
from audioscale.data.manifest import write_manifest
from audioscale.data.taskwrite import (
    SAMPLE_RATE,
    NothingImported,
    encode_wav,
    safe_name,
    short_stem,
)
from audioscale.errors import BadAudioError, DataError
from audioscale.utils import atomic_write_bytes, progress_bar

CACHE_NAME = ".pool-scan.jsonl"
CHUNK = 32  # files per worker task


@dataclass
class PoolReport:
    """What ``import_pool`` did; ``skipped`` holds one FileReport per bad file."""

    out: str
    n_files: int = 0  # audio files and archive members found
    n_kept: int = 0
    n_heldout: int = 0
    n_scanned: int = 0  # files decoded this run (the rest came from the scan cache)
    n_ignored: int = 0  # files that are neither audio nor an archive
    n_duplicates: int = 0  # files already found under an earlier SRC (nested SRCs, links)
    hours: float = 0.0
    wall_s: float = 0.0
    skipped: list[FileReport] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def is_heldout(rel: str, fraction: float) -> bool:
    """Deterministic split by a hash of the relative path (see the module doc)."""
    h = hashlib.sha1(rel.encode("utf-8", "surrogateescape")).hexdigest()
    return int(h[:12], 16) / float(1 << 48) < fraction


def walk(
    src: Path, skip: Path | None = None, bad: list[FileReport] | None = None
) -> tuple[list[Path], int]:
    """(audio files and archives under ``src``, count of other files); the folder ``skip``
    (the pool's own ``audio/`` when OUT lies inside SRC) is left out; a folder that cannot
    be listed is appended to ``bad``."""
    found, ignored = [], 0
    skip_real = os.path.realpath(skip) if skip else None

    def unlistable(e: OSError) -> None:
        if bad is not None:
            reason = f"folder cannot be listed ({e.strerror})"
            bad.append(FileReport(display_path(e.filename), False, "unreadable", reason))

    for dirpath, dirnames, filenames in os.walk(src, onerror=unlistable):
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".") and os.path.realpath(os.path.join(dirpath, d)) != skip_real
        )  # fmt: skip
        for f in sorted(filenames):
            ext = os.path.splitext(f)[1].lower()
            if f.startswith("."):
                continue
            if ext in AUDIO_EXTENSIONS or ext in ARCHIVE_EXTENSIONS:
                found.append(Path(dirpath) / f)
            else:
                ignored += 1
    return found, ignored


def _entry(member: str, rep: FileReport) -> dict:
    ok = rep.ok and not rep.silent
    kind = rep.kind or ("" if ok else "silent")
    reason = rep.reason if rep.kind or ok else "all-silent file"
    return dict(member=member, ok=ok, kind=kind, reason=reason, duration=rep.duration)


def scan_file(args: tuple[str, float]) -> dict:
    """Check one file, or every audio member of one archive (runs in a worker)."""
    path, limit = args
    try:
        st = os.stat(path)
    except OSError as e:  # gone or unreadable since the walk: never fresh in the cache
        bad = dict(member="", ok=False, kind="unreadable", reason=str(e.strerror), duration=None)
        return dict(path=path, size=-1, mtime=-1, limit=limit, entries=[bad])
    out = dict(path=path, size=st.st_size, mtime=st.st_mtime_ns, limit=limit, entries=[])
    if os.path.splitext(path)[1].lower() not in ARCHIVE_EXTENSIONS:
        out["entries"].append(_entry("", check_file(path, limit_seconds=limit)))
        return out
    try:
        with zipfile.ZipFile(path) as zf:
            members = sorted(n for n in zf.namelist() if not n.endswith("/"))
    except (zipfile.BadZipFile, OSError) as e:
        out["entries"].append(
            dict(
                member="",
                ok=False,
                kind="corrupt",
                reason=f"archive cannot be opened ({e})",
                duration=None,
            )
        )
        return out
    for m in members:
        if os.path.splitext(m)[1].lower() in AUDIO_EXTENSIONS:
            rep = check_file(f"{path}::{m}", limit_seconds=limit)
            out["entries"].append(_entry(m, rep))
    return out


def load_cache(path: Path) -> dict[str, dict]:
    """Scan results by absolute path (last line wins; a torn last line is ignored)."""
    cache: dict[str, dict] = {}
    if not path.is_file():
        return cache
    for line in path.read_text(encoding="utf-8", errors="surrogateescape").splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        cache[r["path"]] = r
    return cache


def _fresh(r: dict | None, path: str, limit: float) -> bool:
    """Whether the cached result ``r`` still holds: same size, mtime and length limit
    (a file too long under one ``limit_seconds`` may be fine under another)."""
    if r is None or r.get("limit") != limit:
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False
    return r["size"] == st.st_size and r["mtime"] == st.st_mtime_ns


def _run_parallel(fn, jobs: list, workers: int, label: str, progress: bool):
    """Yield ``fn(job)`` for every job (in ``workers`` processes when > 1) with a bar."""
    with progress_bar(label, progress and len(jobs) > 1, eta=True) as bar:
        task = bar.add_task("", total=len(jobs))
        if workers <= 1 or len(jobs) < 2 * CHUNK:
            results = map(fn, jobs)
            pool = None
        else:
            # spawn: a forked child of a process that has started torch's thread pools can hang
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
            results = pool.map(fn, jobs, chunksize=CHUNK)
        try:
            for r in results:
                yield r
                bar.advance(task)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)


def scan(
    files: list[Path], cache_path: Path, workers: int, limit: float, progress: bool
) -> tuple[dict[str, dict], int]:
    """Scan results for ``files``, decoding only those not fresh in the cache."""
    cache = load_cache(cache_path)
    todo = [str(f) for f in files if not _fresh(cache.get(str(f)), str(f), limit)]
    with open(cache_path, "a", encoding="utf-8", errors="surrogateescape") as fh:
        jobs = [(p, limit) for p in todo]
        for i, r in enumerate(_run_parallel(scan_file, jobs, workers, "scanning", progress)):
            cache[r["path"]] = r
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
            if i % 256 == 255:
                fh.flush()
    return cache, len(todo)


def convert_file(args: tuple[str, str]) -> str:
    """Decode one kept file to 16 kHz mono WAV at ``dest`` unless it is there already."""
    path, dest = args
    if not os.path.exists(dest):
        try:
            atomic_write_bytes(dest, encode_wav(load_audio(path, sr=SAMPLE_RATE)))
        except BadAudioError as e:  # changed since the scan
            return f"{e.kind}: {e.reason}"
    return ""


def _rows(
    srcs: list[Path], found: dict[Path, list[Path]], cache: dict, fraction: float, rep: PoolReport
) -> list[dict]:
    """Pool rows (kept entries) and ``rep.skipped`` (bad ones), in walk order."""
    rows = []
    for src in srcs:
        source = safe_name(src.resolve().name)
        for f in found[src]:
            rel = f.relative_to(src).as_posix()
            for e in cache[str(f)]["entries"]:
                name = f"{rel}::{e['member']}" if e["member"] else rel
                rep.n_files += 1
                if not e["ok"]:
                    shown = display_path(f"{src.name}/{name}")
                    rep.skipped.append(FileReport(shown, False, e["kind"], e["reason"]))
                    continue
                path = f"{f}::{e['member']}" if e["member"] else str(f)
                split = "heldout" if is_heldout(name, fraction) else "train"
                c = cache[str(f)]
                rows.append(
                    dict(
                        path=path,
                        duration=round(e["duration"], 6),
                        source=source,
                        split=split,
                        _rel=name,
                        _sig=f"{path}\0{c['size']}\0{c['mtime']}",
                    )
                )
    return rows


def _copy(rows: list[dict], out: Path, workers: int, progress: bool, rep: PoolReport) -> list[dict]:
    """Convert kept files into ``out/audio/<source>/`` (see the module doc). A WAV's name
    holds a hash of its file's path, size and mtime, so an existing WAV is reused
    only for the very file it was made from; WAVs of files gone or changed are removed."""
    jobs, used = [], set()
    for r in rows:
        stem = os.path.splitext(r["_rel"].replace("::", "/"))[0].replace("/", "__")
        sig = hashlib.sha1(r["_sig"].encode("utf-8", "surrogateescape")).hexdigest()[:10]
        dest = out / "audio" / r["source"] / f"{short_stem(safe_name(stem))}-{sig}.wav"
        k = 1
        while dest in used:
            k += 1
            dest = dest.with_name(f"{dest.stem}_{k}.wav")
        used.add(dest)
        jobs.append((r["path"], str(dest)))
    kept = []
    done = _run_parallel(convert_file, jobs, workers, "converting", progress)
    for r, (_, dest), err in zip(rows, jobs, done, strict=True):
        if err:
            rep.skipped.append(FileReport(display_path(r["_rel"]), False, *err.split(": ", 1)))
        else:
            kept.append({**r, "path": dest})
    for source in {r["source"] for r in rows}:
        for old in (out / "audio" / source).glob("*.wav"):
            if old not in used:
                old.unlink(missing_ok=True)
    return kept


def import_pool(
    srcs: list[str | Path],
    out: str | Path,
    heldout_fraction: float = 0.05,
    copy: bool = False,
    workers: int | None = None,
    limit_seconds: float = DEFAULT_LIMIT_SECONDS,
    progress: bool = False,
) -> PoolReport:
    """Build or update the pool at ``out`` from the folders ``srcs`` (see the module doc).

    Raises DataError for a missing SRC, an OUT inside a SRC, or when no file is usable."""
    t0 = time.perf_counter()
    # normalised ("a/../b" → "b"): the scan cache and the manifest key files by these paths
    out, srcs = Path(os.path.abspath(out)), [Path(os.path.abspath(s)) for s in srcs]
    if not 0.0 <= heldout_fraction < 1.0:
        raise DataError(f"--heldout-fraction {heldout_fraction} is not in [0, 1)")
    for s in srcs:
        if not s.is_dir():
            raise DataError(f"{display_path(s)}: source folder not found")
        if copy and out.resolve().is_relative_to(s.resolve()):
            raise DataError(f"{display_path(out)}: with --copy, OUT must not lie inside SRC")
    out.mkdir(parents=True, exist_ok=True)
    rep = PoolReport(str(out))
    found, seen, real_dirs = {}, set(), {}
    for s in dict.fromkeys(srcs):  # a file reached twice (nested SRCs, a link) is one row
        files, ignored = walk(s, skip=out / "audio", bad=rep.skipped)
        found[s] = []
        for f in files:
            d = str(f.parent)  # realpath once per folder, per file only for a file link
            if d not in real_dirs:
                real_dirs[d] = os.path.realpath(d)
            real = os.path.realpath(f) if f.is_symlink() else os.path.join(real_dirs[d], f.name)
            if real not in seen:
                seen.add(real)
                found[s].append(f)
        rep.n_ignored += ignored
        rep.n_duplicates += len(files) - len(found[s])
    srcs = list(found)
    every = [f for s in srcs for f in found[s]]
    workers = workers or min(os.cpu_count() or 1, 8)
    cache, rep.n_scanned = scan(every, out / CACHE_NAME, workers, limit_seconds, progress)
    rows = _rows(srcs, found, cache, heldout_fraction, rep)
    if copy:
        rows = _copy(rows, out, workers, progress, rep)
    problems = [dict(path=p.path, kind=p.kind, reason=p.reason) for p in rep.skipped]
    write_manifest(out / "problems.csv", problems, ["path", "kind", "reason"])
    if not rows:
        where = ", ".join(map(display_path, srcs))
        raise NothingImported(f"no usable audio in {where} ({len(rep.skipped)} bad files)",
                              rep.skipped)  # fmt: skip
    write_manifest(out / "manifest.csv", rows, ["path", "duration", "source", "split"])
    rep.n_kept, rep.n_heldout = len(rows), sum(r["split"] == "heldout" for r in rows)
    rep.hours = sum(r["duration"] for r in rows) / 3600
    rep.wall_s = time.perf_counter() - t0
    return rep
