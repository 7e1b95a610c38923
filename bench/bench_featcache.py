"""Feature-cache throughput (issue 2): build (decode + log-mel + fp16 shards) and read
(training batches assembled from the memory maps).

Pool: synthetic 16 kHz wav files (audioscale.data.corpus.synthetic_pool; tones, chirps,
noise) of 5-15 s, 80 files (``--quick``: 20), written to bench/out/featcache/ (ignored by
git) and removed afterwards.

Numbers:
- ``build_audio_s_per_s``: seconds of audio turned into cached features per wall second
  (a fresh build after a one-file warm-up build, one decoding thread; then again with
  ``--workers`` threads);
- ``open_s``: opening the finished cache (index parse, no feature reads);
- ``batches_per_s``: ``ClipDataset`` batches of 128 random 2 s crops (64 x 200 fp32), one
  process, i.e. what the trainer's input pipeline delivers with ``num_workers=0``;
  ``crops_per_s`` = 128 x that. A GPU step at batch 128 on the Dasheng-base config takes
  ~36 ms (3,500 samples/s), so more than ~30 batches/s per loader process keeps it fed.

Prints one JSON line. Usage: python bench/bench_featcache.py [--quick] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import torch

from audioscale.config import FrontendConfig
from audioscale.data.corpus import ClipDataset, synthetic_pool
from audioscale.data.featcache import FeatureCache
from audioscale.data.manifest import load_pool

OUT = Path(__file__).parent / "out" / "featcache"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    shutil.rmtree(OUT, ignore_errors=True)
    n = 20 if args.quick else 80
    pool = synthetic_pool(OUT / "pool", n_train=n, n_heldout=0, seconds=(5.0, 15.0), seed=0)
    rows = load_pool(pool)
    fe = FrontendConfig()
    res = {"bench": "featcache", "machine": f"{platform.node()} {platform.machine()}"}
    audio_s = sum(r["duration"] for r in rows)
    FeatureCache.build(rows[:1], fe, OUT / "warmup", progress=False)  # imports, first calls
    for workers, tag in ((1, "build"), (args.workers, f"build_workers{args.workers}")):
        shutil.rmtree(OUT / "cache", ignore_errors=True)
        t0 = time.perf_counter()
        cache = FeatureCache.build(rows, fe, OUT / "cache", progress=False, workers=workers)
        dt = time.perf_counter() - t0
        res[f"{tag}_s"] = dt
        res[f"{tag}_audio_s_per_s"] = audio_s / dt
    t0 = time.perf_counter()
    cache = FeatureCache(cache.root)
    res["open_s"] = time.perf_counter() - t0
    res["files"] = cache.n_items
    res["audio_hours"] = cache.total_seconds / 3600
    res["cache_mb"] = sum(p.stat().st_size for p in cache.root.glob("*.f16")) / 2**20
    ds = ClipDataset(cache, 200, seed=0, batch_size=128)
    ds[0]  # touch the memory maps once
    steps = 30 if args.quick else 200
    t0 = time.perf_counter()
    for k in range(steps):
        ds[k]
    dt = time.perf_counter() - t0
    res["batches_per_s"] = steps / dt
    res["crops_per_s"] = steps * 128 / dt
    res["batch"] = "128 x 64 mels x 200 frames (2 s) fp32"
    res["quick"] = args.quick
    shutil.rmtree(OUT, ignore_errors=True)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
