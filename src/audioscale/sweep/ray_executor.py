"""Ray executor: each run is a Ray task with its CPU/GPU needs (``pip install audioscale[ray]``).

Choices:
- ``ray.init(num_cpus=workers * threads)`` starts a local instance, unless an address is
  given (``--ray-address``, else ``RAY_ADDRESS``); then the driver joins that cluster, and
  the cluster's resources, not ``--workers``, set how many runs go at once. A Ray we
  started is shut down at the end; one that was already initialised is left alone.
- Joining is checked before Ray is asked to (``check_cluster``): Ray's own failures are
  tracebacks after a minute of C++ retry warnings, so a missing or old Ray, an address
  that does not answer, and a missing, unreadable or rejected auth token each become one
  ``AudioscaleError`` line naming the setting and the fix (the CLI exits 2). ``ray.init``
  itself runs with stderr sent to a temporary file for the same reason; a failure there
  is one line too. While the sweep runs, what the cluster pushes to the driver (a lost
  node's log tail) goes to ``STUDY/ray_driver.log``, one line of it to stderr.
- A task asks for ``threads`` CPUs and ``gpus_per_run`` GPUs; Ray's scheduler then runs
  as many at once as the resources allow.
- Only the driver writes the store. The task returns its result dict (it also writes
  result.json in the run folder, which must sit on storage the driver can read back on
  a restart: a shared filesystem on a cluster).
- Every attempt of a run appends a line to ``RUN_DIR/ray_node.jsonl`` when it starts and
  one when it ends: the node id, node IP, hostname and pid that ran it, and the last
  checkpoint step present (at the start: what a retried attempt resumes from). The
  store's ``runs.host`` / ``pid`` name the driver, which marks the run running; this log
  names where it really ran.
- A worker process that dies (node lost, OOM-killed, SIGKILL) is retried by Ray up to
  ``max_retries`` times; the run resumes from its last checkpoint and stage markers. A
  Python exception in the run is not retried: it is the run's failure, recorded with its
  one-line reason; an OS fault (a full disk, ...) stops the sweep with its one line
  instead, its run back to pending (as the local executor does).
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any

from audioscale.errors import AudioscaleError, StorageError, storage_error
from audioscale.sweep.store import Store

NODE_LOG = "ray_node.jsonl"
RAY_MIN_VERSION = "2.9"  # the floor of the [ray] extra in pyproject.toml (a test keeps them equal)
PROBE_TIMEOUT_S = 5.0
GET_TOKEN = "`ray get-auth-token` on the head prints it"
DRIVER_LOG = "ray_driver.log"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# --------------------------------------------------------------------------- joining


def _version(text: str) -> tuple[int, ...]:
    """(2, 60, 0) from '2.60.0' (a pre-release suffix such as '3.0.0rc1' counts as 3.0.0)."""
    out = []
    for part in text.split(".")[:3]:
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        out.append(int(digits or 0))
    return tuple(out)


def import_ray() -> Any:
    """The ``ray`` module, or one line: Ray is missing, or older than ``RAY_MIN_VERSION``."""
    try:
        import ray
    except ImportError:
        raise AudioscaleError(
            f"--executor ray needs Ray >= {RAY_MIN_VERSION}: pip install 'audioscale[ray]'"
        ) from None
    version = str(getattr(ray, "__version__", "0"))
    if _version(version) < _version(RAY_MIN_VERSION):
        raise AudioscaleError(
            f"--executor ray needs Ray >= {RAY_MIN_VERSION}, this Python has Ray {version}: "
            "pip install -U 'audioscale[ray]'"
        )
    return ray


def cluster_address(address: str | None) -> tuple[str | None, str]:
    """The cluster to join and the setting it came from: ``--ray-address``, else
    ``RAY_ADDRESS``; (None, "") means a local instance."""
    if address:
        return address, "--ray-address"
    env = os.environ.get("RAY_ADDRESS")
    return (env, "RAY_ADDRESS") if env else (None, "")


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """File descriptor 2 goes to a temporary file meanwhile: Ray's C++ clients log every
    connection retry there (gcs_client warnings), which no Python setting silences."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _has_text(path: Path) -> bool:
    try:
        return bool(path.read_text().strip())
    except OSError:
        return False


