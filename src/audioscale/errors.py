"""Errors a user can cause, and the OS faults a user can meet. The CLI turns each into
one line on stderr and exit code 2 (an interrupt: 130 or 143)."""

from __future__ import annotations


class AudioscaleError(Exception):
    """Base class for user-facing errors: the message is one complete line."""


class ConfigError(AudioscaleError):
    """A bad configuration: names the key and the reason."""

    def __init__(self, key: str, reason: str):
        self.key = key
        self.reason = reason
        super().__init__(f"config key '{key}': {reason}")


class BadAudioError(AudioscaleError):
    """A file that cannot serve as audio: names the file and the reason."""

    def __init__(self, path: str, reason: str, kind: str = "corrupt"):
        self.path = str(path)
        self.reason = reason
        self.kind = kind  # short machine-readable tag: empty, corrupt, not-audio, nan, ...
        super().__init__(f"{self.path}: {reason}")


class DataError(AudioscaleError):
    """A bad manifest, task folder or dataset layout."""


class EmbeddingError(AudioscaleError):
    """Embeddings that cannot be measured (NaN/Inf rows, wrong shape)."""


RERUN = "rerun the same command: finished runs are kept"


class StorageError(AudioscaleError):
    """An OS fault while writing or reading a study or a run (disk full, permissions, too
    many open files, a vanished file): names the path, the reason and what to do."""

    def __init__(self, path: str, reason: str, advice: str):
        self.path, self.reason, self.advice = str(path), reason, advice
        super().__init__(f"{self.path}: {reason}; {advice}")


class CorruptArtefactError(AudioscaleError):
    """A checkpoint or cache whose bytes are not what was written (size or sha256
    mismatch, unreadable header): names the file, the reason and what to do."""

    def __init__(self, path: str, reason: str, advice: str = ""):
        self.path, self.reason = str(path), reason
        self.advice = advice or "rerun the sweep that made it: it redoes that work"
        super().__init__(f"{self.path}: {reason}; {self.advice}")


# errno → (reason, what to do): the faults a user can meet on a study folder
_OS_FAULTS = {
    "ENOSPC": ("no space left on device", f"free space and {RERUN}"),
    "EDQUOT": ("disk quota exceeded", f"free space or raise the quota and {RERUN}"),
    "EACCES": ("permission denied", f"make the folder writable and {RERUN}"),
    "EPERM": ("operation not permitted", f"make the folder writable and {RERUN}"),
    "EROFS": ("read-only file system", f"use a writable folder or remount it and {RERUN}"),
    "EMFILE": (
        "too many open files",
        f"raise the limit (ulimit -n) or use fewer workers and {RERUN}",
    ),
    "ENFILE": ("too many open files in the system", f"close other programs and {RERUN}"),
    "ENOENT": ("no such file (removed while in use?)", f"restore it or {RERUN}"),
    "EIO": ("input/output error", f"check the disk (dmesg) and {RERUN}"),
}
# SQLite's messages (sqlite3.OperationalError carries no errno) → the errno they mean
_SQLITE_FAULTS = {
    "disk is full": "ENOSPC",
    "readonly": "EROFS",
    "unable to open": "EACCES",
    "disk i/o error": "EIO",
}


def storage_error(exc: BaseException, path: str | None = None) -> StorageError | None:
    """The one-line StorageError of an ``OSError`` or a ``sqlite3.OperationalError`` (the
    study store's faults), or None for anything else. ``path`` names the file when the
    exception does not (SQLite's do not)."""
    import errno
    import sqlite3

    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        if "not a database" not in text and "malformed" not in text:
            return None  # an IntegrityError, ...: a bug, not a fault
        return StorageError(
            path or "study.db",
            f"corrupt database ({exc})",
            "move it aside (with its -wal and -shm files) and rerun the same command: "
            "finished runs are recorded again from their run folders",
        )
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        name = next((v for k, v in _SQLITE_FAULTS.items() if k in text), None)
        if name is None:
            return None
        reason, advice = _OS_FAULTS[name]
        return StorageError(path or "study.db", f"{reason} ({exc})", advice)
    if not isinstance(exc, OSError) or exc.errno is None:
        return None
    name = errno.errorcode.get(exc.errno, "")
    reason, advice = _OS_FAULTS.get(name, (exc.strerror or name, f"fix the cause and {RERUN}"))
    if exc.strerror and "injected" in exc.strerror:
        reason += " (injected fault)"
    return StorageError(exc.filename or path or "?", reason, advice)
