"""Benchmark: RankMe time and peak memory, clip level and streamed frame level.

Cases (each in a fresh subprocess, so peak RSS is its own):
- clip-svd / clip-gram: 25,600 x 768 float32 clip embeddings (a decaying spectrum plus
  a mean, like real encoders), RankMe by the SVD route and by the Gram route.
- frames: 1,000,000 x 768 float16 frame embeddings in an on-disk .npy (generated once
  into bench/out/, ~1.5 GB, git-ignored), memory-mapped and streamed through the
  GramAccumulator in batches of 16,384 rows (float64 accumulation). Pages already read
  are released with madvise(MADV_DONTNEED), so RSS shows our memory, not the page cache.
  Peak RSS is the kernel's VmHWM, reset (/proc/self/clear_refs) just before the timed
  part, minus the RSS at that moment (the input matrix, the imports).
  The file is usually in the page cache right after generation (warm read).
- frames-fp32gram: the same stream with float32 batch Grams summed in float64 (faster
  BLAS); only worth it if RankMe still agrees with the SVD to 1e-6, which
- agreement measures on three matrices (the clip matrix, a low-rank + noise matrix, a
  steep power law): relative RankMe error vs the SVD of float64 Grams (ours) and of
  float32 batch Grams.

Usage: python bench/bench_rankme.py [--quick] [--device cpu|cuda] [--rows N]
Prints one JSON line. --quick: 100,000 frames, 8,192 clips.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from audioscale.metrics import GramAccumulator, rankme  # noqa: E402
from audioscale.metrics.gram import gram_singular_values  # noqa: E402
from audioscale.metrics.rankme import rankme_from_singular_values  # noqa: E402

K = 768
BATCH = 16_384


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) so that it measures what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """VmHWM (peak RSS since the last reset); ru_maxrss where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def clip_matrix(n: int, seed: int = 0) -> np.ndarray:
    """n x K float32 with sigma_i ∝ i^-0.6 around a mean (a realistic embedding shape)."""
    rng = np.random.default_rng(seed)
    scale = (np.arange(1, K + 1) ** -0.6).astype(np.float32)
    z = rng.standard_normal((n, K), dtype=np.float32) * scale
    q, _ = np.linalg.qr(rng.standard_normal((K, K)))
    return (z @ q.astype(np.float32) + 0.3).astype(np.float32)


def frames_file(rows: int, out: Path) -> Path:
    """Generate (once) rows x K float16 frames: 96-dim latent structure plus noise."""
    path = out / f"frames_{rows}x{K}_f16.npy"
    if path.is_file():
        return path
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    mix = (rng.standard_normal((96, K)) / 10).astype(np.float32)
    tmp = path.with_suffix(".tmp.npy")
    mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(rows, K))
    for i in range(0, rows, 65_536):
        b = min(65_536, rows - i)
        lat = rng.standard_normal((b, 96), dtype=np.float32) * np.linspace(3, 0.3, 96)
        noise = rng.standard_normal((b, K), dtype=np.float32) * 0.05
        mm[i : i + b] = (lat.astype(np.float32) @ mix + noise + 0.2).astype(np.float16)
    mm.flush()
    del mm
    os.replace(tmp, path)
    return path


def to_device(b: np.ndarray, device: str):
    if device == "cpu":
        return b
    import torch

    return torch.from_numpy(np.ascontiguousarray(b)).to(device)


# --------------------------------------------------------------------------- cases


def case_clip(route: str, n: int, device: str) -> dict:
    z = clip_matrix(n)
    zd = to_device(z, device)
    if device != "cpu":
        rankme(zd[:1000], route=route)  # warm up the CUDA context / kernels
    base = rss_mb()
    reset_peak_rss()
    tracemalloc.start()
    t0 = time.perf_counter()
    value = rankme(zd, route=route)
    if device != "cpu":
        import torch

        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {
        "case": f"clip-{route}",
        "n": n,
        "k": K,
        "device": device,
        "rankme": value,
        "wall_s": round(wall, 3),
        "peak_extra_rss_mb": round(peak_rss_mb() - base, 1),
        "peak_traced_mb": round(traced, 1),
        "input_mb": round(z.nbytes / 2**20, 1),
    }


def fp32_gram_update(acc_g: np.ndarray, b: np.ndarray) -> None:
    b32 = np.asarray(b, dtype=np.float32)
    acc_g += (b32.T @ b32).astype(np.float64)


