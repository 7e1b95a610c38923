"""The study session of a command: where its tracebacks go, how it is interrupted.

``main`` (``audioscale.cli``) prints every user-facing fault as one line; the traceback
goes to the log of the study the command works on (``STUDY/audioscale.log``), set by
``study_session``, which also turns SIGTERM into the path of Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOG_NAME = "audioscale.log"
log_path: Path | None = None
signal_received: int | None = None  # the signal that interrupted the command, if any


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: the one path every interrupt takes (``main`` exits 128 + signum)."""


def _hard_stop(signum: int, frame: object) -> None:
    print("audioscale: interrupted again: stopped at once", file=sys.stderr, flush=True)
    os._exit(128 + signum)


def _interrupt(signum: int, frame: object) -> None:
    """First SIGINT / SIGTERM: raise ``Interrupted`` in the main thread (the executors
    kill their workers and put their runs back to pending); a second one stops at once."""
    global signal_received
    signal_received = signum
    signal.signal(signal.SIGINT, _hard_stop)
    signal.signal(signal.SIGTERM, _hard_stop)
    raise Interrupted()


@contextmanager
def study_session(study_dir: Path | None) -> Iterator[None]:
    """The span of a command that writes a study: tracebacks go to its log, and SIGTERM
    takes the path of Ctrl-C (handlers restored after; only the main thread can set them)."""
    global log_path, signal_received
    log_path = None if study_dir is None else Path(study_dir) / LOG_NAME
    signal_received = None
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, _interrupt)
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def log_traceback(exc: BaseException) -> Path | None:
    """Append ``exc``'s traceback to the study's log; best effort (the disk may be full)."""
    if log_path is None or not log_path.parent.is_dir():
        return None
    text = "".join(traceback.format_exception(exc))
    try:
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}\n{text}")
    except OSError:
        return None
    return log_path
