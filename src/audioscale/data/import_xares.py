"""An X-ARES task's downloaded webdataset shards → our task folder.

Source of truth: the task's own ``TaskConfig`` in the installed xares wheel
(github.com/jimbozhang/xares, ``src/tasks/<name>_task.py`` and ``src/xares/task.py``):
``audio_tar_name_of_split`` (split or fold → tar name pattern, brace ranges allowed, e.g.
``wds-audio-fold-{fold}-*.tar`` for k-fold tasks, ``<split>*.tar`` otherwise),
``k_fold_splits``, ``train/valid/test_split``, ``label_processor`` (the sample's json →
class index, many-hot list or name), ``output_dim``, ``metric``, ``task_type`` and
``eval_weight``. The shards are the ones X-ARES downloads from Zenodo into
``<env_root>/<name>/``: webdataset tars where one sample is ``<key>.<audio ext>`` plus
``<key>.json`` (grouped by the ``webdataset`` package, as X-ARES reads them).

The wheel's ``xares.task`` imports training dependencies (ignite, torchaudio,
transformers, ...) that audioscale does not install. When that import fails, the
``TaskConfig`` class is taken from the wheel's ``xares/task.py`` source alone (its
dataclass definition, compiled without the trainer imports) and the task file is run
against it; the fields and the tar-name logic are the wheel's own.

Clip tasks with metric accuracy or mAP are imported (k folds → ``fold1`` …, 0-based fold
numbers shifted by one); frame, ASR and contrastive (retrieval) tasks and other metrics
are "not supported" in one line. Index labels are written as class names when the
label processor's class map is visible, else as the index. Problems (a sample without its
json or audio, a label the processor rejects or beyond ``output_dim``, a corrupt clip, an
unreadable tar, a split with no tar) are one line each.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import tempfile
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np

from audioscale.audio.io import AUDIO_EXTENSIONS, display_path
from audioscale.data.taskwrite import TaskImport, TaskWriter, fold_id
from audioscale.errors import DataError

CLIP_METRICS = {"accuracy": "accuracy", "mAP": "mAP"}
# the audio keys X-ARES's reader accepts (xares/audiowebdataset.py, rename_keys "audio")
XARES_AUDIO_KEYS = ("flac", "mp3", "sox", "wav", "m4a", "ogg", "wma")


def _tasks_dir() -> Path:
    spec = importlib.util.find_spec("tasks")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("X-ARES task configs not found: pip install --no-deps xares==0.1.3")
    return Path(next(iter(spec.submodule_search_locations)))


def _standin_xares_task() -> types.ModuleType:
    """``xares.task`` holding only the wheel's TaskConfig dataclass (see the module doc)."""
    import dataclasses
    import typing

    import torch
    from xares.common import XaresSettings

    spec = importlib.util.find_spec("xares")
    src_path = Path(next(iter(spec.submodule_search_locations))) / "task.py"
    tree = ast.parse(src_path.read_text(encoding="utf-8"))
    cls = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TaskConfig"]
    if not cls:
        raise DataError(f"{src_path}: no TaskConfig class")
    mod = types.ModuleType("xares.task")
    ns = mod.__dict__
    ns.update(dataclass=dataclasses.dataclass, field=dataclasses.field, Path=Path, np=np)
    ns.update(torch=torch, nn=torch.nn, XaresSettings=XaresSettings, METRICS_TYPE=str)
    ns.update({k: getattr(typing, k) for k in ("Any", "Callable", "Dict", "List", "Literal")})
    code = compile(
        ast.Module(body=cls, type_ignores=[]),
        str(src_path),
        "exec",
        flags=__import__("__future__").annotations.compiler_flag,
    )
    sys.modules["xares.task"] = mod  # dataclass() looks its module up while it builds
    exec(code, ns)  # the wheel's own class body, without its trainer imports
    return mod


