"""Sweeps: expand → execute (resumable) → export.

``run_sweep`` is what ``audioscale sweep`` calls (``audioscale.study.run_study``, one
level up, composes it with the fits and the report). It is idempotent: run it again on
the same folder and finished runs are skipped, unfinished ones resume from their
checkpoints and stage markers, and (with ``retry_failed``) failed ones run again.

Choices:
- Every run of the spec is validated before any work; then the eval pool is built once
  (so a missing pool or task fails before any training).
- Done runs whose final checkpoint fails its recorded sha256 are pending again: they
  write it again from their training state (``sweep.run.corrupt_finals``).
- One sweep at a time per study folder (an exclusive ``flock`` on ``.sweep.lock``); runs
  left 'running' by a killed sweep are put back to pending at start.
- Trained runs are ordered by an estimate of their cost, largest first (longest-
  processing-time-first packing keeps both workers busy to the end; WSD branches of one
  trunk together, shortest first), baselines last (``sweep.cost``). The training cost
  (trunk and branch steps beside the from-scratch cost) is printed at the start and
  kept in the store's meta as ``training_cost``.
- The study folder gets a copy of the spec (``sweep.yaml``) and, at the end, the
  exports ``results.csv`` / ``results.parquet``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from audioscale.errors import AudioscaleError, ConfigError
from audioscale.sweep.cost import describe_cost, order_jobs, short_cost, sweep_cost
from audioscale.sweep.spec import TRAINED_KINDS, Job, Sweep, attach_trunks, load_sweep
from audioscale.sweep.store import Store
from audioscale.utils import atomic_write_text, progress_bar

STUDY_PRESETS = ("demo", "unify", "gpu", "gpu-hour")


def preset_path(name: str) -> Path:
    """Path of a packaged preset (``presets/<name>.yaml``)."""
    ref = resources.files("audioscale") / "presets" / f"{name}.yaml"
    return Path(str(ref))


def resolve_source(source: str | Path) -> Path:
    """A preset name or a sweep YAML file."""
    if str(source) in STUDY_PRESETS:
        return preset_path(str(source))
    path = Path(source)
    if not path.is_file():
        names = ", ".join(STUDY_PRESETS)
        raise ConfigError(str(source), f"no such sweep file (or preset: {names})")
    return path


@contextmanager
def study_lock(study_dir: Path) -> Iterator[None]:
    if study_dir.exists() and not study_dir.is_dir():
        raise ConfigError("--out", f"{study_dir} is a file, not a study folder")
    study_dir.mkdir(parents=True, exist_ok=True)
    path = study_dir / ".sweep.lock"
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            other = f.read().strip() or "?"
            raise AudioscaleError(
                f"{study_dir}: another sweep is running on this study (pid {other})"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        yield


def _progress(total: int, enabled: bool, note: str = ""):
    bar = progress_bar("sweep", enabled, transient=False)
    task = bar.add_task(note, total=total)

    def on_done(job: Job, ok: bool, reason: str) -> None:
        if enabled:
            line = f"done   {job.run_id}" if ok else f"FAILED {job.run_id}: {reason}"
            bar.console.print(line, markup=False, highlight=False)
        bar.advance(task)

    return bar, on_done


def run_sweep(
    source: str | Path | dict,
    out: str | Path,
    executor: str | None = None,
    workers: int | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    address: str | None = None,
    job_fn: Callable | None = None,
    extra_jobs: list[Job] | None = None,
    threads_per_worker: int | None = None,
) -> dict[str, Any]:
    """Execute a sweep into study folder ``out``; returns ``Store.status()`` plus exports.
    ``extra_jobs`` (the study's verification run) join the spec's jobs for this sweep;
    ``threads_per_worker`` overrides the spec's ``study.threads_per_worker``."""
    from audioscale.evaluate.context import build_eval_context
    from audioscale.sweep.run import run_job

    sweep = load_sweep(source)
    if extra_jobs:
        known = {j.run_id for j in sweep.jobs}
        sweep.jobs += [j for j in extra_jobs if j.run_id not in known]
    s = sweep.settings
    if threads_per_worker is not None:
        s = s.model_copy(update={"threads_per_worker": threads_per_worker})
    executor = executor or s.executor
    workers = workers or s.workers
    if workers < 1:
        raise ConfigError("--workers", "must be at least 1")
    study_dir = Path(out)
    sweep = dataclasses.replace(sweep, jobs=attach_trunks(apply_tuned_lr(sweep, study_dir).jobs))
    cost = sweep_cost(sweep.jobs)
    with study_lock(study_dir):
        ctx = build_eval_context(
            sweep.base, s.eval_pool, s.eval_split, s.eval_include_tasks,
            cache_dir=study_dir / "cache" / "embeddings",
        )  # fmt: skip
        save_spec(sweep, source, study_dir)
        with Store(study_dir / "study.db") as store:
            store.add_runs(sweep.jobs)
            store.reset(("running", "failed") if retry_failed else ("running",))
            requeue_done(store, sweep, study_dir / "runs", ctx)
            store.set_meta(
                name=sweep.name, workers=workers, executor=executor, eval_pool=ctx.pool_name,
                eval_pool_n=len(ctx.pool_rows), tasks=ctx.task_dirs, spec_hash=sweep.spec_hash(),
                spec_runs=[j.run_id for j in sweep.jobs] + kept_verify_runs(store, sweep),
                started=time.time(), training_cost=describe_cost(cost),
            )  # fmt: skip
            status = {r["run_id"]: r["status"] for r in store.runs()}
            todo = [j for j in sweep.jobs if status.get(j.run_id) == "pending"]
            todo = order_jobs(todo)
            if progress and todo:
                print(f"audioscale: {sweep.name}: {describe_cost(cost)}", file=sys.stderr)
            execute(todo, study_dir, store, ctx, job_fn or run_job, executor, workers, s,
                    address, progress, short_cost(cost))  # fmt: skip
            summary = store.status(workers)
            summary["exports"] = {k: str(v) for k, v in store.export(study_dir).items()}
    summary["study_dir"] = str(study_dir)
    summary["sweep_runs"] = len(sweep.jobs)
    return summary


def requeue_done(store: Store, sweep: Sweep, runs_dir: Path, ctx: Any) -> None:
    """Put done runs back to pending when they were measured on another pool or task set
    than ``ctx`` (evaluated again) or their final checkpoint fails its digest (repaired)."""
    from audioscale.evaluate.keys import stale_runs
    from audioscale.sweep.run import corrupt_finals

    done = {r["run_id"] for r in store.runs("done")}
    done = [j.run_id for j in sweep.jobs if j.run_id in done]
    store.mark_pending(stale_runs(done, runs_dir, ctx))
    store.mark_pending(corrupt_finals(done, runs_dir))


def kept_verify_runs(store: Store, sweep: Sweep) -> list[str]:
    """Finished verification runs stay in the study's results after a sweep that does not
    list them (a plain ``sweep`` or ``study --no-verify`` on a verified study)."""
    listed = {j.run_id for j in sweep.jobs}
    done = store.runs("done")
    return [r["run_id"] for r in done if r["kind"] == "verify" and r["run_id"] not in listed]


def tune_file(study_dir: Path) -> Path | None:
    """The study's learning-rate calibration: STUDY/tune.json or STUDY/tune/tune.json
    (``audioscale tune --out STUDY/tune``), else None."""
    for p in (study_dir / "tune.json", study_dir / "tune" / "tune.json"):
        if p.is_file():
            return p
    return None


def apply_tuned_lr(sweep: Sweep, study_dir: Path) -> Sweep:
    """Trained runs that leave ``train.lr`` to the recipe rule take the study's tuned lr
    instead (``audioscale.train.tune.load_tuned_lr``: the size's pick, else the fitted
    ``c·width^-k``); the lr becomes part of their config, hence of their run ids."""
    path = tune_file(study_dir)
    if path is None:
        return sweep
    from audioscale.sweep.spec import run_id
    from audioscale.train.tune import load_tuned_lr, read_tune

    tuned = read_tune(path)
    jobs = []
    for job in sweep.jobs:
        cfg = job.config
        lr = None
        if job.kind in TRAINED_KINDS and cfg.train.lr is None:
            lr = load_tuned_lr(tuned, cfg.model, cfg.train.batch_size, cfg.frontend)
        if lr is not None:
            cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"lr": lr})})
            job = Job(run_id(cfg), job.kind, cfg)
        jobs.append(job)
    return dataclasses.replace(sweep, jobs=jobs)


