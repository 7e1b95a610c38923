"""Sweeps and studies: expand → execute (resumable) → export; study = sweep → fit → report.

``run_sweep`` is what ``audioscale sweep`` calls; ``run_study`` is ``audioscale study``.
Both are idempotent: run them again on the same folder and finished runs are skipped,
unfinished ones resume from their checkpoints and stage markers, and (with
``retry_failed``) failed ones run again.

Choices:
- Every run of the spec is validated before any work; then the eval pool is built once
  (so a missing pool or task fails before any training).
- One sweep at a time per study folder (an exclusive ``flock`` on ``.sweep.lock``); runs
  left 'running' by a killed sweep are put back to pending at start.
- Trained runs are ordered by an estimate of their cost, largest first (longest-
  processing-time-first packing keeps both workers busy to the end); baselines last.
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

from audioscale.audio.frames import frames_for_seconds
from audioscale.errors import AudioscaleError, ConfigError
from audioscale.sweep.spec import TRAINED_KINDS, Job, Sweep, load_sweep, verification_job
from audioscale.sweep.store import Store
from audioscale.utils import atomic_write_text, progress_bar

PRESETS = ("demo", "unify", "gpu", "gpu-hour")


def preset_path(name: str) -> Path:
    """Path of a packaged preset (``presets/<name>.yaml``)."""
    ref = resources.files("audioscale") / "presets" / f"{name}.yaml"
    return Path(str(ref))


def resolve_source(source: str | Path) -> Path:
    """A preset name or a sweep YAML file."""
    if str(source) in PRESETS:
        return preset_path(str(source))
    path = Path(source)
    if not path.is_file():
        names = ", ".join(PRESETS)
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


def _ladder() -> Any:
    """The size ladder module. ``audioscale.models`` loads its torch-backed names
    lazily, so this import keeps torch (seconds) out of the sweep's parent process."""
    from audioscale.models import ladder

    return ladder


def job_cost(job: Job, ladder: Any = None) -> float:
    """Rough training FLOPs of a job (for ordering only; baselines 0): examples seen, from
    the run's budget as the trainer reads it (``TrainConfig.budget().steps``), times a
    FLOPs-per-example estimate, so a FLOPs budget costs about its FLOPs. The estimate,
    ``6 · (4 + 2 · mlp_ratio) · d² · tokens`` per block (encoder on the visible tokens,
    decoder on all; attention scores and the patch projection left out), needs no torch."""
    if job.kind not in TRAINED_KINDS:
        return 0.0
    try:
        m = (ladder or _ladder()).resolve(job.config.model)
    except AudioscaleError:
        return 0.0
    cfg = job.config
    fe = cfg.frontend
    frames = frames_for_seconds(cfg.data.clip_seconds, fe)
    tokens = frames // 4 if m.patch == "time" else (frames // 16) * (fe.n_mels // 16)
    tokens = max(1, tokens)
    visible = max(1, tokens - round(tokens * m.mask_ratio))
    macs = visible * m.width**2 * m.depth + tokens * m.decoder_width**2 * m.decoder_depth
    fpe = 6 * (4 + 2 * m.mlp_ratio) * macs
    b = cfg.train.batch_size
    return cfg.train.budget().steps(b, cfg.data.clip_seconds, fpe) * b * fpe


def _progress(total: int, enabled: bool):
    bar = progress_bar("sweep", enabled, transient=False)
    task = bar.add_task("", total=total)

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
) -> dict[str, Any]:
    """Execute a sweep into study folder ``out``; returns ``Store.status()`` plus exports.
    ``extra_jobs`` (the study's verification run) join the spec's jobs for this sweep."""
    from audioscale.sweep.run import build_eval_context, run_job, stale_runs

    sweep = load_sweep(source)
    if extra_jobs:
        known = {j.run_id for j in sweep.jobs}
        sweep.jobs += [j for j in extra_jobs if j.run_id not in known]
    s = sweep.settings
    executor = executor or s.executor
    workers = workers or s.workers
    if workers < 1:
        raise ConfigError("--workers", "must be at least 1")
    study_dir = Path(out)
    sweep = apply_tuned_lr(sweep, study_dir)
    with study_lock(study_dir):
        ctx = build_eval_context(
            sweep.base, s.eval_pool, s.eval_split, s.eval_include_tasks,
            cache_dir=study_dir / "cache" / "embeddings",
        )  # fmt: skip
        save_spec(sweep, source, study_dir)
        with Store(study_dir / "study.db") as store:
            store.add_runs(sweep.jobs)
            store.reset(("running", "failed") if retry_failed else ("running",))
            # done runs measured on another pool / task set than this one's: evaluate again
            done = {r["run_id"] for r in store.runs("done")}
            done = [j.run_id for j in sweep.jobs if j.run_id in done]
            store.mark_pending(stale_runs(done, study_dir / "runs", ctx))
            store.set_meta(
                name=sweep.name, workers=workers, executor=executor, eval_pool=ctx.pool_name,
                eval_pool_n=len(ctx.pool_rows), tasks=ctx.task_dirs, spec_hash=sweep.spec_hash(),
                spec_runs=[j.run_id for j in sweep.jobs] + kept_verify_runs(store, sweep),
                started=time.time(),
            )  # fmt: skip
            status = {r["run_id"]: r["status"] for r in store.runs()}
            todo = [j for j in sweep.jobs if status.get(j.run_id) == "pending"]
            ladder = _ladder()
            todo.sort(key=lambda j: (j.kind not in TRAINED_KINDS, -job_cost(j, ladder)))
            execute(todo, study_dir, store, ctx, job_fn or run_job, executor, workers, s,
                    address, progress)  # fmt: skip
            summary = store.status(workers)
            summary["exports"] = {k: str(v) for k, v in store.export(study_dir).items()}
    summary["study_dir"] = str(study_dir)
    summary["sweep_runs"] = len(sweep.jobs)
    return summary


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
            lr = load_tuned_lr(tuned, cfg.model, cfg.train.batch_size)
        if lr is not None:
            cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"lr": lr})})
            job = Job(run_id(cfg), job.kind, cfg)
        jobs.append(job)
    return dataclasses.replace(sweep, jobs=jobs)


