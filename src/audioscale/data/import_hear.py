"""A HEAR 2021 task folder, as hear-preprocess writes it → our task folder.

Layout (hearbenchmark.com, "HEAR 2021 Rules" / "Tasks"; hear-preprocess output read by
hear-eval-kit's ``heareval/predictions/task_predictions.py``)::

    <task>-v1.0.0-full/
      task_metadata.json    task_name, mode, embedding_type (scene|event),
                            prediction_type (multiclass|multilabel), split_mode
                            (trainvaltest | new_split_kfold | presplit_kfold), splits
                            (fold names for k-fold modes), nfolds, sample_duration,
                            evaluation (metric names: top1_acc, mAP, d_prime, ...)
      labelvocabulary.csv   idx,label
      train.json valid.json test.json | fold00.json fold01.json ...
                            file name → list of labels (scene tasks), or a list of
                            {"label", "start", "end"} events (event tasks)
      16000/<split>/<file name>.wav   (also 22050/, 44100/, 48000/)

Scene tasks become task folders: ``trainvaltest`` keeps train/valid/test, k-fold modes
map ``fold00`` … to ``fold1`` …; multilabel tasks use mAP, multiclass ones accuracy
(HEAR's own metrics are kept in ``task.yaml`` as ``hear_evaluation``). Event
(timestamp) tasks are not supported: no frame-level event probes with HEAR's onset
F-measure here, so they raise one DataError line. Problems (a label file naming a file
that is not there, a split not in the metadata, a label outside ``labelvocabulary.csv``,
a corrupt or empty clip) are one line each; the good clips are imported.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from audioscale.audio.io import display_path
from audioscale.data.taskwrite import TaskImport, TaskWriter, fold_id, safe_name
from audioscale.errors import DataError
from audioscale.utils import track

KFOLD_MODES = ("new_split_kfold", "presplit_kfold")
HEAR_RATES = ("16000", "22050", "44100", "48000")


def _json(path: Path) -> dict | list:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{display_path(path)}: not found") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{display_path(path)}: cannot read ({e})") from None


def read_metadata(task_dir: Path) -> dict:
    """``task_metadata.json``, with the keys the import needs checked."""
    meta = _json(task_dir / "task_metadata.json")
    if not isinstance(meta, dict):
        raise DataError(f"{display_path(task_dir)}/task_metadata.json: not a JSON object")
    for key in ("task_name", "embedding_type", "prediction_type", "split_mode"):
        if key not in meta:
            raise DataError(f"{display_path(task_dir)}/task_metadata.json: no key {key!r}")
    if meta["embedding_type"] == "event":
        raise DataError(f"{meta['task_name']}: not supported: timestamp (event) task")
    if meta["embedding_type"] != "scene":
        raise DataError(f"{meta['task_name']}: embedding_type {meta['embedding_type']!r}")
    return meta


def split_names(meta: dict) -> dict[str, str]:
    """HEAR split name → our split: train/valid/test, or ``fold00`` → ``fold1`` …"""
    if meta["split_mode"] == "trainvaltest":
        return {"train": "train", "valid": "valid", "test": "test"}
    if meta["split_mode"] in KFOLD_MODES:
        names = meta.get("splits")
        if not names:
            try:
                names = [f"fold{i:02d}" for i in range(int(meta["nfolds"]))]
            except (KeyError, TypeError, ValueError):
                raise DataError(
                    f"{meta['task_name']}: {meta['split_mode']} task_metadata.json has "
                    "neither 'splits' nor a whole number 'nfolds'"
                ) from None
        return {str(n): fold_id(i + 1) for i, n in enumerate(names)}
    raise DataError(f"{meta['task_name']}: unknown split_mode {meta['split_mode']!r}")


def read_vocabulary(task_dir: Path) -> set[str] | None:
    """Labels of ``labelvocabulary.csv`` (None when the file is absent)."""
    path = task_dir / "labelvocabulary.csv"
    if not path.is_file():
        return None
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return {(r["label"] or "").strip() for r in csv.DictReader(f)}
    except KeyError:
        raise DataError(f"{display_path(path)}: no 'label' column") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{display_path(path)}: cannot read ({e})") from None


def audio_root(task_dir: Path, meta: dict) -> Path:
    """The ``<sample_rate>/`` folder: the metadata's rate, else 16000, else the first."""
    want = [str(meta.get("sample_rate", "")), *HEAR_RATES]
    for rate in want:
        if rate and (task_dir / rate).is_dir():
            return task_dir / rate
    rates = sorted(p for p in task_dir.iterdir() if p.is_dir() and p.name.isdigit())
    if not rates:
        raise DataError(f"{display_path(task_dir)}: no <sample_rate>/ audio folder")
    return rates[0]


