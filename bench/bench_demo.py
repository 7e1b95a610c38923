"""Demo corpus build time: a fresh ``--size small`` build, a rerun that reuses every clip,
and (without ``--quick``) a fresh ``--size full`` build. Prints one JSON line.

Targets (issue 2): small < 1 min (aim 20-30 s on a loaded 2-core machine), full ~2 min.
Outputs go to bench/out/demo_<size> (ignored by git) and are removed afterwards.

Usage: python bench/bench_demo.py [--quick] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from audioscale.data.demo import build_demo

OUT = Path(__file__).parent / "out"


def timed_build(size: str, workers: int | None, fresh: bool) -> dict:
    out = OUT / f"demo_{size}"
    if fresh:
        shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    s = build_demo(out, size=size, seed=0, progress=False, workers=workers)
    wall = time.perf_counter() - t0
    task_clips = sum(d["clips"] for d in s.tasks.values())
    return {
        "wall_s": round(wall, 2),
        "task_clips": task_clips,
        "pool_hours": s.pool["hours"],
        "rendered": s.rendered,
        "reused": s.reused,
        "audio_hours_per_s": round(
            (s.pool["hours"] + sum(d["hours"] for d in s.tasks.values())) / wall, 4
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    res = {"bench": "demo", "workers": args.workers}
    res["small_fresh"] = timed_build("small", args.workers, fresh=True)
    res["small_rerun"] = timed_build("small", args.workers, fresh=False)
    shutil.rmtree(OUT / "demo_small", ignore_errors=True)
    if not args.quick:
        res["full_fresh"] = timed_build("full", args.workers, fresh=True)
        shutil.rmtree(OUT / "demo_full", ignore_errors=True)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
