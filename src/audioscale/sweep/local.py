"""Local executor: ``workers`` long-lived worker processes, one run at a time each.

Choices:
- Workers are spawned (not forked) once and reused: importing torch and the stages
  costs seconds per process (more on a loaded machine), too much to pay per run. A
  worker that dies (segfault, OOM kill) fails its run with the exit signal as the
  reason and is replaced by a fresh one; the sweep goes on.
- Workers are created from the parent's main thread and ask Linux to SIGKILL them when
  the parent dies (``PR_SET_PDEATHSIG``), so a ``kill -9`` of the sweep leaves no orphan
  writing into a run folder that the restarted sweep is about to resume.
- Each worker sets its torch threads (one by default on CPU: two one-thread workers beat
  one two-thread worker, bench/RESULTS.md); on a GPU machine worker slot i sees GPU
  ``i % n_gpus`` only (``CUDA_VISIBLE_DEVICES``).
- Only the parent writes the store: a worker writes ``result.json`` (or ``error.json``)
  in the run folder and sends ``("ok" | "failed", fault)``; the parent records what it
  finds. A failed run gets its one-line reason and the sweep goes on; a run stopped by an
  OS fault (``fault``: the one-line ``StorageError``, e.g. a full disk) stops the sweep
  with that line, the run back to pending.
- Workers ignore SIGINT and SIGTERM: a Ctrl-C reaches the whole process group, and only
  the parent decides (it kills its workers and puts their runs back to pending).
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from audioscale.errors import AudioscaleError, StorageError, storage_error
from audioscale.sweep.cost import trunk_of
from audioscale.sweep.store import Store

JobFn = Callable[..., Any]


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: orphans finish their run and exit
        pass


def set_threads(threads: int) -> None:
    """Torch threads of this process: the env vars rule a torch imported later (a fresh
    worker imports it only when a run needs it); a torch already imported is set now."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _worker_loop(conn: Any, job_fn: JobFn, threads: int, gpu: str | None) -> None:
    _die_with_parent()
    # Ctrl-C reaches the whole process group: the parent alone decides (it kills us), so
    # a run is never recorded as failed because it was interrupted
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    set_threads(threads)
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        job, run_dir, ctx = msg
        try:
            job_fn(job, run_dir, ctx)
            conn.send(("ok", None))
        except BaseException as e:  # the reason is in run_dir/error.json (run_job writes it)
            fault = storage_error(e)
            conn.send(("failed", fault and (fault.path, fault.reason, fault.advice)))


@contextmanager
def _stop_signals_ignored_by_children() -> Iterator[None]:
    """Start children with SIGINT and SIGTERM ignored (a disposition that survives fork
    and exec, and Python then installs no KeyboardInterrupt handler): a Ctrl-C while a
    worker still imports, before ``_worker_loop`` ignores it, killed it with a traceback
    on the terminal. This process holds (blocks) them meanwhile and gets them after."""
    stop = {signal.SIGINT, signal.SIGTERM}
    outside = any(signal.getsignal(s) is None for s in stop)  # a handler set outside Python
    if outside or threading.current_thread() is not threading.main_thread():
        yield  # only the main thread sets handlers (and gets the signals)
        return
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    old = {s: signal.signal(s, signal.SIG_IGN) for s in stop}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)  # a held one arrives now


