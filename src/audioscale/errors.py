"""Errors a user can cause. The CLI turns each into one line on stderr and exit code 2."""

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
