"""``data import-pool`` at scale: files/s of a first scan, of a rerun on a grown folder and
of the hash split, on N tiny WAV files (hard links of a few distinct 1-s clips, so the
folder costs almost no disk; each file is still opened and decoded in full).

Usage: python bench/bench_import_pool.py [--quick] [--n N] [--workers W]
Prints one JSON line: n, workers, first-scan files/s, rerun (all cached + 1 % new) wall
time and files scanned, wall times. Record the numbers, with the machine, in
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from audioscale.data.import_pool import import_pool  # noqa: E402


def make_folder(root: Path, n: int, seconds: float = 1.0) -> None:
    """``n`` WAV files in folders of 1,000: hard links of 16 distinct clips."""
    rng = np.random.default_rng(0)
    protos = []
    for i in range(16):
        p = root / f"proto_{i}.wav"
        sf.write(p, (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000)
        protos.append(p)
    for i in range(n):
        d = root / "audio" / f"{i // 1000:04d}"
        d.mkdir(parents=True, exist_ok=True)
        os.link(protos[i % 16], d / f"clip_{i:06d}.wav")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    n = 2_000 if args.quick else args.n
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        make_folder(root, n)
        t_make = time.perf_counter() - t0
        first = import_pool([root / "audio"], root / "pool", workers=args.workers)
        grow = max(1, n // 100)
        extra = root / "audio" / "new"
        extra.mkdir()
        for i in range(grow):
            os.link(root / f"proto_{i % 16}.wav", extra / f"new_{i:06d}.wav")
        again = import_pool([root / "audio"], root / "pool", workers=args.workers)
    print(json.dumps({
        "n": n, "workers": args.workers, "make_s": round(t_make, 1),
        "first_wall_s": round(first.wall_s, 1),
        "first_files_per_s": round(first.n_scanned / first.wall_s, 1),
        "kept": first.n_kept, "heldout": first.n_heldout,
        "rerun_new": grow, "rerun_scanned": again.n_scanned,
        "rerun_wall_s": round(again.wall_s, 1), "rerun_kept": again.n_kept,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
