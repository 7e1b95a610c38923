"""Feature cache (fp16 memmap shards + index) and the clip sampler built on it."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from audioscale.audio.frontend import LogMel, logmel
from audioscale.audio.io import load_audio
from audioscale.config import FrontendConfig
from audioscale.data import featcache
from audioscale.data.corpus import ClipDataset, fixed_clips, synthetic_pool
from audioscale.data.featcache import FeatureCache, cache_key, logmel_long
from audioscale.data.manifest import load_pool

FE = FrontendConfig()


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> list[dict]:
    d = synthetic_pool(tmp_path_factory.mktemp("pool"), n_train=6, n_heldout=0, seed=1)
    rows = load_pool(d)
    (d / "broken.wav").write_bytes(b"RIFF not really a wav file at all")
    (d / "empty.wav").write_bytes(b"")
    bad = [
        {"path": str(d / n), "duration": 1.0, "split": "train"} for n in ("broken.wav", "empty.wav")
    ]
    return rows[:3] + bad + rows[3:]


def test_build_skips_bad_files_and_matches_frontend(pool, tmp_path):
    cache = FeatureCache.build(pool, FE, tmp_path, progress=False)
    assert cache.n_items == 6
    assert len(cache.skipped) == 2
    assert {s["path"].rsplit("/", 1)[1] for s in cache.skipped} == {"broken.wav", "empty.wav"}
    assert all(s["reason"] for s in cache.skipped)
    good = [r for r in pool if "broken" not in r["path"] and "empty" not in r["path"]]
    assert cache.paths == [r["path"] for r in good]
    for i, row in enumerate(good):
        ref = logmel(load_audio(row["path"]), FE)
        got = cache.get(i)
        assert got.dtype == np.float16 and got.shape == ref.shape
        assert np.abs(got.astype(np.float32) - ref).max() < 0.06  # fp16 near 0..-100 dB
        assert cache.seconds[i] == pytest.approx(row["duration"], abs=1e-3)
    assert cache.total_frames == int(cache.lengths.sum())
    assert cache.floor == pytest.approx(-100.0)
    # a second build opens the same folder without recomputing
    again = FeatureCache.build(pool, FE, tmp_path, progress=False)
    assert again.root == cache.root and again.n_items == 6


def test_frames_crop_and_padding(pool, tmp_path):
    cache = FeatureCache.build(pool[:2], FE, tmp_path, progress=False, shard_bytes=1)
    assert len(cache.shards) == 2  # one item per shard when shards are tiny
    n = int(cache.lengths[1])
    x = cache.frames(1, n - 10, 30)
    assert x.shape == (FE.n_mels, 30) and x.dtype == np.float32
    assert np.array_equal(x[:, :10], cache.get(1)[:, n - 10 :].astype(np.float32))
    assert (x[:, 10:] == cache.floor).all()
    rng = np.random.default_rng(0)
    c = cache.crop(0, 50, rng)
    item = cache.get(0).astype(np.float32)
    starts = [s for s in range(item.shape[1] - 49) if np.array_equal(item[:, s : s + 50], c)]
    assert starts  # the crop is a contiguous slice of the item


def test_key_tracks_config_and_files(pool, tmp_path):
    k = cache_key(pool, FE)
    assert cache_key(pool, FrontendConfig(n_mels=80)) != k
    assert cache_key(pool, FE, max_seconds=1.0) != k
    capped = [dict(r) for r in pool]
    capped[0]["max_seconds"] = 0.5
    assert cache_key(capped, FE) != k
    victim = Path(pool[0]["path"])
    st = victim.stat()
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    try:
        assert cache_key(pool, FE) != k  # a changed file never reads a stale cache
    finally:
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    # max_seconds caps what is read
    cache = FeatureCache.build(capped[:1], FE, tmp_path, progress=False)
    assert cache.lengths[0] == 1 + int(0.5 * 16000) // 160


def test_blockwise_logmel_equals_whole():
    rng = np.random.default_rng(0)
    wave = rng.standard_normal(16000 + 77).astype(np.float32) * 0.1
    for pad in ("constant", "reflect"):
        cfg = FrontendConfig(pad_mode=pad)
        module = LogMel(cfg)
        whole = logmel_long(wave, module, cfg, block_frames=10**6)
        for block in (3, 40):
            parts = logmel_long(wave, module, cfg, block_frames=block)
            assert parts.shape == whole.shape
            assert np.abs(parts - whole).max() < 1e-3


def test_killed_build_is_redone(pool, tmp_path, monkeypatch):
    real = featcache._write_cache

    def dies(tmp, *a, **k):
        tmp.mkdir(parents=True)
        (tmp / "shard_00000.f16").write_bytes(b"\0" * 100)
        raise KeyboardInterrupt  # killed half way

    monkeypatch.setattr(featcache, "_write_cache", dies)
    with pytest.raises(KeyboardInterrupt):
        FeatureCache.build(pool[:2], FE, tmp_path, progress=False)
    key = cache_key(pool[:2], FE)
    assert not (tmp_path / key).exists()
    # a stale temporary folder (e.g. after kill -9) is cleaned by the next build
    (tmp_path / f".tmp-{key}-999-dead").mkdir()
    monkeypatch.setattr(featcache, "_write_cache", real)
    cache = FeatureCache.build(pool[:2], FE, tmp_path, progress=False)
    assert cache.n_items == 2
    assert not list(tmp_path.glob(".tmp-*"))


def _build_worker(rows, cache_dir, ready, q):
    ready.set()  # imports done: race the parent for the same key
    c = FeatureCache.build(rows, FrontendConfig(), cache_dir, progress=False)
    q.put((str(c.root), c.n_items, float(c.get(0).astype(np.float32).sum())))


def test_concurrent_builders_agree(pool, tmp_path):
    ctx = mp.get_context("spawn")
    q, ready = ctx.Queue(), ctx.Event()
    child = ctx.Process(target=_build_worker, args=(pool, tmp_path, ready, q))
    child.start()
    assert ready.wait(timeout=120)
    mine = FeatureCache.build(pool, FE, tmp_path, progress=False)
    theirs = q.get(timeout=120)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert theirs == (str(mine.root), mine.n_items, float(mine.get(0).astype(np.float32).sum()))
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [mine.root.name]
    assert not list(tmp_path.glob(".tmp-*"))


def test_lock_makes_a_second_builder_wait_and_reuse(pool, tmp_path, monkeypatch):
    import threading

    rows = pool[:2]
    key = cache_key(rows, FE)
    calls = []
    real = featcache._write_cache
    monkeypatch.setattr(featcache, "_write_cache", lambda *a: calls.append(1) or real(*a))
    got = []
    with featcache._locked(tmp_path / f".{key}.lock"):  # another builder holds the key
        t = threading.Thread(target=lambda: got.append(FeatureCache.build(rows, FE, tmp_path)))
        t.start()
        t.join(timeout=1.0)
        assert t.is_alive() and not got  # waiting on the lock, not building
        tmp = tmp_path / "elsewhere"
        real(tmp, rows, FE, key, None, featcache.SHARD_BYTES, False, 1)
        os.rename(tmp, tmp_path / key)  # the other builder finishes
    t.join(timeout=60)
    assert got and got[0].n_items == 2 and calls == []  # opened, never rebuilt


def test_clip_dataset_is_a_function_of_step_and_shards_by_rank(pool, tmp_path):
    cache = FeatureCache.build(pool, FE, tmp_path, progress=False)
    ds = ClipDataset(cache, 64, seed=3, batch_size=8)
    a, b = ds[5], ds[5]
    assert a.shape == (8, FE.n_mels, 64) and torch.equal(a, b)
    assert not torch.equal(ds[5], ds[6])
    halves = [ClipDataset(cache, 64, seed=3, batch_size=8, rank=r, world_size=2)[5] for r in (0, 1)]
    assert torch.equal(torch.cat(halves), a)
    # items are drawn in proportion to their length
    counts = np.zeros(cache.n_items)
    for step in range(400):
        np.add.at(counts, ds.global_indices(step)[0], 1)
    expect = cache.lengths / cache.lengths.sum() * counts.sum()
    assert np.abs(counts - expect).max() < 5 * np.sqrt(expect.max())


def test_short_items_are_padded_and_fixed_clips_deterministic(pool, tmp_path):
    cache = FeatureCache.build(pool, FE, tmp_path, progress=False)
    long = int(cache.lengths.max()) + 40
    ds = ClipDataset(cache, long, seed=0, batch_size=4)
    x = ds[0]
    assert (x[:, :, -40:] == cache.floor).all()
    clips = fixed_clips(cache, 100)
    assert torch.equal(clips, fixed_clips(cache, 100))
    assert len(clips) == int(sum(max(1, n // 100) for n in cache.lengths))
    assert len(fixed_clips(cache, 100, max_clips=5)) == 5


def test_loader_workers_give_the_same_batches(pool, tmp_path):
    from audioscale.data.corpus import make_loader

    cache = FeatureCache.build(pool, FE, tmp_path, progress=False)
    ds = ClipDataset(cache, 32, seed=1, batch_size=4)
    plain = list(make_loader(ds, 3, 7))
    workers = list(make_loader(ds, 3, 7, num_workers=2))
    assert len(plain) == len(workers) == 4
    assert all(torch.equal(a, b) for a, b in zip(plain, workers, strict=True))
    assert torch.equal(plain[0], ds[3])
