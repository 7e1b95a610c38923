"""Metadata CSV + audio folder → task folder (``audioscale data import-csv``).

Covers the two common environmental-sound layouts without code:

- ESC-50 (github.com/karolpiczak/ESC-50, README "Repository content"): ``meta/esc50.csv``
  with columns ``filename,fold,target,category,esc10,src_file,take`` and the clips in
  ``audio/<filename>``; folds 1-5. ``--path-col filename --label-col category
  --fold-col fold``.
- UrbanSound8K (urbansounddataset.weebly.com/urbansound8k.html, the archive's README):
  ``metadata/UrbanSound8K.csv`` with ``slice_file_name,fsID,start,end,salience,fold,
  classID,class`` and the clips in ``audio/fold<N>/<slice_file_name>``; folds 1-10.
  ``--path-col slice_file_name --label-col class --fold-col fold``.

A path is looked up as ``DIR/<path>`` first, then by file name anywhere under ``DIR``
(UrbanSound8K's ``fold<N>/`` subfolders). Folds are integers (``1`` → ``fold1``; a
0-based column is shifted by one) or ``foldN``; splits are train, valid (val,
validation) or test. Without a fold or split column the deterministic stratified
70/10/20 split of :func:`audioscale.data.importer.stratified_split` is used. A row whose
file is missing or listed on an earlier row, whose fold or split is unknown or whose
label is empty is one problem line; the good rows are imported.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from audioscale.audio.io import display_path
from audioscale.data.importer import SPLIT_ALIASES, stratified_split
from audioscale.data.taskwrite import TaskImport, TaskWriter, fold_id, safe_name
from audioscale.errors import DataError
from audioscale.utils import track


def read_rows(meta: Path) -> list[dict]:
    """The CSV's rows as dicts (DataError when it is missing or has no header)."""
    if not meta.is_file():
        raise DataError(f"{display_path(meta)}: metadata CSV not found")
    try:
        with open(meta, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames:
                raise DataError(f"{display_path(meta)}: metadata CSV is empty (no header row)")
            return [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in reader]
    except UnicodeDecodeError as e:
        raise DataError(
            f"{display_path(meta)}: not UTF-8 (byte {e.object[e.start]:#04x} at offset "
            f"{e.start}); save it as UTF-8"
        ) from None
    except (OSError, csv.Error) as e:
        raise DataError(f"{display_path(meta)}: cannot read ({e})") from None


def _need_columns(meta: Path, rows: list[dict], cols: list[str | None]) -> None:
    have = list(rows[0]) if rows else []
    for c in cols:
        if c and c not in have:
            raise DataError(f"{display_path(meta)}: no column {c!r} (columns: {have})")


def _index(audio: Path) -> dict[str, Path]:
    """File name → path for every file under ``audio`` (first one in sorted walk order)."""
    out: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(audio):
        dirnames.sort()
        for f in sorted(filenames):
            out.setdefault(f, Path(dirpath) / f)
    return out


def fold_split(value: str, shift: int) -> str | None:
    """``"3"`` → ``fold3`` (plus ``shift``), ``"fold3"`` kept; None when not a fold."""
    m = re.fullmatch(r"(?:fold)?0*(\d+)(?:\.0*)?", value.strip().lower())  # "3.0": pandas
    return fold_id(int(m.group(1)) + shift) if m else None


def _splits(rows: list[dict], fold_col: str | None, split_col: str | None) -> list[str | None]:
    if fold_col:
        nums = [re.fullmatch(r"(?:fold)?(\d+)(?:\.0*)?", r[fold_col].lower()) for r in rows]
        shift = 1 if any(m and int(m.group(1)) == 0 for m in nums) else 0
        return [fold_split(r[fold_col], shift) for r in rows]
    if split_col:
        return [SPLIT_ALIASES.get(r[split_col].lower()) for r in rows]
    return [""] * len(rows)  # "": assigned by the stratified split below


def import_csv(
    meta: str | Path,
    audio: str | Path,
    out: str | Path,
    path_col: str,
    label_col: str,
    fold_col: str | None = None,
    split_col: str | None = None,
    name: str | None = None,
    domain: str = "environment",
    force: bool = False,
    progress: bool = False,
) -> TaskImport:
    """Import the clips a metadata CSV lists (see the module doc) into a task at ``out``."""
    meta, audio = Path(meta), Path(audio)
    if fold_col and split_col:
        raise DataError("give --fold-col or --split-col, not both")
    if not audio.is_dir():
        raise DataError(f"{display_path(audio)}: audio folder not found")
    rows = read_rows(meta)
    _need_columns(meta, rows, [path_col, label_col, fold_col, split_col])
    name = name or safe_name(meta.stem)
    w = TaskWriter(out, name, "csv", force=force)
    index = _index(audio)
    splits = _splits(rows, fold_col, split_col)
    good, seen = [], {}
    for lineno, (r, split) in enumerate(zip(rows, splits, strict=True), start=2):
        shown = f"{display_path(meta.name)} row {lineno}: {r[path_col]}"
        f = audio / r[path_col]
        f = f if f.is_file() else index.get(Path(r[path_col]).name)
        if split is None:
            col = fold_col or split_col
            w.problem(shown, "unknown-split", f"{col} {r[col]!r} is not a fold or split")
        elif f is None:
            w.problem(shown, "missing", f"no such file under {display_path(audio)}")
        elif f in seen:
            w.problem(shown, "duplicate", f"file already listed on row {seen[f]}")
        else:
            seen[f] = lineno
            good.append((f, r[path_col], r[label_col], split))
    if not fold_col and not split_col:
        by_label: dict[str, list[str]] = {}
        for _, p, lab, _ in good:
            by_label.setdefault(lab, []).append(p)
        assign = stratified_split(by_label)
        good = [(f, p, lab, assign[p]) for f, p, lab, _ in good]
    for f, p, lab, split in track(good, "importing", progress):
        w.add(f, p, [lab], split)
    kind = "folds" if fold_col else "splits" if split_col else "stratified split"
    desc = f"imported from {display_path(meta.resolve())} ({kind})"
    meta_out = dict(name=name, domain=domain, metric="accuracy", multilabel=False)
    return w.finish({**meta_out, "description": desc})
