"""Named, weighted suites: a YAML file listing task folders with optional weights.

::

    name: my-suite
    tasks:
      - path: tasks/xares-esc50      # relative to this file, or absolute
        weight: 400                  # optional, default 1 (X-ARES: the task's eval_weight)
      - tasks/hear-speech            # a bare path: weight 1

A path may also be a folder of task folders; each task in it gets the entry's weight.
The suite score is the plain mean of the task scores and, beside it, the mean weighted by
these weights (:class:`audioscale.probe.suite.SuiteResult`); every stored score names the
suite and its weights. ``probe --suite FILE`` and ``eval.suite`` read it; the importers'
``--suite FILE`` appends to it (:func:`add_task`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from audioscale.audio.io import display_path
from audioscale.errors import DataError
from audioscale.utils import atomic_write_text


@dataclass
class Suite:
    """A loaded suite: its name and (task folder, weight) pairs, folders absolute."""

    name: str
    path: str
    tasks: list[tuple[str, float]] = field(default_factory=list)

    @property
    def task_dirs(self) -> list[str]:
        return [t for t, _ in self.tasks]

    def weights_by_name(self) -> dict[str, float]:
        """Task name (``task.yaml`` ``name``) → weight."""
        from audioscale.data.manifest import _load_task_yaml

        return {
            _load_task_yaml(Path(t) / "task.yaml", Path(t).name)["name"]: w for t, w in self.tasks
        }


def _entry(e, where: str) -> tuple[str, float]:
    if isinstance(e, str):
        return e, 1.0
    if not isinstance(e, dict) or "path" not in e:
        raise DataError(f"{where}: an entry is a path or a mapping with 'path' (got {e!r})")
    w = e.get("weight", 1.0)
    if isinstance(w, bool) or not isinstance(w, int | float) or not w > 0:
        raise DataError(f"{where}: weight of {e['path']!r} must be a positive number")
    return str(e["path"]), float(w)


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise DataError(f"{display_path(path)}: cannot read suite file ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise DataError(f"{display_path(path)}: not valid YAML ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks", []), list):
        raise DataError(f"{display_path(path)}: expected a mapping with a 'tasks' list")
    return data


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file (DataError naming the file and the entry)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{display_path(path)}: suite file not found")
    data = _read(path)
    suite = Suite(str(data.get("name") or path.stem), str(path))
    base = path.resolve().parent
    for e in data.get("tasks") or []:
        rel, w = _entry(e, display_path(path))
        d = Path(os.path.expanduser(rel))
        d = d if d.is_absolute() else base / d
        if (d / "task.yaml").is_file():
            suite.tasks.append((str(d), w))
        elif d.is_dir() and any(d.glob("*/task.yaml")):
            suite.tasks += [(str(q.parent), w) for q in sorted(d.glob("*/task.yaml"))]
        else:
            raise DataError(f"{display_path(path)}: {rel} is not a task folder (no task.yaml)")
    if not suite.tasks:
        raise DataError(f"{display_path(path)}: the suite lists no tasks")
    return suite


def add_task(path: str | Path, task_dir: str | Path, weight: float | None = None) -> None:
    """Append ``task_dir`` (weight ``weight`` or 1) to the suite file at ``path``, creating
    it; an entry for the same folder is replaced."""
    path = Path(path)
    data = _read(path) if path.is_file() else {"name": path.stem, "tasks": []}
    base = path.resolve().parent
    task = Path(task_dir).resolve()
    rel = os.path.relpath(task, base) if task.is_relative_to(base) else str(task)
    tasks = [
        e for e in data.get("tasks") or [] if (base / _entry(e, str(path))[0]).resolve() != task
    ]
    tasks.append({"path": rel, "weight": weight if weight is not None else 1})
    data["tasks"] = tasks
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
