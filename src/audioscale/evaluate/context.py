"""The study's evaluation context: one unlabeled pool and one set of options that every
run and baseline of a study is measured under.

- The eval pool (``build_eval_context``) is the pool's ``heldout`` split plus every task
  clip (labels unused), one entry per file, capped at ``eval.rankme_samples`` by the
  seeded ``"choice"`` subsample of ``sampling.subsample``; its name (with a hash of its
  file list) is stored with every value, N and K too.
- ``pool_overlap``: whether any eval-pool file is also a pretraining file of the run
  (compared by resolved path; zip members by archive path + member). Computed, not
  assumed: it is false for the default pool only because the split is disjoint.
- Embeddings of a set of rows are extracted through the study's on-disk cache
  (``extract_rows``), so a restart between two stages re-extracts nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audioscale.config import RunConfig, config_hash
from audioscale.errors import ConfigError
from audioscale.evaluate.records import EvalContextInfo
from audioscale.sampling import subsample


@dataclass
class EvalContext:
    """The study-wide evaluation setup, shared by every run (picklable)."""

    pool_name: str
    pool_rows: list[dict]  # the eval pool: heldout rows + task clips, capped at `samples`
    task_dirs: list[str]
    samples: int = 25600
    level: str = "clip"
    layer: int = -1
    centred: bool = False
    seed: int = 0
    protocols: list[str] = field(default_factory=lambda: ["linear", "knn"])
    probe_features: str = "standardised"  # probe.suite: standardised or raw
    cache_dir: str | None = None  # embedding (and log-mel) cache shared by the study's runs
    device: str = "auto"  # extraction device: the worker's GPU when it has one
    batch_size: int = 32
    suite_name: str = ""  # eval.suite: the suite file's name ("" without one)
    suite_weights: dict[str, float] = field(default_factory=dict)  # task name -> weight


def task_folders(entries: list[str]) -> list[str]:
    """Task folders from config entries: a folder with task.yaml, or a folder of them."""
    out: list[str] = []
    for e in entries:
        p = Path(e)
        if (p / "task.yaml").is_file():
            out.append(str(p))
        elif p.is_dir() and any(p.glob("*/task.yaml")):
            out += [str(q.parent) for q in sorted(p.glob("*/task.yaml"))]
        else:
            raise ConfigError("eval.tasks", f"{e} is not a task folder (no task.yaml)")
    return out


def build_eval_context(
    base: RunConfig,
    pool: str | None = None,
    split: str = "heldout",
    include_tasks: bool = True,
    cache_dir: str | Path | None = None,
) -> EvalContext:
    """The eval pool of a study: ``split`` rows of ``pool`` (default: base data.pool) plus
    all clips of the base config's tasks; seeded subsample when above the N cap."""
    from audioscale.data.manifest import load_pool, load_task
    from audioscale.data.suitefile import load_suite

    ev = base.eval
    pool_path = pool or ev.rankme_pool or base.data.pool
    if not Path(pool_path).exists():
        raise ConfigError("data.pool", f"{pool_path} not found (eval pool)")
    rows = [_plain(r) for r in load_pool(pool_path) if r.get("split") == split]
    tasks = task_folders(ev.tasks)
    suite = load_suite(ev.suite) if ev.suite else None
    if suite is not None:
        have = {Path(t).resolve() for t in tasks}  # eval.tasks' spelling kept, no task twice
        tasks += [t for t in dict.fromkeys(suite.task_dirs) if Path(t).resolve() not in have]
    if include_tasks:
        for t in tasks:
            rows += [_plain(r) | {"source": f"task:{Path(t).name}"} for r in load_task(t).rows]
    rows = list({r["path"]: r for r in rows}.values())  # one entry per file
    if not rows:
        raise ConfigError("data.pool", f"{pool_path}: the eval pool is empty")
    rows = subsample(rows, ev.rankme_samples, ev.rankme_seed, "choice")
    name = Path(pool_path).name if Path(pool_path).is_dir() else Path(pool_path).parent.name
    tag = f"{name}-{split}" + ("+tasks" if include_tasks and tasks else "")
    return EvalContext(
        pool_name=f"{tag}-{config_hash([r['path'] for r in rows], 8)}",
        pool_rows=rows,
        task_dirs=tasks,
        samples=ev.rankme_samples,
        level=ev.rankme_level,
        layer=ev.rankme_layer,
        centred=ev.rankme_centred,
        seed=ev.rankme_seed,
        protocols=list(ev.protocols),
        probe_features=ev.probe_features,
        cache_dir=str(cache_dir) if cache_dir else None,
        suite_name=suite.name if suite else "",
        suite_weights=suite.weights_by_name() if suite else {},
    )


def _plain(row: dict) -> dict:
    keep = ("path", "duration", "source", "split", "max_seconds", "offset_seconds", "sha1")
    return {k: row[k] for k in keep if row.get(k) is not None}


def context_info(ctx: EvalContext) -> dict:
    """The RankMe options every value of a run was measured under (``EvalContextInfo``)."""
    return EvalContextInfo(
        rankme_pool=ctx.pool_name,
        rankme_level=ctx.level,
        rankme_layer=ctx.layer,
        rankme_centred=ctx.centred,
    ).to_dict()


def _file_key(path: str) -> str:
    archive, sep, member = str(path).partition("::")
    return os.path.realpath(archive) + sep + member


def pool_overlap(pool_rows: list[dict], train_rows: list[dict]) -> bool:
    """Whether any eval-pool file is also one of ``train_rows`` (resolved paths)."""
    seen = {_file_key(r["path"]) for r in train_rows}
    return any(_file_key(r["path"]) in seen for r in pool_rows)


def slice_seconds(pool_rows: list[dict], default: float) -> float:
    """Crop length of the slices and of the log-mel reference set: the median clip
    duration of the eval pool, so that values are measured on clips of one typical
    length."""
    durations = [float(r["duration"]) for r in pool_rows if r.get("duration")]
    return float(np.median(durations)) if durations else default


def extract_rows(encoder: Any, rows: list[dict], ctx: EvalContext, level: str):
    """Embeddings of ``rows`` (an ``embed.extract.Extraction``: ``.emb`` of the good clips,
    ``.ok`` marks them), through the study's on-disk cache."""
    from audioscale.embed.extract import extract

    return extract(
        encoder, rows, layer=ctx.layer, level=level, cache_dir=ctx.cache_dir,
        batch_size=ctx.batch_size, device=ctx.device, progress=False,
    )  # fmt: skip
