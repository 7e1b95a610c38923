"""Rendering: each planned job → 16 kHz mono 16-bit wav, reused when its sha1 matches."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from audioscale.audio.io import load_audio
from audioscale.data.demo.plan import POOL_PIECE, SILENT_PEAK, SR, RenderJob, RenderPlan
from audioscale.data.manifest import read_manifest
from audioscale.data.synth import SoundfontRenderer, espeak
from audioscale.data.taskwrite import encode_wav
from audioscale.errors import AudioscaleError
from audioscale.utils import atomic_path, progress_bar, sha1_file


def render(job: RenderJob, synth: SoundfontRenderer) -> np.ndarray:
    """The float32 16 kHz mono samples of one job."""
    s = job.spec
    if job.kind == "file":
        return load_audio(
            s["read"], SR, max_seconds=s["max_seconds"], offset_seconds=s.get("offset", 0.0)
        )
    if job.kind == "concat":
        gap = np.zeros(int(round(s["gap"] * SR)), np.float32)
        parts = []
        for p in s["read"]:
            parts += [load_audio(p, SR, max_seconds=POOL_PIECE), gap]
        return np.concatenate(parts[:-1])
    if job.kind == "espeak":
        return espeak(s["text"], s["voice"], s["speed"], s["pitch"], SR)
    if job.kind == "notes":
        return synth.render(s["program"], [tuple(e) for e in s["events"]], s["seconds"])
    raise ValueError(f"unknown job kind {job.kind}")


def wav_bytes(x: np.ndarray) -> bytes:
    """16-bit PCM mono wav at 16 kHz (samples clipped to [-1, 1))."""
    return encode_wav(x, SR, overflow="clip")


def _write(path: Path, data: bytes) -> None:
    """tmp + rename (no fsync: clips are regenerable and verified by sha1 on reuse)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _run_job(job: RenderJob, out: Path, synth: SoundfontRenderer) -> tuple[dict | None, str | None]:
    try:
        x = render(job, synth)
    except AudioscaleError as e:
        return None, f"skipped {job.dest}: {e}"
    if len(x) == 0 or not np.isfinite(x).all() or float(np.abs(x).max()) < SILENT_PEAK:
        return None, f"skipped {job.dest}: silent or empty output"
    data = wav_bytes(x)
    _write(out / job.dest, data)
    sha = hashlib.sha1(data).hexdigest()
    return {"duration": round(len(x) / SR, 4), "sha1": sha}, None


def _old_rows(out: Path, manifests: set[str]) -> dict[str, dict]:
    """Existing manifest rows by absolute path (unreadable manifests are ignored)."""
    old = {}
    for m in manifests:
        try:
            for r in read_manifest(out / m / "manifest.csv"):
                old[os.path.normpath(r["path"])] = r
        except AudioscaleError:
            continue
    return old


def _reusable(path: Path, old: dict | None) -> bool:
    return bool(old and old.get("sha1") and path.is_file() and sha1_file(path) == old["sha1"])


def execute(
    plan: RenderPlan, out: Path, synth: SoundfontRenderer, progress: bool, workers: int = 2
) -> tuple[dict[str, list[dict]], int, int]:
    """Render (or reuse) every job; returns rows per manifest, reused and rendered counts."""
    old = _old_rows(out, {j.manifest for j in plan.jobs})
    results: list[dict | None] = [None] * len(plan.jobs)
    todo, reused = [], 0
    for i, job in enumerate(plan.jobs):
        prev = old.get(os.path.normpath(str(out / job.dest)))
        if _reusable(out / job.dest, prev):
            results[i] = {"duration": prev["duration"], "sha1": prev["sha1"]}
            reused += 1
        else:
            todo.append(i)
    with progress_bar("demo corpus", progress) as bar, ThreadPoolExecutor(workers) as ex:
        task = bar.add_task("", total=len(todo))
        for i, (res, problem) in zip(
            todo, ex.map(lambda i: _run_job(plan.jobs[i], out, synth), todo), strict=True
        ):
            results[i] = res
            if problem:
                plan.problems.append(problem)
            bar.advance(task)
    rows: dict[str, list[dict]] = {}
    for job, res in zip(plan.jobs, results, strict=True):
        if res is not None:
            row = {"path": str(out / job.dest), **job.row, **res}
            rows.setdefault(job.manifest, []).append(row)
    rendered = sum(1 for i in todo if results[i] is not None)
    return rows, reused, rendered
