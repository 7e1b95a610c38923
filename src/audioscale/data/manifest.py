"""Manifests (CSV), task folders and pool folders.

A manifest is a UTF-8 CSV with a header row and at least a ``path`` column. Paths are
stored relative to the manifest's folder when the file lies inside that folder, absolute
otherwise; :func:`read_manifest` returns them absolute. A path may name a zip member,
``"sounds.pk3::sfx/door.ogg"``; only the archive part is resolved. File names that are not
valid UTF-8 are kept byte-exact with Python's ``surrogateescape`` on write and read.

Numeric columns ``duration``, ``max_seconds`` and ``offset_seconds`` are parsed to float
(empty → None); every other value stays a string.

Task folder: ``manifest.csv`` (``path,label,split`` plus optional ``group,duration,sha1``)
and ``task.yaml`` (``name``, ``domain`` in speech|music|environment, ``metric`` in
accuracy|mAP, ``multilabel`` bool; optional ``description`` and any extra keys, kept in
``Task.meta``). Splits are either ``train/valid/test`` or fold ids ``fold1..foldK``, never
a mix. Multilabel labels are ``;``-separated. Pool folder: ``manifest.csv`` with
``path,duration,source,split`` (split in train|heldout), unlabeled.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from audioscale.errors import DataError
from audioscale.utils import atomic_write_bytes

ZIP_SEP = "::"
NUMERIC_COLUMNS = ("duration", "max_seconds", "offset_seconds")
DOMAINS = ("speech", "music", "environment")
METRICS = ("accuracy", "mAP")
STANDARD_SPLITS = ("train", "valid", "test")
POOL_SPLITS = ("train", "heldout")
FOLD_RE = re.compile(r"^fold(\d+)$")
LABEL_SEP = ";"


def _shown(p: str | Path) -> str:
    return os.fsencode(str(p)).decode("utf-8", "replace")


def _resolve(p: str, base: Path) -> str:
    """Absolute form of a manifest path (zip-member aware)."""
    archive, sep, member = p.partition(ZIP_SEP)
    if not sep or os.path.exists(os.path.join(base, p)):
        archive, member = p, ""
    full = os.path.normpath(os.path.join(base, os.path.expanduser(archive)))
    return full + (ZIP_SEP + member if member else "")


def _relativise(p: str, base: Path) -> str:
    archive, sep, member = str(p).partition(ZIP_SEP)
    if not sep or os.path.exists(p):
        archive, member = str(p), ""
    a = os.path.abspath(archive)
    for b in dict.fromkeys([os.path.abspath(base), os.path.realpath(base)]):
        if os.path.commonpath([a, b]) == b:
            archive = os.path.relpath(a, b)
            break
    return archive + (ZIP_SEP + member if member else "")


def _parse_float(value: str, where: str, col: str) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise DataError(f"{where}: column '{col}' is not a number: {value!r}") from None


def read_manifest(path: str | Path) -> list[dict]:
    """Rows of a manifest CSV as dicts; ``path`` made absolute, numeric columns parsed.

    Raises DataError (naming the file and row) for a missing file, a missing ``path``
    column, a row with the wrong number of fields, an empty path or a bad number."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{_shown(path)}: manifest not found")
    base = path.resolve().parent
    try:
        text = path.read_bytes().decode("utf-8-sig", "surrogateescape")
    except OSError as e:
        raise DataError(f"{_shown(path)}: cannot read manifest ({e.strerror})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        raise DataError(f"{_shown(path)}: manifest is empty (no header row)")
    header = [h.strip() for h in header]
    if "path" not in header:
        raise DataError(f"{_shown(path)}: manifest has no 'path' column (header: {header})")
    rows = []
    for lineno, values in enumerate(reader, start=2):
        if not values or all(not v.strip() for v in values):
            continue
        where = f"{_shown(path)} row {lineno}"
        if len(values) != len(header):
            raise DataError(f"{where}: {len(values)} fields, header has {len(header)}")
        row = dict(zip(header, values, strict=True))
        if not row["path"].strip():
            raise DataError(f"{where}: empty path")
        row["path"] = _resolve(row["path"], base)
        for col in NUMERIC_COLUMNS:
            if col in row:
                row[col] = _parse_float(row[col], where, col)
        row["_row"] = lineno
        rows.append(row)
    return rows


def write_manifest(path: str | Path, rows: list[dict], columns: list[str] | None = None) -> None:
    """Write rows atomically as UTF-8 CSV, ``path`` first, paths relative where possible.

    ``columns`` defaults to every key seen (first-seen order; keys starting with ``_`` and
    list values such as ``labels`` are left out). None is written as an empty field."""
    path = Path(path)
    base = path.absolute().parent
    if columns is None:
        columns = ["path"]
        for r in rows:
            for k, v in r.items():
                if k not in columns and not k.startswith("_") and not isinstance(v, list):
                    columns.append(k)
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        out = []
        for c in columns:
            v = r.get(c)
            if c == "path":
                v = _relativise(str(v), base)
            out.append("" if v is None else (repr(v) if isinstance(v, float) else str(v)))
        w.writerow(out)
    atomic_write_bytes(path, buf.getvalue().encode("utf-8", "surrogateescape"))


def file_list_hash(rows: list[dict], length: int = 16) -> str:
    """Stable hash of an ordered file list, for cache keys.

    Per row: the path, then its ``sha1`` column when present, else the file's size and
    mtime (of the archive for zip members, or "missing"), plus ``max_seconds`` and
    ``offset_seconds`` when set. Row order matters (it fixes cache indices)."""
    h = hashlib.sha256()
    for r in rows:
        p = str(r["path"])
        h.update(p.encode("utf-8", "surrogateescape") + b"\0")
        if r.get("sha1"):
            h.update(b"sha1:" + str(r["sha1"]).encode())
        else:
            archive = p.partition(ZIP_SEP)[0] if ZIP_SEP in p and not os.path.exists(p) else p
            try:
                st = os.stat(archive)
                h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
            except OSError:
                h.update(b"missing")
        for k in ("max_seconds", "offset_seconds"):
            if r.get(k) is not None:
                h.update(f"|{k}={float(r[k])!r}".encode())
        h.update(b"\n")
    return h.hexdigest()[:length]


# ----------------------------------------------------------------------------- tasks


@dataclass
class Task:
    """A labeled task folder. ``splits`` maps split name → its rows (file order kept);
    each row has ``labels`` (a list; one item unless multilabel)."""

    name: str
    domain: str
    metric: str
    multilabel: bool
    rows: list[dict]
    labels: list[str]
    splits: dict[str, list[dict]]
    root: Path
    description: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def folds(self) -> list[str]:
        return [s for s in self.splits if FOLD_RE.match(s)]


def _split_order(name: str) -> tuple:
    if name in STANDARD_SPLITS:
        return (0, STANDARD_SPLITS.index(name))
    m = FOLD_RE.match(name)
    return (1, int(m.group(1))) if m else (2, name)


def _load_task_yaml(path: Path, default_name: str) -> dict:
    if not path.is_file():
        raise DataError(f"{_shown(path)}: task.yaml not found")
    try:
        meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DataError(f"{_shown(path)}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{_shown(path)}: top level must be a mapping")
    meta.setdefault("name", default_name)
    meta.setdefault("multilabel", False)
    for key in ("domain", "metric"):
        if key not in meta:
            raise DataError(f"{_shown(path)}: key '{key}' is missing")
    if not isinstance(meta["name"], str) or not meta["name"].strip():
        raise DataError(f"{_shown(path)}: key 'name' must be a non-empty string")
    if meta["domain"] not in DOMAINS:
        raise DataError(f"{_shown(path)}: key 'domain' is {meta['domain']!r}, not one of {DOMAINS}")
    if meta["metric"] not in METRICS:
        raise DataError(f"{_shown(path)}: key 'metric' is {meta['metric']!r}, not one of {METRICS}")
    if not isinstance(meta["multilabel"], bool):
        raise DataError(f"{_shown(path)}: key 'multilabel' must be true or false")
    if meta["multilabel"] and meta["metric"] != "mAP":
        raise DataError(f"{_shown(path)}: multilabel tasks use metric 'mAP'")
    return meta


def _task_rows(
    rows: list[dict], multilabel: bool, mpath: Path
) -> tuple[set[str], dict[str, list[dict]]]:
    """Validate and normalise every row (split, label, ``labels``, no path twice); the
    label set and the rows per split in row order."""
    seen: dict[str, int] = {}
    labels: set[str] = set()
    splits: dict[str, list[dict]] = {}
    for r in rows:
        where = f"{_shown(mpath)} row {r['_row']}"
        split = r["split"].strip()
        if split not in STANDARD_SPLITS and not FOLD_RE.match(split):
            raise DataError(f"{where}: split {split!r} is not train/valid/test or foldN")
        r["split"] = split
        parts = r["label"].split(LABEL_SEP) if multilabel else [r["label"]]
        parts = [p.strip() for p in parts if p.strip()]
        if not parts:
            raise DataError(f"{where}: empty label")
        if not multilabel:
            r["label"] = parts[0]
        r["labels"] = parts
        labels.update(parts)
        if r["path"] in seen:
            raise DataError(f"{where}: path listed twice (first on row {seen[r['path']]})")
        seen[r["path"]] = r["_row"]
        splits.setdefault(split, []).append(r)
    return labels, splits


def _check_splits(splits: dict[str, list[dict]], mpath: Path) -> None:
    """Splits are all standard (with train and test) or all folds (at least two)."""
    kinds = {"folds" if FOLD_RE.match(s) else "standard" for s in splits}
    if len(kinds) > 1:
        raise DataError(f"{_shown(mpath)}: splits mix train/valid/test with fold ids")
    if kinds == {"standard"}:
        for need in ("train", "test"):
            if need not in splits:
                raise DataError(f"{_shown(mpath)}: no '{need}' split")
    elif len(splits) < 2:
        raise DataError(f"{_shown(mpath)}: fold-based tasks need at least two folds")


def load_task(task_dir: str | Path) -> Task:
    """Load and validate a task folder (``task.yaml`` + ``manifest.csv``).

    DataError names the file, the row and the reason: missing columns, an empty label, an
    unknown split, train/valid/test mixed with folds, a path listed twice, no ``test``
    split (or fewer than two folds), or no training data."""
    root = Path(task_dir)
    if not root.is_dir():
        raise DataError(f"{_shown(root)}: task folder not found")
    meta = _load_task_yaml(root / "task.yaml", root.name)
    mpath = root / "manifest.csv"
    rows = read_manifest(mpath)
    for col in ("label", "split"):
        if rows and col not in rows[0]:
            raise DataError(f"{_shown(mpath)}: manifest has no '{col}' column")
    if not rows:
        raise DataError(f"{_shown(mpath)}: manifest has no rows")
    labels, splits = _task_rows(rows, meta["multilabel"], mpath)
    _check_splits(splits, mpath)
    splits = {k: splits[k] for k in sorted(splits, key=_split_order)}
    extra = {k: v for k, v in meta.items() if k not in ("name", "domain", "metric", "multilabel")}
    return Task(
        name=meta["name"],
        domain=meta["domain"],
        metric=meta["metric"],
        multilabel=meta["multilabel"],
        rows=rows,
        labels=sorted(labels),
        splits=splits,
        root=root,
        description=str(meta.get("description", "")),
        meta=extra,
    )


def load_pool(path: str | Path) -> list[dict]:
    """Rows of an unlabeled pool: ``path`` is a folder holding ``manifest.csv`` or the CSV.

    Validates columns ``path,duration,source,split``, split in train|heldout and
    duration > 0 (DataError naming file and row)."""
    p = Path(path)
    mpath = p / "manifest.csv" if p.is_dir() else p
    rows = read_manifest(mpath)
    for col in ("duration", "source", "split"):
        if rows and col not in rows[0]:
            raise DataError(f"{_shown(mpath)}: pool manifest has no '{col}' column")
    for r in rows:
        where = f"{_shown(mpath)} row {r['_row']}"
        r["split"] = r["split"].strip()
        if r["split"] not in POOL_SPLITS:
            raise DataError(f"{where}: split {r['split']!r} is not train or heldout")
        if r["duration"] is None or r["duration"] <= 0:
            raise DataError(f"{where}: duration must be a positive number of seconds")
    return rows
