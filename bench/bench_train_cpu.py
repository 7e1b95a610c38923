"""CPU pretraining speed per ladder preset (issue 4, "Performance"), to size the demo study.

What is timed: the trainer's update step (audioscale.train.trainer) on a synthetic
log-mel batch of 2 s clips (64 mels x 200 frames -> 50 tokens, mask 0.75): per-step lr,
the seeded mask generator, forward, backward, gradient clipping at 1.0, AdamW with the
trainer's parameter groups, fp32 (the CPU default, ``precision: auto``). The input
pipeline is not included (bench_featcache.py measures it: it is far faster).

Grid: presets that fit a CPU study (atto, femto, pico, nano, micro; ``--quick``: atto,
pico), batch 32 and 64, ``torch.set_num_threads`` 1 and 2. Each cell: 2 warm-up steps,
then steps until ``--seconds`` have passed (at least 3). Numbers: ``steps_per_s``,
``examples_per_s``, ``params`` (total), ``flops_per_example`` (accounting) and the
achieved GFLOP/s.

Prints one JSON line. Usage: python bench/bench_train_cpu.py [--quick] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import torch

from audioscale.config import FrontendConfig, ModelConfig, TrainConfig
from audioscale.models.accounting import count_params, train_flops_per_example
from audioscale.models.mae import build_mae
from audioscale.train import recipe
from audioscale.train.ddp import DistInfo
from audioscale.train.trainer import _autocast, _param_groups, mask_generator

CLIP_SECONDS = 2.0
FRAMES = 200


def time_cell(preset: str, batch: int, threads: int, seconds: float) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    fe = FrontendConfig()
    mcfg = ModelConfig(preset=preset)
    model = build_mae(mcfg, fe)
    tcfg = TrainConfig(batch_size=batch)
    lr = recipe.lr_for(model.cfg, tcfg)
    opt = torch.optim.AdamW(_param_groups(model, tcfg.weight_decay), lr=lr, betas=(0.9, 0.95))
    mel = torch.randn(batch, fe.n_mels, FRAMES) * 20 - 40
    dev = torch.device("cpu")

    def step(k: int) -> None:
        for g in opt.param_groups:
            g["lr"] = lr
        gen = mask_generator(0, k, dev, DistInfo(), batch, FRAMES // 4)
        with _autocast(dev, "auto"):
            loss = model(mel, generator=gen).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for k in range(2):
        step(k)
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < seconds:
        step(2 + n)
        n += 1
    dt = time.perf_counter() - t0
    fpe = train_flops_per_example(mcfg, fe, CLIP_SECONDS)
    return {
        "preset": preset,
        "params": count_params(model)["total"],
        "batch": batch,
        "threads": threads,
        "steps": n,
        "steps_per_s": n / dt,
        "examples_per_s": n * batch / dt,
        "flops_per_example": fpe,
        "gflops_per_s": n * batch * fpe / dt / 1e9,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float, default=None)
    args = ap.parse_args()
    presets = ["atto", "pico"] if args.quick else ["atto", "femto", "pico", "nano", "micro"]
    seconds = args.seconds or (1.0 if args.quick else 4.0)
    cells = []
    for preset in presets:
        for batch in (32, 64):
            for threads in (1, 2):
                cells.append(time_cell(preset, batch, threads, seconds))
                c = cells[-1]
                print(
                    f"{preset:6s} batch {batch:3d} threads {threads}: "
                    f"{c['steps_per_s']:.2f} steps/s",
                    file=sys.stderr,
                )
    out = {
        "bench": "train_cpu",
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}",
        "torch": torch.__version__,
        "clip_seconds": CLIP_SECONDS,
        "precision": "fp32",
        "quick": args.quick,
        "results": cells,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
