"""Frontend throughput on CPU: log-mel of a batch of 10 s clips, in clip-seconds per second.

Also times decoding + resampling (44.1 kHz stereo WAV → 16 kHz mono) with load_audio, the
other half of the path from files to features. Prints one JSON line.

Usage: python bench/bench_frontend.py [--quick] [--threads N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from audioscale.audio.frontend import LogMel
from audioscale.audio.io import load_audio
from audioscale.config import FrontendConfig


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    batch = 8 if args.quick else args.batch
    repeats = 2 if args.quick else 5
    clip_s = 10.0
    cfg = FrontendConfig()
    module = LogMel(cfg).to(args.device).eval()
    x = torch.randn(batch, int(clip_s * cfg.sample_rate), device=args.device) * 0.1

    def run():
        with torch.no_grad():
            module(x)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    t_mel = timed(run, repeats)

    n_files = 4 if args.quick else 16
    with tempfile.TemporaryDirectory() as d:
        rng = np.random.default_rng(0)
        files = []
        for i in range(n_files):
            p = Path(d) / f"{i}.wav"
            sf.write(p, (rng.standard_normal((441000, 2)) * 0.1).astype(np.float32), 44100)
            files.append(p)
        t_load = timed(lambda: [load_audio(p) for p in files], max(1, repeats // 2))

    print(
        json.dumps(
            {
                "bench": "frontend",
                "device": args.device,
                "threads": args.threads,
                "batch": batch,
                "clip_seconds": clip_s,
                "logmel_clip_s_per_s": round(batch * clip_s / t_mel, 1),
                "logmel_batch_ms": round(1000 * t_mel, 2),
                "load_44k1_stereo_wav_clip_s_per_s": round(n_files * clip_s / t_load, 1),
                "quick": args.quick,
            }
        )
    )


if __name__ == "__main__":
    main()
