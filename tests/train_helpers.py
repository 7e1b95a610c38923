"""A tiny run config for the trainer tests (atto preset, 1-s clips, batch 8, one thread)."""

from __future__ import annotations

from pathlib import Path

from audioscale.config import RunConfig, load_config


def atto_config(pool: Path, cache: Path, *extra: str) -> RunConfig:
    """A run on ``pool`` with its feature cache in ``cache``; ``extra``: overrides."""
    base = [
        f"data.pool={pool}",
        f"data.cache_dir={cache}",
        "data.clip_seconds=1.0",
        "model.preset=atto",
        "train.batch_size=8",
        "train.threads=1",
        "train.log_every=2",
    ]
    return load_config(None, base + list(extra))
