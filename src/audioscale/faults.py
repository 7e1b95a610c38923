"""The fault-injection seam: every durable write of a study calls ``point(path)`` first.

Following SQLite's I/O-error testing ("How SQLite Is Tested", section 3.3), a test runs
a command with a failure injected at the 1st, 2nd, ... n-th write and checks that the
study recovers each time. The seam is off (one dict lookup) unless the environment asks:

- ``AUDIOSCALE_FAULT_AT=k``: the k-th write (counting from 1) raises a real
  ``OSError(ENOSPC)`` naming its path, as a full disk would; writes before and after it
  succeed (one fault per command, like SQLite's "transient" mode).
- ``AUDIOSCALE_FAULT_COUNTER=FILE``: count writes in ``FILE`` (created if missing),
  shared by every process of the command: the local executor's workers inherit the
  environment, and the count is read and bumped under an exclusive ``flock``. Without it
  each process counts on its own. A clean run with only the counter set leaves the
  number of writes in ``FILE``, which is how a test knows n.

Writes counted: every publish of the atomic writers (``audioscale.utils.atomic_path``),
every store transaction's commit, every feature-cache shard and every line appended to
a run's ``metrics.jsonl``. Torch-free and import-free at the bottom of the import order.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

ENV_AT = "AUDIOSCALE_FAULT_AT"
ENV_COUNTER = "AUDIOSCALE_FAULT_COUNTER"

_local_count = 0


def point(path: str | Path) -> None:
    """One durable write of ``path`` is about to happen: count it, and raise
    ``OSError(ENOSPC, ..., path)`` when it is the write the environment picked."""
    at, counter = os.environ.get(ENV_AT), os.environ.get(ENV_COUNTER)
    if at is None and counter is None:
        return
    n = _bump(counter)
    if at is not None and n == int(at):
        raise OSError(errno.ENOSPC, "No space left on device (injected fault)", str(path))


def _bump(counter: str | None) -> int:
    """The number of this write: a per-process count, or one shared through ``counter``."""
    global _local_count
    if counter is None:
        _local_count += 1
        return _local_count
    fd = os.open(counter, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        n = int(os.read(fd, 32) or b"0") + 1
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, str(n).encode())
        return n
    finally:
        os.close(fd)


def count(counter: str | Path) -> int:
    """The writes counted in ``counter`` so far (0 when it does not exist)."""
    try:
        return int(Path(counter).read_text() or 0)
    except FileNotFoundError:
        return 0
