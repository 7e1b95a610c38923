"""Two gloo processes (world size 2, same global batch) match one process on CPU."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
from pathlib import Path

import pytest
import torch

from audioscale.config import load_config
from audioscale.data.corpus import synthetic_pool
from audioscale.train import trainer
from audioscale.train.ddp import DistInfo
from audioscale.train.trainer import mask_generator


def _cfg(pool: Path, cache: Path):
    return load_config(
        None,
        [
            f"data.pool={pool}",
            f"data.cache_dir={cache}",
            "data.clip_seconds=1.0",
            "model.preset=atto",
            "train.batch_size=8",
            "train.steps=6",
            "train.log_every=1",
            "train.threads=1",
        ],
    )


def _worker(rank: int, world: int, port: int, pool: str, cache: str, out: str) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    trainer.pretrain(_cfg(Path(pool), Path(cache)), out, progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(run: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_rank_masks_are_slices_of_the_single_process_mask():
    one = mask_generator(3, 7, torch.device("cpu"), DistInfo(), 8, 25)
    full = torch.rand(8, 25, generator=one)
    for r in (0, 1):
        g = mask_generator(3, 7, torch.device("cpu"), DistInfo(r, 2), 4, 25)
        assert torch.equal(torch.rand(4, 25, generator=g), full[4 * r : 4 * r + 4])


def test_two_gloo_processes_match_one(tmp_path, monkeypatch):
    pool = synthetic_pool(tmp_path / "pool", n_train=8, n_heldout=2, seed=2)
    cache = tmp_path / "cache"
    single = trainer.pretrain(_cfg(pool, cache), tmp_path / "single", progress=False)
    # rank 1 in a spawned process, rank 0 in this one (one torch import fewer)
    port = _free_port()
    args = (2, port, str(pool), str(cache), str(tmp_path / "ddp"))
    child = mp.get_context("spawn").Process(target=_worker, args=(1, *args))
    child.start()
    try:
        env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}
        env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        trainer.pretrain(_cfg(pool, cache), tmp_path / "ddp", progress=False)
    finally:
        child.join(timeout=120)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    a, b = _losses(tmp_path / "single"), _losses(tmp_path / "ddp")
    assert len(a) == len(b) == 6
    assert b == pytest.approx(a, rel=2e-5, abs=1e-6)  # measured: equal to ~2e-7
    assert a[-1] < a[0]  # it trained
    done = json.loads((tmp_path / "ddp" / "done.json").read_text())
    assert done["examples"] == single.examples == 48
    assert done["heldout_loss"] == pytest.approx(single.heldout_loss, rel=1e-4)
