"""A whole study: corpus → sweep → fits → verification run → report.

This module sits above every stage it composes (``sweep`` runs the grid, ``scaling``
fits it, ``report`` writes it), so no stage imports another stage after it. ``run_study``
is what ``audioscale study`` calls; like ``sweep.runner.run_sweep`` it is idempotent:
rerun it on the same folder and finished runs are skipped.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audioscale.report import write_report
from audioscale.scaling import fit_study
from audioscale.scaling.schema import typed
from audioscale.sweep.runner import resolve_source, run_sweep
from audioscale.sweep.spec import Job, Sweep, load_sweep, verification_job


def ensure_corpus(sweep: Sweep, progress: bool) -> None:
    """Build the demo corpus first when the spec asks for it (skipped if already built)."""
    size = sweep.settings.demo
    if size is None:
        return
    from audioscale.data.demo import ensure_demo  # the corpus builder: only when asked

    ensure_demo(Path(sweep.settings.demo_dir), size=size, progress=progress)


def run_study(
    source: str | Path,
    out: str | Path | None = None,
    workers: int | None = None,
    executor: str | None = None,
    progress: bool = True,
    job_fn: Callable | None = None,
    verify: bool = True,
    address: str | None = None,
) -> dict[str, Any]:
    """Corpus (if the spec asks) → sweep → fits.json → verification run → report.html.

    When the joint law is fitted and allocates a budget (fits.json ``verification``), the
    allocated configuration is trained as a run of kind ``verify`` (kept out of every
    fit), measured like any run, and the fits are written again with its outcome; the
    spec's ``study.verify: false`` or ``verify=False`` (``--no-verify``) skip it. It trains
    alone, so locally it runs on one worker with all the sweep's threads (``alone``).
    ``address``: the Ray cluster the Ray executor joins (default: ``RAY_ADDRESS``)."""
    path = resolve_source(source)
    sweep = load_sweep(path)  # validate everything before the corpus build
    out = Path(out or Path("studies") / sweep.name)
    t0 = time.time()
    ensure_corpus(sweep, progress)
    run = {"progress": progress, "job_fn": job_fn, "address": address}
    summary = run_sweep(path, out, executor, workers, **run)
    fits = fit_study(out)
    job = verification_run(sweep, fits) if verify and sweep.settings.verify else None
    if job is not None:
        if progress:
            print(f"verification run: {job.run_id}", file=sys.stderr)
        summary = run_sweep(path, out, executor, **alone(sweep, executor, workers), **run,
                            extra_jobs=[job])  # fmt: skip
        fits = fit_study(out)
    report = write_report(out)
    return {
        "study_dir": str(out),
        "report": str(report),
        "fits": str(out / "fits.json"),
        "results_csv": summary["exports"].get("csv"),
        "counts": summary["counts"],
        "failed": summary["failed"],
        # the numbers a study ends with: fits.json's headline (scaling.verdict.headline)
        "headline": headline.to_dict() if (headline := typed(fits).headline) else {},
        "wall_s": time.time() - t0,
    }


def alone(sweep: Sweep, executor: str | None, workers: int | None) -> dict[str, Any]:
    """Workers and threads for a job that trains alone (the verification run): with the
    local executor, one worker with every thread of the sweep's workers (at most the
    machine's cores; steps/s by preset and thread count: bench/RESULTS.md);
    a Ray cluster keeps the sweep's settings (a task asking for more CPUs than one node
    has would never be placed)."""
    s = sweep.settings
    if (executor or s.executor) != "local":
        return {"workers": workers}
    threads = (workers or s.workers) * s.threads_per_worker
    return {"workers": 1, "threads_per_worker": max(1, min(threads, os.cpu_count() or 1))}


def verification_run(sweep: Sweep, fits: dict[str, Any]) -> Job | None:
    """The verify job for fits.json's verification plan, or None when there is none."""
    ver = typed(fits).verification
    run = ver.run if ver else None
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
        if k == "claims":  # the short list: one line per claim, with its interval
            print("claims:", file=file)
            for claim in v or []:
                print(f"  - {claim}", file=file)
            continue
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