def case_frames(path: Path, device: str, fp32: bool) -> dict:
    z = np.load(path, mmap_mode="r")
    n = z.shape[0]
    raw = z._mmap if hasattr(z, "_mmap") else None
    header = z.offset
    base = rss_mb()
    reset_peak_rss()
    tracemalloc.start()
    t0 = time.perf_counter()
    acc = GramAccumulator(K)
    g32 = np.zeros((K, K)) if fp32 else None
    for i in range(0, n, BATCH):
        b = z[i : i + BATCH]
        if fp32:
            fp32_gram_update(g32, b)
        else:
            acc.update(to_device(b, device))
        if raw is not None:  # release the file pages we have read
            start = (header + i * K * 2) // mmap.PAGESIZE * mmap.PAGESIZE
            raw.madvise(mmap.MADV_DONTNEED, start, header + (i + len(b)) * K * 2 - start)
    s = gram_singular_values(g32, n) if fp32 else acc.spectrum()
    value = rankme_from_singular_values(s)
    wall = time.perf_counter() - t0
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {
        "case": "frames-fp32gram" if fp32 else "frames",
        "n": n,
        "k": K,
        "device": device,
        "dtype": "float16",
        "batch_rows": BATCH,
        "rankme": value,
        "wall_s": round(wall, 3),
        "rows_per_s": round(n / wall),
        "peak_extra_rss_mb": round(peak_rss_mb() - base, 1),
        "peak_traced_mb": round(traced, 1),
        "file_mb": round(path.stat().st_size / 2**20, 1),
    }


def case_agreement(n: int) -> dict:
    rng = np.random.default_rng(3)
    mats = {
        "clip": clip_matrix(n, seed=5),
        "low-rank+noise": (
            rng.standard_normal((n, 32)) @ rng.standard_normal((32, K))
            + 1e-3 * rng.standard_normal((n, K))
        ).astype(np.float32),
        "power-law-2": (rng.standard_normal((n, K)) * np.arange(1, K + 1) ** -2.0 + 0.1).astype(
            np.float32
        ),
    }
    out = {}
    for name, z in mats.items():
        svd = rankme(z, route="svd")
        gram = rankme(z, route="gram")
        g32 = np.zeros((K, K))
        for i in range(0, n, BATCH):
            fp32_gram_update(g32, z[i : i + BATCH])
        f32 = rankme_from_singular_values(gram_singular_values(g32, n))
        out[name] = {
            "rankme_svd": svd,
            "rel_err_gram_fp64": abs(gram - svd) / svd,
            "rel_err_gram_fp32_batches": abs(f32 - svd) / svd,
        }
    return {"case": "agreement", "n": n, "k": K, "matrices": out}


# --------------------------------------------------------------------------- driver


def run_child(args: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--child", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"case": args, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(lines[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rows", type=int, default=None, help="frame rows (default 1,000,000)")
    ap.add_argument("--clips", type=int, default=None, help="clip rows (default 25,600)")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    ap.add_argument("--child", nargs="*", default=None)
    a = ap.parse_args()
    if a.child is not None:
        kind, *rest = a.child
        if kind == "clip":
            res = case_clip(rest[0], int(rest[1]), a.device)
        elif kind == "frames":
            res = case_frames(Path(rest[0]), a.device, rest[1] == "fp32")
        else:
            res = case_agreement(int(rest[0]))
        print(json.dumps(res))
        return 0
    rows = a.rows or (100_000 if a.quick else 1_000_000)
    clips = a.clips or (8_192 if a.quick else 25_600)
    t0 = time.perf_counter()
    path = frames_file(rows, a.out)
    gen_s = time.perf_counter() - t0
    dev = ["--device", a.device]
    cases = [
        run_child(["clip", "svd", str(clips), *dev]),
        run_child(["clip", "gram", str(clips), *dev]),
        run_child(["frames", str(path), "fp64", *dev]),
        run_child(["frames", str(path), "fp32"]),
        run_child(["agreement", str(clips)]),
    ]
    print(
        json.dumps(
            {
                "bench": "rankme",
                "quick": a.quick,
                "machine": {
                    "cpus": os.cpu_count(),
                    "torch_threads": _threads(),
                    "python": platform.python_version(),
                    "load_avg": os.getloadavg()[0],
                },
                "frames_file_generated_s": round(gen_s, 1),
                "cases": cases,
            }
        )
    )
    return 0


def _threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    sys.exit(main())