def _label_files(task_dir: Path, splits: dict[str, str], w: TaskWriter) -> list[Path]:
    """The split label files present; a ``*.json`` split not in the metadata is a problem."""
    files = []
    for p in sorted(task_dir.glob("*.json")):
        if p.name == "task_metadata.json":
            continue
        if p.stem in splits:
            files.append(p)
        elif re.fullmatch(r"train|valid|test|fold\d+", p.stem):
            w.problem(p.name, "unknown-split", f"split {p.stem!r} is not in task_metadata.json")
    for name in splits:
        if not (task_dir / f"{name}.json").is_file():
            w.report.warnings.append(f"no label file {name}.json")
    return files


def _is_label(x) -> bool:
    """A label as HEAR label files hold it: a name, or a number (e.g. a MIDI pitch)."""
    return isinstance(x, str | int) and not isinstance(x, bool)


def import_hear(
    task_dir: str | Path,
    out: str | Path | None = None,
    domain: str = "environment",
    force: bool = False,
    progress: bool = False,
) -> TaskImport:
    """Import one HEAR 2021 scene task (see the module doc); ``out`` defaults to
    ``tasks/<task_name>``."""
    task_dir = Path(task_dir)
    if not task_dir.is_dir():
        raise DataError(f"{display_path(task_dir)}: HEAR task folder not found")
    meta = read_metadata(task_dir)
    name = safe_name(meta["task_name"])
    splits = split_names(meta)
    audio = audio_root(task_dir, meta)
    w = TaskWriter(out or Path("tasks") / name, name, "hear", read_vocabulary(task_dir), force)
    multilabel = meta["prediction_type"] == "multilabel"
    for lf in _label_files(task_dir, splits, w):
        try:
            labels = _json(lf)
        except DataError as e:  # an unreadable label file loses its split, not the task
            w.problem(lf.name, "bad-labels", str(e).split(": ", 1)[-1])
            continue
        if not isinstance(labels, dict):
            w.problem(lf.name, "bad-labels", "not a JSON object of file name → labels")
            continue
        for fname, labs in track(sorted(labels.items()), f"{lf.stem}", progress):
            f = audio / lf.stem / fname
            shown = f"{lf.stem}/{fname}"
            if not f.is_file():
                w.problem(shown, "missing", f"listed in {lf.name} but not under {audio.name}/")
            elif not isinstance(labs, list) or not all(_is_label(x) for x in labs):
                w.problem(shown, "bad-labels", "labels are not a list of names")
            elif not multilabel and len(labs) > 1:  # would become one made-up class "a;b"
                w.problem(shown, "bad-labels", f"{len(labs)} labels in a multiclass task")
            else:
                w.add(f, shown, [str(x) for x in labs], splits[lf.stem])
    metric = "mAP" if multilabel else "accuracy"
    desc = f"HEAR 2021 task {meta['task_name']} ({meta['split_mode']}) from {task_dir.name}"
    return w.finish(
        dict(
            name=name,
            domain=domain,
            metric=metric,
            multilabel=multilabel,
            description=desc,
            hear_evaluation=list(meta.get("evaluation") or []),
        )
    )