def execute(todo, study_dir, store, ctx, job_fn, executor, workers, s, address, progress):
    bar, on_done = _progress(len(todo), progress)
    with bar:
        if executor == "ray":
            from audioscale.sweep.ray_executor import run_ray

            run_ray(todo, study_dir, store, ctx, job_fn, workers, s.threads_per_worker,
                    s.gpus_per_run, s.max_retries, address, on_done)  # fmt: skip
        elif executor == "local":
            from audioscale.sweep.local import run_local

            run_local(todo, study_dir, store, ctx, job_fn, workers, s.threads_per_worker,
                      on_done)  # fmt: skip
        else:
            raise ConfigError("--executor", f"unknown executor {executor!r}; use local or ray")


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


# --------------------------------------------------------------------------- study


def ensure_corpus(sweep: Sweep, progress: bool) -> None:
    """Build the demo corpus first when the spec asks for it (skipped if already built)."""
    size = sweep.settings.demo
    if size is None:
        return
    from audioscale.data import demo

    out = Path(sweep.settings.demo_dir)
    if hasattr(demo, "ensure_demo"):
        demo.ensure_demo(out, size=size, progress=progress)
    elif not (out / "pool" / "manifest.csv").is_file():
        demo.build_demo(out, size=size, seed=0, progress=progress)


def run_study(
    source: str | Path,
    out: str | Path | None = None,
    workers: int | None = None,
    executor: str | None = None,
    progress: bool = True,
    job_fn: Callable | None = None,
    verify: bool = True,
) -> dict[str, Any]:
    """Corpus (if the spec asks) → sweep → fits.json → verification run → report.html.

    When the joint law is fitted and allocates a budget (fits.json ``verification``), the
    allocated configuration is trained as a run of kind ``verify`` (kept out of every
    fit), measured like any run, and the fits are written again with its outcome; the
    spec's ``study.verify: false`` or ``verify=False`` (``--no-verify``) skip it."""
    path = resolve_source(source)
    sweep = load_sweep(path)  # validate everything before the corpus build
    out = Path(out or Path("studies") / sweep.name)
    t0 = time.time()
    ensure_corpus(sweep, progress)
    summary = run_sweep(path, out, executor, workers, progress=progress, job_fn=job_fn)
    from audioscale.report import write_report
    from audioscale.scaling import fit_study

    fits = fit_study(out)
    job = verification_run(sweep, fits) if verify and sweep.settings.verify else None
    if job is not None:
        if progress:
            print(f"verification run: {job.run_id}", file=sys.stderr)
        summary = run_sweep(
            path, out, executor, workers, progress=progress, job_fn=job_fn, extra_jobs=[job]
        )
        fits = fit_study(out)
    report = write_report(out)
    return {
        "study_dir": str(out),
        "report": str(report),
        "fits": str(out / "fits.json"),
        "results_csv": summary["exports"].get("csv"),
        "counts": summary["counts"],
        "failed": summary["failed"],
        # the numbers a study ends with: fits.json's headline (scaling.study_fits.headline)
        "headline": dict(fits.get("headline") or {}),
        "wall_s": time.time() - t0,
    }


def verification_run(sweep: Sweep, fits: dict[str, Any]) -> Job | None:
    """The verify job for fits.json's verification plan, or None when there is none."""
    run = (fits.get("verification") or {}).get("run")
    if not run:
        return None
    return verification_job(sweep, run["preset"], run["steps"])


def print_headline(result: dict[str, Any], file: Any = None) -> None:
    """Where the report is and the headline numbers (stdout by default)."""
    file = file or sys.stdout
    print(f"report: {result['report']}", file=file)
    print(f"fits:   {result['fits']}", file=file)
    c = result["counts"]
    print(f"runs:   {c.get('done', 0)} done, {c.get('failed', 0)} failed", file=file)
    for k, v in result["headline"].items():
        print(f"{k}: {_fmt(v)}", file=file)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, dict) and set(v) == {"value", "ci"}:
        if v["value"] is None:
            return "n/a"
        ci = v["ci"]
        return _fmt(v["value"]) + (f" (95% CI {_fmt(ci[0])} to {_fmt(ci[1])})" if ci else "")
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    return str(v)
