"""Benchmark: where the Gram route of RankMe becomes cheaper than the SVD route.

For each embedding width K and a geometric grid of row counts N, times (best of
``--repeats``) RankMe of one in-memory float32 matrix by ``route="svd"`` (float64
LAPACK SVD of Z) and by ``route="gram"`` (float64-accumulated ZᵀZ, then ``eigvalsh``),
and reports, per K, the smallest N on the grid from which the Gram route is faster.
``rankme.choose_route`` ("auto") uses the cost model fitted to these numbers; the
``auto`` column checks that it is never slower than the cheaper of the two.
It also times the 25,600 x 768 clip-level case from a torch tensor, with
``torch.linalg.svdvals`` (float32, for reference: not the pinned float64 estimator).

Times are best-of-R with the three routes taking turns (a busy machine slows them
alike); record the load average beside them.

Usage: python bench/bench_rankme_route.py [--quick] [--repeats R]
Prints one JSON line. --quick: fewer widths and rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from audioscale.metrics.rankme import choose_route, rankme  # noqa: E402


def best_interleaved(fns: dict, repeats: int) -> dict:
    """Best-of-``repeats`` wall time of each function, the functions taking turns so
    that a busy machine slows them alike."""
    out = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            out[name] = min(out[name], time.perf_counter() - t0)
    return out


def matrix(n: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scale = (np.arange(1, k + 1) ** -0.6).astype(np.float32)
    return (rng.standard_normal((n, k), dtype=np.float32) * scale + 0.3).astype(np.float32)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    widths = [64, 256, 768] if a.quick else [32, 64, 128, 256, 512, 768, 1024]
    ratios = (
        [0.0625, 0.125, 0.25, 0.5, 1, 2]
        if a.quick
        else [0.03125, 0.0625, 0.125, 0.25, 0.375, 0.5, 0.75, 1, 2, 4]
    )
    grid = []
    crossover = {}
    for k in widths:
        first_gram = None
        for r in ratios:
            n = max(2, int(round(k * r)))
            z = matrix(n, k)
            t = best_interleaved(
                {
                    "svd": lambda z=z: rankme(z, route="svd"),
                    "gram": lambda z=z: rankme(z, route="gram"),
                    "auto": lambda z=z: rankme(z),
                },
                a.repeats,
            )
            t_svd, t_gram, t_auto = t["svd"], t["gram"], t["auto"]
            grid.append(
                {
                    "n": n,
                    "k": k,
                    "svd_s": round(t_svd, 5),
                    "gram_s": round(t_gram, 5),
                    "auto_s": round(t_auto, 5),
                    "auto_route": choose_route(n, k),
                }
            )
            print(json.dumps(grid[-1]), file=sys.stderr, flush=True)
            if first_gram is None and t_gram < t_svd:
                first_gram = n
        crossover[str(k)] = first_gram
    import torch

    z = torch.from_numpy(matrix(25_600, 768))
    t = best_interleaved(
        {
            "svd_s": lambda: rankme(z, route="svd"),
            "gram_s": lambda: rankme(z, route="gram"),
            "auto_s": lambda: rankme(z),
            "torch_svdvals_f32_s": lambda: torch.linalg.svdvals(z),
        },
        max(2, a.repeats // 2),
    )
    clip = {"n": 25_600, "k": 768, "auto_route": choose_route(25_600, 768)}
    clip.update({name: round(v, 3) for name, v in t.items()})
    print(
        json.dumps(
            {
                "bench": "rankme_route",
                "machine": {
                    "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(),
                    "numpy": np.__version__,
                    "torch": torch.__version__,
                    "load_avg": os.getloadavg()[0],
                },
                "crossover_n": crossover,
                "clip_25600x768": clip,
                "grid": grid,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
