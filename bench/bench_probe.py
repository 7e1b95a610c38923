"""Benchmark: probes from cached embeddings and embedding extraction throughput.

1. All six demo tasks, linear + kNN probes, one encoder (``--model``, default
   ``random:pico``), from cached clip embeddings: wall seconds (target <= 20 s on a
   2-core CPU, DESIGN.md "Targets").
2. Extraction throughput (clip-seconds of audio per wall second) on the demo tasks'
   clips, without any cache (decode + log-mel + encoder), for ``--model`` and for
   ``logmel-stats``; on CUDA too when present.

Builds the small demo corpus under bench/out/ when ``--demo`` is not given. Prints one
JSON line. ``--quick`` uses the ``atto`` preset and two tasks for throughput.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))

from audioscale.data.manifest import load_task  # noqa: E402
from audioscale.embed.extract import extract  # noqa: E402
from audioscale.embed.registry import get_encoder  # noqa: E402
from audioscale.probe.suite import evaluate, evaluate_embeddings, expand_task_dirs  # noqa: E402


def demo_tasks(demo: Path | None) -> list[Path]:
    if demo is None:
        demo = ROOT / "out" / "demo_small"
        if not (demo / "tasks").is_dir():
            from audioscale.data.demo import build_demo

            build_demo(demo, size="small", seed=0, progress=False)
    return expand_task_dirs([demo / "tasks"])


def throughput(spec: str, tasks, device: str) -> dict:
    enc = get_encoder(spec)
    rows = [r for t in tasks for r in t.rows]
    t0 = time.perf_counter()
    ex = extract(enc, rows, cache_dir=None, device=device, progress=False, batch_size=32)
    wall = time.perf_counter() - t0
    return {
        "model": spec,
        "device": device,
        "clips": int(ex.ok.sum()),
        "audio_seconds": round(ex.audio_seconds, 1),
        "wall_s": round(wall, 2),
        "clip_seconds_per_s": round(ex.audio_seconds / wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--model", default=None)
    ap.add_argument("--demo", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = args.model or ("random:atto" if args.quick else "random:pico")
    task_dirs = demo_tasks(args.demo)
    tasks = [load_task(d) for d in task_dirs]
    cache = ROOT / "out" / "probe_cache"
    shutil.rmtree(cache, ignore_errors=True)
    enc = get_encoder(model)
    # fill the cache (not timed), then time probing from the cache alone
    evaluate(enc, task_dirs, cache_dir=cache, progress=False)
    t0, c0 = time.perf_counter(), time.process_time()
    exs = [extract(enc, t.rows, cache_dir=cache, progress=False) for t in tasks]
    assert all(e.from_cache for e in exs)
    res = evaluate_embeddings(enc.name, tasks, [e.emb for e in exs], [e.ok for e in exs])
    probe_wall, probe_cpu = time.perf_counter() - t0, time.process_time() - c0
    tp_tasks = tasks[:2] if args.quick else tasks
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    tput = [throughput(s, tp_tasks, d) for d in devices for s in (model, "logmel-stats")]
    out = {
        "bench": "probe",
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "threads": args.threads,
        "model": model,
        "tasks": len(tasks),
        "clips": sum(len(t.rows) for t in tasks),
        "probe_wall_s": round(probe_wall, 2),
        "probe_cpu_s": round(probe_cpu, 2),
        "probe_target_s": 20.0,
        "suite_linear": round(res.suite_for("linear"), 4),
        "suite_knn": round(res.suite_for("knn"), 4),
        "extraction": tput,
        "quick": args.quick,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