def auth_token_source() -> str | None:
    """Where the driver's Ray reads its auth token from, in Ray's documented order
    (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token; docs.ray.io ray-security/
    token-auth); None when ``RAY_AUTH_MODE`` is not ``token`` (Ray then sends none). A
    token file that holds nothing is one line here: Ray aborts the process on it."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return None
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        if not _has_text(Path(path)):
            raise AudioscaleError(
                f"RAY_AUTH_TOKEN_PATH={path}: no token in that file (missing, unreadable or "
                f"empty); point it at a copy of the cluster's token ({GET_TOKEN})"
            )
        return f"RAY_AUTH_TOKEN_PATH={path}"
    default = Path.home() / ".ray" / "auth_token"
    if _has_text(default):
        return str(default)
    raise AudioscaleError(
        "RAY_AUTH_MODE=token but no Ray auth token is set: set RAY_AUTH_TOKEN_PATH (or "
        f"RAY_AUTH_TOKEN) to the cluster's token, or write it to ~/.ray/auth_token ({GET_TOKEN})"
    )


def _host_port(address: str, setting: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise AudioscaleError(
            f"{setting} {address}: not host:port (the address `ray start --head` prints, "
            "e.g. 10.0.0.5:6379)"
        )
    return host.strip("[]"), int(port)


def _socket_reason(e: OSError, timeout: float) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, TimeoutError | socket.timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(e, socket.gaierror):
        return "unknown host"
    return e.strerror or type(e).__name__


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")


def _answers_grpc(host: str, port: int, timeout: float) -> bool:
    """Whether the server at host:port speaks HTTP/2, as a Ray GCS (gRPC) does: it answers
    the client preface with a SETTINGS frame (type 4). A dashboard (HTTP/1) or a plain
    TCP service does not, and Ray would wait on it for minutes."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(HTTP2_PREFACE)
        head = b""
        while len(head) < 9:
            chunk = s.recv(9 - len(head))
            if not chunk:
                break
            head += chunk
    return len(head) == 9 and head[3] == 4


