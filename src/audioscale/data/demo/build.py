"""Entry points: plan, render, write the manifests, summarise; reuse a complete build."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from audioscale.data.demo.plan import DEMO_TASKS, SIZES, TASK_DESCRIPTIONS, TASK_DOMAINS, RenderPlan
from audioscale.data.demo.pool import plan_pool
from audioscale.data.demo.render import execute
from audioscale.data.demo.sources import (
    DemoSources,
    asterisk_files,
    check_sources,
    hedgewars_files,
    source_folders,
    ufoai_files,
)
from audioscale.data.demo.summary import DemoSummary, print_summary, summarize
from audioscale.data.demo.tasks import (
    plan_instrument_family,
    plan_lang_id,
    plan_pitch,
    plan_sfx,
    plan_speaker_id,
    plan_spoken_digit,
)
from audioscale.data.manifest import load_pool, load_task, write_manifest
from audioscale.data.synth import SoundfontRenderer
from audioscale.data.taskwrite import write_task_files
from audioscale.errors import AudioscaleError, DataError
from audioscale.utils import atomic_save_json


def make_plan(
    sources: DemoSources, size: str, seed: int, synth: SoundfontRenderer | None = None
) -> tuple[RenderPlan, SoundfontRenderer]:
    """Everything the build will write, decided from metadata only (deterministic)."""
    spec = SIZES[size]
    langs, voices, problems = check_sources(sources)
    plan = RenderPlan(problems=list(problems), read_from=source_folders(sources, langs))
    synth = synth or SoundfontRenderer(sources.sf2)
    real = {
        "asterisk": asterisk_files(sources, langs, plan.problems),
        "hedgewars": hedgewars_files(sources, voices, plan.problems),
        "ufoai": ufoai_files(sources, plan.problems),
    }
    plan_lang_id(plan, real["asterisk"], spec, seed)
    plan_speaker_id(plan, real["hedgewars"], spec, seed)
    plan_spoken_digit(plan, spec, seed)
    plan_instrument_family(plan, synth, spec, seed)
    plan_pitch(plan, synth, spec, seed)
    plan_sfx(plan, real["ufoai"], spec, seed)
    plan_pool(plan, real, synth, spec, seed)
    return plan, synth


TASK_COLUMNS = ["path", "label", "split", "group", "duration", "sha1", "origin"]
POOL_COLUMNS = ["path", "duration", "source", "split", "origin", "sha1"]


def _write_outputs(out: Path, rows: dict[str, list[dict]]) -> None:
    for task in DEMO_TASKS:
        m = f"tasks/{task}"
        task_rows = sorted(rows.get(m, []), key=lambda r: r["path"])
        if not task_rows:
            raise DataError(f"demo task {task}: no clip could be built (see the problems above)")
        meta = {
            "name": task,
            "domain": TASK_DOMAINS[task],
            "metric": "accuracy",
            "multilabel": False,
            "description": TASK_DESCRIPTIONS[task],
        }
        write_task_files(out / m, task_rows, TASK_COLUMNS, meta)
    pool_rows = sorted(rows.get("pool", []), key=lambda r: r["path"])
    write_manifest(out / "pool" / "manifest.csv", pool_rows, POOL_COLUMNS)


def _remove_orphans(out: Path, rows: dict[str, list[dict]]) -> int:
    """Delete wav files under our audio folders that no manifest lists (old seeds/sizes)."""
    keep = {os.path.normpath(r["path"]) for rs in rows.values() for r in rs}
    removed = 0
    for m in ["pool"] + [f"tasks/{t}" for t in DEMO_TASKS]:
        audio = out / m / "audio"
        if not audio.is_dir():
            continue
        for p in audio.rglob("*"):
            if p.is_file() and (p.suffix == ".wav" or p.name.endswith(".tmp")):
                if os.path.normpath(str(p)) not in keep:
                    p.unlink()
                    removed += 1
    return removed


def build_demo(
    out: str | Path = "data/demo",
    size: str = "small",
    seed: int = 0,
    progress: bool = True,
    sources: DemoSources | None = None,
    workers: int | None = None,
) -> DemoSummary:
    """Build (or refresh) the demo corpus under ``out``; returns its DemoSummary.

    ``size``: ``small`` (~100 clips per task, a few minutes of pool, for tests) or
    ``full`` (195-1,504 clips per task, 5-fold or with large test splits; >= 3.25 h of
    pool). Deterministic for a seed.
    Writes ``out/tasks/<task>/{manifest.csv,task.yaml,audio/}``, ``out/pool/{manifest.csv,
    audio/}`` and ``out/summary.json``.
    """
    if size not in SIZES:
        raise DataError(f"demo size {size!r} is not one of {sorted(SIZES)}")
    t0 = time.time()
    out = Path(out).resolve()
    plan, synth = make_plan(sources or DemoSources(), size, seed)
    workers = workers or min(4, max(2, os.cpu_count() or 2))
    rows, reused, rendered = execute(plan, out, synth, progress, workers)
    _write_outputs(out, rows)
    summary = summarize(out, rows, size, seed)
    summary.reused, summary.rendered = reused, rendered
    summary.removed = _remove_orphans(out, rows)
    summary.problems = plan.problems
    summary.read_from = plan.read_from
    summary.wall_s = round(time.time() - t0, 2)
    atomic_save_json(out / "summary.json", summary.to_dict())
    if progress:
        print_summary(summary)
    return summary


def validate_demo(out: str | Path) -> list[str]:
    """Problems that make a built demo folder unusable (empty list: fine)."""
    out = Path(out)
    problems = []
    for task in DEMO_TASKS:
        try:
            t = load_task(out / "tasks" / task)
            problems += [
                f"{task}: missing {r['path']}" for r in t.rows if not os.path.isfile(r["path"])
            ]
        except AudioscaleError as e:
            problems.append(str(e))
    try:
        rows = load_pool(out / "pool")
        problems += [f"pool: missing {r['path']}" for r in rows if not os.path.isfile(r["path"])]
    except AudioscaleError as e:
        problems.append(str(e))
    return problems


def ensure_demo(
    out: str | Path = "data/demo", size: str = "small", seed: int = 0, progress: bool = True
) -> DemoSummary:
    """The demo corpus at ``out``: reuse a complete build of this size and seed, else build."""
    path = Path(out) / "summary.json"
    if path.is_file():
        try:
            summary = DemoSummary.from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError):
            summary = None
        if summary and summary.size == size and summary.seed == seed and not validate_demo(out):
            summary.out = str(Path(out).resolve())  # the folder may have been moved or copied
            return summary
    return build_demo(out, size=size, seed=seed, progress=progress)