def execute(todo, study_dir, store, ctx, job_fn, executor, workers, s, address, progress,
            note=""):  # fmt: skip
    bar, on_done = _progress(len(todo), progress, note)
    with bar:
        if executor == "ray":
            from audioscale.sweep.ray_executor import run_ray

            run_ray(todo, study_dir, store, ctx, job_fn, workers, s.threads_per_worker,
                    s.gpus_per_run, s.max_retries, address, on_done)  # fmt: skip
        elif executor == "local":
            from audioscale.sweep.local import run_local

            run_local(todo, study_dir, store, ctx, job_fn, workers, s.threads_per_worker,
                      on_done)  # fmt: skip
        elif executor == "inline":
            from audioscale.sweep.local import run_inline

            run_inline(todo, study_dir, store, ctx, job_fn, on_done)
        else:
            raise ConfigError(
                "--executor", f"unknown executor {executor!r}; use local, ray or inline"
            )


def save_spec(sweep: Sweep, source: str | Path | dict, study_dir: Path) -> None:
    if isinstance(source, dict):
        text = yaml.safe_dump(source, sort_keys=False)
    else:
        text = Path(source).read_text(encoding="utf-8")
    atomic_write_text(study_dir / "sweep.yaml", text)


def study_status(study_dir: str | Path) -> dict[str, Any]:
    path = Path(study_dir) / "study.db"
    if not path.is_file():
        raise AudioscaleError(f"{study_dir}: no study.db here (not a study folder)")
    with Store(path) as store:
        return store.status()