def check_cluster(ray: Any, address: str, setting: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """One line for what ``ray.init(address=...)`` would fail on after minutes of retries:
    a token setting that holds no token (checked first: no network needed), an address
    where nothing answers or something other than a Ray head does (a TCP connect and an
    HTTP/2 hello, ``timeout`` s each), or a token the head refuses (Ray's own GCS client
    asks the head for its cluster id with the token Ray would send). ``auto`` and
    ``ray://`` addresses are left to Ray, which resolves them itself."""
    if address == "auto" or "://" in address:
        return
    host, port = _host_port(address, setting)
    where = f"{setting} {address}"
    source = auth_token_source()
    try:
        grpc = _answers_grpc(host, port, timeout)
    except OSError as e:
        raise AudioscaleError(
            f"{where}: no Ray cluster answers there ({_socket_reason(e, timeout)}); start "
            f"its head with `ray start --head --port={port}`, or fix {setting}"
        ) from None
    if not grpc:
        raise AudioscaleError(
            f"{where}: something answers there, but not a Ray head; give the address that "
            "`ray start --head` printed (its --port, 6379 by default; not the dashboard's)"
        )
    refused = getattr(ray.exceptions, "AuthenticationError", None)
    unanswered = getattr(ray.exceptions, "RpcError", None)
    try:
        from ray._raylet import GcsClient

        with quiet_stderr():
            GcsClient(address=address).cluster_id  # noqa: B018  (the call is the probe)
    except Exception as e:
        if _is(e, unanswered) and not _is(e, refused):
            reason = " ".join(str(e).split())[:200]
            raise AudioscaleError(f"{where}: the Ray head does not answer: {reason}") from None
        if not _is(e, refused):
            return  # neither: ray.init reports it
        if source is None:
            raise AudioscaleError(
                f"{where}: the cluster requires a Ray auth token and none was sent: set "
                f"RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH to the cluster's token ({GET_TOKEN})"
            ) from None
        raise AudioscaleError(
            f"{where}: the cluster rejected the Ray auth token from {source}: use the token "
            f"the cluster was started with ({GET_TOKEN})"
        ) from None


def _is(e: Exception, kind: type | None) -> bool:
    return kind is not None and isinstance(e, kind)


def connect(ray: Any, address: str | None, num_cpus: int) -> None:
    """``ray.init``: join ``address`` (or ``RAY_ADDRESS``) after ``check_cluster``, else
    start a local instance of ``num_cpus`` CPUs; a failure is one line naming the setting."""
    address, setting = cluster_address(address)
    if address:
        check_cluster(ray, address, setting)
        kw: dict[str, Any] = {"address": address}
        where = f"{setting} {address}"
    else:
        kw, where = {"num_cpus": num_cpus}, "a local Ray instance"
    try:
        with quiet_stderr():
            ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR", **kw)
    except Exception as e:
        with quiet_stderr():
            ray.shutdown()
        reason = " ".join(f"{type(e).__name__}: {e}".split())[:400]
        raise AudioscaleError(f"{where}: Ray could not connect: {reason}") from None


@contextmanager
def route_messages(log: Path) -> Iterator[None]:
    """Meanwhile, what the cluster pushes to the driver (a lost node's raylet log tail and
    state dump, ~50 lines, some twice) goes to ``log`` in full and to stderr as one line
    (a repeat left out): Ray prints it on stdout, which would break ``--json``. Ray's
    printer of those messages is a module function
    (``ray._private.worker.print_to_stdstream``), swapped for the duration; a Ray without
    it keeps its own printing."""
    mod = sys.modules.get("ray._private.worker")
    original = getattr(mod, "print_to_stdstream", None)
    shown: list[str] = []

    def to_log(data: dict, *args: Any, **kwargs: Any) -> None:
        lines = [_ANSI.sub("", str(line)) for line in data.get("lines", [])]
        with open(log, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} ({data.get('pid')})\n")
            f.writelines(line + "\n" for line in lines)
        first = next((" ".join(line.split()) for line in lines if line.strip()), "")[:160]
        if first and (not shown or shown[-1] != first):
            print(f"ray: {first} (see {log})", file=sys.stderr, flush=True)
        shown.append(first)

    if original is not None:
        mod.print_to_stdstream = to_log
    try:
        yield
    finally:
        if original is not None:
            mod.print_to_stdstream = original


# --------------------------------------------------------------------------- running


def last_checkpoint_step(run_dir: Path) -> int:
    """The highest ``checkpoints/step_XXXXXX`` present (0 when none): where a resumed
    training run starts from at the latest checkpoint."""
    steps = [int(p.stem.split("_")[1]) for p in run_dir.glob("checkpoints/step_*.json")]
    return max(steps, default=0)


def log_attempt(run_dir: Path, event: str) -> None:
    """Append where this attempt runs to ``RUN_DIR/ray_node.jsonl`` (in the task; ``event``
    is ``start`` or ``end``, so a lost attempt is a start without an end)."""
    import ray

    run_dir.mkdir(parents=True, exist_ok=True)
    line = {
        "event": event, "time": time.time(), "node_id": ray.get_runtime_context().get_node_id(),
        "node_ip": ray.util.get_node_ip_address(), "hostname": socket.gethostname(),
        "pid": os.getpid(), "resume_step": last_checkpoint_step(run_dir),
    }  # fmt: skip
    with open(run_dir / NODE_LOG, "a") as f:
        f.write(json.dumps(line) + "\n")


def node_log(run_dir: str | Path) -> list[dict]:
    """The lines of a run's ``ray_node.jsonl`` ([] when it never ran on Ray; a line cut
    short by a killed attempt is skipped)."""
    from audioscale.sweep.run import read_jsonl

    return read_jsonl(Path(run_dir) / NODE_LOG)


def attempts(run_dir: str | Path) -> list[dict]:
    """One line per attempt of the run on Ray: where it started, from which checkpoint."""
    return [e for e in node_log(run_dir) if e["event"] == "start"]


def _task(job_fn: Callable, job: Any, run_dir: str, ctx: Any, threads: int) -> dict:
    from audioscale.sweep.local import set_threads
    from audioscale.sweep.run import one_line

    set_threads(threads)
    try:
        log_attempt(Path(run_dir), "start")
        out = {"ok": True, "result": job_fn(job, run_dir, ctx)}
    except Exception as e:
        fault = storage_error(e, run_dir)  # an OS fault stops the sweep (local.py's rule)
        out = {"ok": False, "error": one_line(e),
               "fault": fault and (fault.path, fault.reason, fault.advice)}  # fmt: skip
    with suppress(OSError):  # the log is for people; the result is what counts
        log_attempt(Path(run_dir), "end")
    return out


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
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        connect(ray, address, num_cpus=workers * threads)
    remote = ray.remote(num_cpus=threads, num_gpus=gpus_per_run, max_retries=max_retries)(_task)
    runs_dir = Path(study_dir) / "runs"
    pending: dict[Any, tuple[Any, float]] = {}
    with route_messages(Path(study_dir) / DRIVER_LOG) if started else nullcontext():
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
    if out.get("fault"):  # the run goes back to pending with the others
        raise StorageError(*out["fault"])
    if not out["ok"]:
        store.mark_failed(job.run_id, out["error"], wall)
        return False, out["error"]
    result = out["result"]
    store.record(result, wall_s=result.get("info", {}).get("wall_s", wall))
    return True, ""