class Worker:
    """One worker process and the job it holds."""

    def __init__(self, spawn: Any, job_fn: JobFn, threads: int, gpu: str | None):
        self.conn, child = spawn.Pipe()
        args = (child, job_fn, threads, gpu)
        self.proc = spawn.Process(target=_worker_loop, args=args, daemon=True)
        with _stop_signals_ignored_by_children():
            self.proc.start()
        child.close()
        self.job: Any = None
        self.t0 = 0.0

    def give(self, job: Any, run_dir: str, ctx: Any) -> None:
        self.job, self.t0 = job, time.time()
        self.conn.send((job, run_dir, ctx))

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        else:
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        self.proc.join(timeout=None if kill else 30)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def gpu_ids() -> list[str]:
    """GPUs this process may use, without importing torch in the parent (an import costs
    seconds): the ids in ``CUDA_VISIBLE_DEVICES`` when set, else the driver's device list."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    gpus = Path("/proc/driver/nvidia/gpus")
    return [str(i) for i in range(len(list(gpus.iterdir())))] if gpus.is_dir() else []


def read_outcome(job: Any, run_dir: Path, exitcode: int | None) -> tuple[dict | None, str]:
    """(result, "") for a finished run, else (None, one-line reason)."""
    result_path = run_dir / "result.json"
    if exitcode == 0 and result_path.is_file():
        result = json.loads(result_path.read_text())
        if result.get("run_id") == job.run_id:
            return result, ""
    err = run_dir / "error.json"
    if err.is_file():
        return None, json.loads(err.read_text()).get("error", "failed")
    if exitcode is not None and exitcode < 0:
        return None, f"worker killed by signal {-exitcode}"
    return None, f"worker exited with code {exitcode} and no result"


def record_outcome(store: Store, job: Any, result: dict | None, reason: str, wall: float) -> bool:
    if result is None:
        store.mark_failed(job.run_id, reason, wall)
        return False
    store.record(result, wall_s=result.get("info", {}).get("wall_s", wall))
    return True


def run_local(
    jobs: list[Any],
    study_dir: str | Path,
    store: Store,
    ctx: Any,
    job_fn: JobFn,
    workers: int = 1,
    threads: int = 1,
    on_done: Callable[[Any, bool, str], None] | None = None,
) -> None:
    """Run ``jobs`` (pending in ``store``) on up to ``workers`` worker processes."""
    runs_dir = Path(study_dir) / "runs"
    gpus = gpu_ids()
    spawn = mp.get_context("spawn")
    queue = list(jobs)
    slots = min(workers, len(queue))

    def new_worker(slot: int) -> Worker:
        return Worker(spawn, job_fn, threads, gpus[slot % len(gpus)] if gpus else None)

    pool = [new_worker(i) for i in range(slots)]
    try:
        while queue or any(w.job for w in pool):
            for w in pool:
                if w.job is None and queue:
                    job = queue.pop(next_job(queue, [w.job for w in pool if w.job]))
                    store.mark_running(job.run_id, w.proc.pid)
                    w.give(job, str(runs_dir / job.run_id), ctx)
            busy = [w for w in pool if w.job is not None]
            wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=1.0)
            for i, w in enumerate(pool):
                if w.job is None:
                    continue
                if w.conn.poll():
                    try:
                        _raise_storage_fault(w.conn.recv())
                        exitcode: int | None = 0
                    except EOFError:
                        w.proc.join()
                        exitcode = w.proc.exitcode
                elif not w.proc.is_alive():
                    exitcode = w.proc.exitcode
                else:
                    continue
                job, wall = w.job, time.time() - w.t0
                w.job = None
                result, reason = read_outcome(job, runs_dir / job.run_id, exitcode)
                ok = record_outcome(store, job, result, reason, wall)
                if on_done:
                    on_done(job, ok, reason)
                if not w.proc.is_alive() or exitcode != 0:
                    w.stop(kill=True)
                    pool[i] = new_worker(i)
    except BaseException:
        for w in pool:
            w.stop(kill=True)
        _reset_running(store)
        raise
    for w in pool:
        w.stop()


def next_job(queue: list[Any], running: list[Any]) -> int:
    """The index of the job to start: the first whose WSD trunk no running job is
    using (it would wait on the trunk's lock), else the first (``sweep.cost``)."""
    busy = {trunk_of(j) for j in running} - {None}
    return next((i for i, j in enumerate(queue) if trunk_of(j) not in busy), 0)


def _raise_storage_fault(msg: Any) -> None:
    """A worker's run stopped on an OS fault (disk full, ...): the sweep stops with its
    one line, and the run goes back to pending (never 'failed': nothing was wrong with it)."""
    if isinstance(msg, tuple) and msg[1]:
        raise StorageError(*msg[1])


def _reset_running(store: Store) -> None:
    """Runs left 'running' back to pending after a stop; a store that cannot take the
    write (a full disk) is reset by the next sweep's start instead."""
    try:
        store.reset(("running",))
    except AudioscaleError:
        pass


def run_inline(
    jobs: list[Any],
    study_dir: str | Path,
    store: Store,
    ctx: Any,
    job_fn: JobFn,
    on_done: Callable[[Any, bool, str], None] | None = None,
) -> None:
    """Run ``jobs`` one after another in this process (``--executor inline``: for
    debugging, and for the fault-injection test, which runs hundreds of tiny sweeps). A
    failed run is recorded as the local executor records it; an OS fault or an
    interrupt stops the sweep, its run back to pending."""
    runs_dir = Path(study_dir) / "runs"
    try:
        for job in jobs:
            store.mark_running(job.run_id)
            t0, exitcode = time.time(), 0
            try:
                job_fn(job, str(runs_dir / job.run_id), ctx)
            except Exception as e:
                if storage_error(e) is not None:
                    raise
                exitcode = 1
            result, reason = read_outcome(job, runs_dir / job.run_id, exitcode)
            ok = record_outcome(store, job, result, reason, time.time() - t0)
            if on_done:
                on_done(job, ok, reason)
    except BaseException:
        _reset_running(store)
        raise
