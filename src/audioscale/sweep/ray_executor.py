"""Ray executor: each run is a Ray task with its CPU/GPU needs (``pip install audioscale[ray]``).

Choices:
- ``ray.init(num_cpus=workers)`` starts a local instance, unless an address is given
  (``--ray-address`` or ``RAY_ADDRESS``), then the driver joins that cluster. A Ray we
  started is shut down at the end; one that was already initialised is left alone.
- A task asks for ``threads`` CPUs and ``gpus_per_run`` GPUs; Ray's scheduler then runs
  as many at once as the resources allow.
- Only the driver writes the store. The task returns its result dict (it also writes
  result.json in the run folder, which must sit on storage the driver can read back on
  a restart: a shared filesystem on a cluster).
- A worker process that dies (node lost, OOM-killed, SIGKILL) is retried by Ray up to
  ``max_retries`` times; the run resumes from its last checkpoint and stage markers. A
  Python exception in the run is not retried: it is the run's failure, recorded with its
  one-line reason.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audioscale.errors import AudioscaleError
from audioscale.sweep.store import Store


def _task(job_fn: Callable, job: Any, run_dir: str, ctx: Any, threads: int) -> dict:
    from audioscale.sweep.local import set_threads
    from audioscale.sweep.run import one_line

    set_threads(threads)
    try:
        return {"ok": True, "result": job_fn(job, run_dir, ctx)}
    except Exception as e:
        return {"ok": False, "error": one_line(e)}


def run_ray(
    jobs: list[Any],
    study_dir: str | Path,
    store: Store,
    ctx: Any,
    job_fn: Callable,
    workers: int = 1,
    threads: int = 1,
    gpus_per_run: float = 0.0,
    max_retries: int = 2,
    address: str | None = None,
    on_done: Callable[[Any, bool, str], None] | None = None,
) -> None:
    """Run ``jobs`` as Ray tasks; record each result as it arrives."""
    try:
        import ray
    except ImportError:
        raise AudioscaleError("--executor ray needs Ray: pip install 'audioscale[ray]'") from None
    address = address or os.environ.get("RAY_ADDRESS")
    started = not ray.is_initialized()
    if started:
        kw: dict[str, Any] = {"address": address} if address else {"num_cpus": workers * threads}
        ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR", **kw)
    remote = ray.remote(num_cpus=threads, num_gpus=gpus_per_run, max_retries=max_retries)(_task)
    runs_dir = Path(study_dir) / "runs"
    pending: dict[Any, tuple[Any, float]] = {}
    try:
        for job in jobs:
            store.mark_running(job.run_id)
            ref = remote.remote(job_fn, job, str(runs_dir / job.run_id), ctx, threads)
            pending[ref] = (job, time.time())
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                job, t0 = pending.pop(ref)
                ok, reason = _collect(ray, ref, job, store, time.time() - t0)
                if on_done:
                    on_done(job, ok, reason)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        store.reset(("running",))
        raise
    finally:
        if started:
            ray.shutdown()


def _collect(ray: Any, ref: Any, job: Any, store: Store, wall: float) -> tuple[bool, str]:
    try:
        out = ray.get(ref)
    except ray.exceptions.RayError as e:  # worker lost more than max_retries times
        reason = f"ray worker lost: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        store.mark_failed(job.run_id, reason, wall)
        return False, reason
    if not out["ok"]:
        store.mark_failed(job.run_id, out["error"], wall)
        return False, out["error"]
    result = out["result"]
    store.record(result, wall_s=result.get("info", {}).get("wall_s", wall))
    return True, ""