def _run_config_file(path: Path) -> object:
    """Import ``tasks/<name>_task.py`` and call its ``*_config(None)`` function."""
    spec = importlib.util.spec_from_file_location(f"_xares_task_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fns = [getattr(module, n) for n in dir(module) if n.endswith("_config")]
    if len(fns) != 1:
        raise DataError(f"{display_path(path)}: expected one *_config function")
    return fns[0](None)


def load_config(name: str) -> object:
    """The X-ARES ``TaskConfig`` of task ``name`` (restoring torch threads and RNG states,
    which ``TaskConfig.__post_init__`` sets)."""
    import torch

    path = _tasks_dir() / f"{name}_task.py"
    if not path.is_file():
        known = sorted(p.stem[: -len("_task")] for p in path.parent.glob("*_task.py"))
        raise DataError(f"X-ARES task {name!r} not found (known: {', '.join(known)})")
    threads, t_rng, np_rng = torch.get_num_threads(), torch.get_rng_state(), np.random.get_state()
    saved = sys.modules.get("xares.task")
    try:
        try:
            importlib.import_module("xares.task")
        except ImportError:
            _standin_xares_task()
        return _run_config_file(path)
    except ImportError as e:
        raise DataError(f"X-ARES task {name!r}: its config cannot be imported ({e})") from None
    finally:
        if saved is None:
            sys.modules.pop("xares.task", None)
        torch.set_num_threads(threads)
        torch.set_rng_state(t_rng)
        np.random.set_state(np_rng)


def check_supported(cfg) -> str:
    """Our metric for a clip task; DataError "not supported" for any other task."""
    if cfg.task_type != "clip":
        raise DataError(f"X-ARES task {cfg.name!r}: not supported: {cfg.task_type} task")
    if cfg.metric not in CLIP_METRICS:
        raise DataError(f"X-ARES task {cfg.name!r}: not supported: metric {cfg.metric}")
    return CLIP_METRICS[cfg.metric]


def split_map(cfg) -> dict[object, str]:
    """X-ARES split or fold → ours: ``train/valid/test``, or fold k → ``fold<k>`` (1-based)."""
    if cfg.k_fold_splits:
        folds = list(cfg.k_fold_splits)
        shift = 1 if any(str(f) == "0" for f in folds) else 0
        return {f: fold_id(int(f) + shift) for f in folds}
    out = {cfg.train_split: "train", cfg.valid_split: "valid", cfg.test_split: "test"}
    if cfg.valid_split in (cfg.train_split, cfg.test_split):
        out[cfg.valid_split] = "test" if cfg.valid_split == cfg.test_split else "train"
    return {k: v for k, v in out.items() if k}


def class_names(fn: Callable | None) -> dict[int, str]:
    """Index → name from a ``{name: index}`` dict the label processor closes over."""
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            v = cell.cell_contents
        except ValueError:
            continue
        if isinstance(v, dict) and v and all(isinstance(i, int) for i in v.values()):
            return {i: str(k) for k, i in v.items()}
    return {}


def labels_of(target, names: dict[int, str], output_dim: int | None) -> list[str]:
    """A processed target (index, many-hot list or name) → our label names."""
    if isinstance(target, str):
        return [target]
    if isinstance(target, list | tuple | np.ndarray):
        idx = [i for i, v in enumerate(target) if float(v) > 0.5]
    else:
        idx = [int(target)]
    bad = [i for i in idx if i < 0 or (output_dim is not None and i >= output_dim)]
    if bad:
        raise ValueError(f"class index {bad[0]} is outside 0..{(output_dim or 0) - 1}")
    return [names.get(i, str(i)) for i in idx]


def shard_files(src: Path, pattern: str) -> list[Path]:
    """Tars under ``src`` matching an X-ARES name pattern (``*`` and ``{a..b}`` ranges)."""
    from braceexpand import braceexpand

    found: set[Path] = set()
    for pat in braceexpand(pattern):
        found.update(p for p in src.glob(pat) if p.is_file())
    return sorted(found)


def _sample_audio(sample: dict) -> tuple[str, bytes] | None:
    for k, v in sample.items():
        if k.startswith("__"):
            continue
        if k.lower() in XARES_AUDIO_KEYS or f".{k.lower()}" in AUDIO_EXTENSIONS:
            return k, v  # one soundfile cannot read (m4a, wma) fails on decode, with a reason
    return None


def _samples(tar: Path, w: TaskWriter):
    """(key, sample) pairs of one shard; an unreadable tar is one problem line."""
    import webdataset as wds

    ds = wds.WebDataset(str(tar), shardshuffle=False, empty_check=False)
    try:
        for s in ds:
            yield s["__key__"], s
    except Exception as e:  # tarfile / webdataset errors: the rest of this shard is lost
        first = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
        why = first.split(" @ ")[0]  # webdataset appends the stream's repr
        w.problem(tar.name, "corrupt", f"tar cannot be read to the end ({why})")


def _import_shard(tar: Path, split: str, cfg, names: dict, w: TaskWriter, tmp: Path) -> None:
    import json

    for key, s in _samples(tar, w):
        shown = f"{tar.name}::{key}"
        audio = _sample_audio(s)
        if "json" not in s:
            w.problem(shown, "no-json", "sample has no .json (labels)")
            continue
        if audio is None:
            w.problem(shown, "missing", "sample has no audio file")
            continue
        try:
            meta = json.loads(s["json"])
            target = cfg.label_processor(meta) if cfg.label_processor else meta["label"]
            labels = labels_of(target, names, cfg.output_dim)
        except Exception as e:  # the task's own processor: KeyError for an unknown class
            w.problem(shown, "unknown-label", f"label rejected ({type(e).__name__}: {e})")
            continue
        f = tmp / f"clip.{audio[0]}"
        f.write_bytes(audio[1])
        w.add(f, shown, labels, split)


def import_xares(
    name: str,
    src: str | Path,
    out: str | Path | None = None,
    domain: str = "environment",
    force: bool = False,
) -> TaskImport:
    """Import X-ARES task ``name`` from its shards in ``src`` (see the module doc)."""
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"{display_path(src)}: X-ARES shard folder not found")
    if importlib.util.find_spec("webdataset") is None:
        raise DataError(
            "import-xares reads shards with webdataset: pip install 'audioscale[xares]'"
        )
    cfg = load_config(name)
    metric = check_supported(cfg)
    multilabel = metric == "mAP"
    w = TaskWriter(
        out or Path("tasks") / f"xares-{cfg.name}", f"xares-{cfg.name}", "xares", force=force
    )
    names = class_names(cfg.label_processor)
    splits = split_map(cfg)
    with tempfile.TemporaryDirectory(prefix="xares-") as tmp:
        for key, pattern in cfg.audio_tar_name_of_split.items():
            if key not in splits:
                continue
            tars = shard_files(src, pattern)
            if not tars:
                w.problem(pattern, "missing", f"no tar for split {key!r} in {display_path(src)}")
            for tar in tars:
                _import_shard(tar, splits[key], cfg, names, w, Path(tmp))
    w.report.weight = float(cfg.eval_weight) if cfg.eval_weight else None
    desc = f"X-ARES task {cfg.formal_name} from {display_path(src.resolve())}"
    return w.finish(
        dict(
            name=w.report.name,
            domain=domain,
            metric=metric,
            multilabel=multilabel,
            description=desc,
            eval_weight=cfg.eval_weight,
        )
    )
