"""A tiny really-trained run for the export tests: atto, 3 steps on a synthetic pool.

``model.max_seconds=1.0`` so that the validators' 2 s and 3.74 s inputs are cut into
pieces, the path long clips take through extraction."""

from __future__ import annotations

from pathlib import Path

import torch


def tiny_run(root: Path) -> Path:
    """Pretrain the run under ``root/run`` (about 3 s on one thread) and return its folder."""
    from audioscale.data.corpus import synthetic_pool

    pool = synthetic_pool(root / "pool", n_train=8, n_heldout=2, seed=0)
    return pretrain_tiny(pool, root, "model.max_seconds=1.0")


def pretrain_tiny(pool: Path, root: Path, *overrides: str) -> Path:
    """Atto for 3 steps of batch 4 on ``pool`` (one thread, the caller's thread count
    restored), into ``root/run``; ``overrides`` are extra ``--set`` style keys."""
    from audioscale.config import load_config
    from audioscale.train import trainer

    cfg = load_config(
        None,
        [
            f"data.pool={pool}",
            f"data.cache_dir={root / 'cache'}",
            "data.clip_seconds=1.0",
            "model.preset=atto",
            "train.batch_size=4",
            "train.threads=1",
            "train.steps=3",
            "train.log_every=1",
            *overrides,
        ],
    )
    threads = torch.get_num_threads()
    try:
        trainer.pretrain(cfg, root / "run", progress=False)
    finally:
        torch.set_num_threads(threads)
    return root / "run"
