"""CPU pretraining speed per ladder preset (issue 4, "Performance"; issue 23, "CPU step").

What is timed: the trainer's update step, ``train_step`` with ``build_optimizer``
(audioscale.train.trainer), on a synthetic log-mel batch: the seeded mask uniforms
(``mask_noise``), per-step lr, forward, backward, gradient clipping at 1.0, fused AdamW
with the trainer's parameter groups, fp32 (the CPU default, ``precision: auto``). The
input pipeline is not included (bench_featcache.py measures it: it is far faster).

Grid mode (default): presets that fit a CPU study (atto, femto, pico, nano, micro;
``--quick``: atto, pico), batch 32 and 64, ``torch.set_num_threads`` 1 and 2, 2-s clips
(``--frames 200``: 50 tokens). Each cell: 2 warm-up steps, then steps until ``--seconds``
have passed (at least 3).

A/B mode (``--ab``): for each preset x threads x crop length, every variant of
``--variants`` gets its own model and optimiser (same seed), then the variants take
turns, ``--steps`` steps each, for ``--rounds`` rounds, so a busy moment of a shared
machine slows them alike. Reported: the median steps/s over rounds and the median of the
per-round ratio to ``today`` (the route before issue 23) or to the first variant; the
same from the process's CPU time (``time.process_time``: steps per CPU second), which a
busy machine distorts less than wall time since time spent descheduled is not counted
(at one thread it is the step's own compute; at two it sums both threads).
Variants:

- ``today``: the step before issue 23: norm-pix targets by ``mean`` / ``var`` (Welford),
  q, k, v as three ``select`` views (three zero-filled ``select_backward`` in backward).
- ``current``: the code as it is.
- ``explicit_attn``: ``current`` with softmax(q k^T / sqrt(d)) v as three ops instead of
  ``F.scaled_dot_product_attention``.
- ``bf16``: ``current`` under bf16 autocast.
- ``foreach_adamw``: ``current`` with the multi-tensor (foreach) AdamW instead of fused.
- ``mkldnn_off``: ``current`` with ``torch.backends.mkldnn`` disabled.
- ``compile``: ``current`` with ``torch.compile(model)`` (inductor); the compile time
  (first 3 steps' wall minus 3 steady steps) is reported with the steps at which it pays.

Every cell also gets the achieved GFLOP/s (``train_flops_per_example``, the accounting's
3 x forward matmul FLOPs) per wall and per CPU second, and the latter's fraction of this
machine's single-thread fp32 matmul peak, measured at the start in CPU time (best of
``torch.mm`` at n = 256, 512, 1024, one thread; at two threads the fraction is per CPU
second, i.e. it falls when the second thread adds little).
``--profile`` prints where one step's time goes (torch.profiler, one thread, ``current``).
``--interop N`` sets ``torch.set_num_interop_threads`` first (once per process).

Prints one JSON line last. Usage:
  python bench/bench_train_cpu.py [--quick] [--seconds S]
  python bench/bench_train_cpu.py --ab --presets femto,pico --threads 1,2 --frames 100,200
      --variants today,current,explicit_attn [--rounds 15] [--steps 10] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import types
import warnings

import torch
import torch.nn.functional as F

from audioscale.config import FrontendConfig, ModelConfig, TrainConfig
from audioscale.models.accounting import count_params, train_flops_per_example
from audioscale.models.blocks import Attention
from audioscale.models.mae import build_mae
from audioscale.train import recipe
from audioscale.train.ddp import DistInfo
from audioscale.train.trainer import build_optimizer, mask_noise, train_step

FRAMES_PER_SECOND = 100  # 10 ms hop; 1-s crops give 100 frames (25 tokens) after patching
VARIANTS = ("today", "current", "explicit_attn", "bf16", "foreach_adamw", "mkldnn_off", "compile")
DEV = torch.device("cpu")


def matmul_peak() -> dict:
    """Single-thread fp32 ``torch.mm`` GFLOP/s at n = 256, 512, 1024 (best of 5 blocks),
    per CPU second of this process (a shared machine's descheduled time not counted)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    for n in (256, 512, 1024):
        a, b = torch.randn(n, n), torch.randn(n, n)
        reps = max(2, int(2e9 / (2 * n**3)))
        best = float("inf")
        for _ in range(5):
            t0 = time.process_time()
            for _ in range(reps):
                torch.mm(a, b)
            best = min(best, (time.process_time() - t0) / reps)
        out[n] = 2 * n**3 / best / 1e9
    torch.set_num_threads(old)
    return out


def _targets_mean_var(self, patches: torch.Tensor) -> torch.Tensor:
    """MAE.targets before issue 23 (frozen copy, the ``today`` route)."""
    if not self.norm_pix_loss:
        return patches
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True, unbiased=False)
    return (patches - mean) / (var + 1e-6).sqrt()


def _attention_select(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None):
    """Attention.forward before issue 23 (frozen copy, the ``today`` route): q, k, v by
    three ``select`` views of the fused projection."""
    b, n, d = x.shape
    qkv = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
    y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attn_mask)
    return self.proj(y.transpose(1, 2).reshape(b, n, d))


def _explicit_attention(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None):
    b, n, d = x.shape
    q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
    a = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if attn_mask is not None:
        a = a.masked_fill(~attn_mask, float("-inf"))
    y = a.softmax(-1) @ v
    return self.proj(y.transpose(1, 2).reshape(b, n, d))


class Cell:
    """One variant's model, optimiser and batch; ``step(k)`` is the trainer's step ``k``."""

    def __init__(self, variant: str, preset: str, frames: int, batch: int):
        torch.manual_seed(0)
        fe = FrontendConfig()
        self.mcfg = ModelConfig(preset=preset)
        self.model = model = build_mae(self.mcfg, fe)
        t = TrainConfig(batch_size=batch)
        self.lr = recipe.lr_for(model.cfg, t)
        attention = {"today": _attention_select, "explicit_attn": _explicit_attention}
        if variant == "today":
            model.targets = types.MethodType(_targets_mean_var, model)
        if variant in attention:
            for m in model.modules():
                if isinstance(m, Attention):
                    m.forward = types.MethodType(attention[variant], m)
        self.opt = build_optimizer(model, t, self.lr, DEV)
        if variant == "foreach_adamw":
            kw = {"lr": self.lr, "betas": (t.beta1, t.beta2)}
            groups = [
                {"params": g["params"], "weight_decay": g["weight_decay"]}
                for g in self.opt.param_groups
            ]
            self.opt = torch.optim.AdamW(groups, foreach=True, **kw)
        self.net = torch.compile(model) if variant == "compile" else model
        self.precision = "bf16" if variant == "bf16" else "fp32"
        self.mkldnn = variant != "mkldnn_off"
        self.mel = torch.randn(batch, fe.n_mels, frames) * 20 - 40
        self.batch, self.tokens = batch, frames // 4
        self.flops = train_flops_per_example(self.mcfg, fe, frames / FRAMES_PER_SECOND)

    def step(self, k: int) -> None:
        noise = mask_noise(0, k, DEV, DistInfo(), self.batch, self.tokens)
        with torch.backends.mkldnn.flags(enabled=self.mkldnn):
            train_step(self.net, self.opt, self.mel, noise, self.lr, self.precision, 1.0)

    def run(self, start: int, n: int) -> tuple[float, float]:
        """(steps per wall second, steps per CPU second of this process) of ``n`` steps
        from step ``start``."""
        t0, c0 = time.perf_counter(), time.process_time()
        for k in range(start, start + n):
            self.step(k)
        return n / (time.perf_counter() - t0), n / (time.process_time() - c0)


def time_cell(preset: str, batch: int, threads: int, seconds: float, frames: int) -> dict:
    torch.set_num_threads(threads)
    c = Cell("current", preset, frames, batch)
    c.run(0, 2)
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < seconds:
        c.step(2 + n)
        n += 1
    dt = time.perf_counter() - t0
    return {
        "preset": preset,
        "params": count_params(c.model)["total"],
        "batch": batch,
        "threads": threads,
        "frames": frames,
        "steps": n,
        "steps_per_s": n / dt,
        "examples_per_s": n * batch / dt,
        "flops_per_example": c.flops,
        "gflops_per_s": n * batch * c.flops / dt / 1e9,
    }


def ab_cells(preset: str, threads: int, frames: int, args, peak: float) -> list[dict]:
    """The variants of one (preset, threads, frames), interleaved (module docstring)."""
    torch.set_num_threads(threads)
    cells, warm = {}, {}
    for v in args.variants:
        cells[v] = Cell(v, preset, frames, args.batch)
        t0 = time.perf_counter()
        cells[v].run(0, 3)
        warm[v] = time.perf_counter() - t0
    rates, cpu = {v: [] for v in cells}, {v: [] for v in cells}
    for r in range(args.rounds):
        for v, c in cells.items():
            wall_rate, cpu_rate = c.run(3 + r * args.steps, args.steps)
            rates[v].append(wall_rate)
            cpu[v].append(cpu_rate)
    ref = "today" if "today" in cells else args.variants[0]
    load = os.getloadavg()[0]
    out = []
    for v, c in cells.items():
        sps = statistics.median(rates[v])
        cps = statistics.median(cpu[v])
        gf, gf_cpu = (x * args.batch * c.flops / 1e9 for x in (sps, cps))
        row = {
            "preset": preset,
            "threads": threads,
            "frames": frames,
            "batch": args.batch,
            "variant": v,
            "steps_per_s": round(sps, 2),
            "speedup_vs_" + ref: round(statistics.median(map(_ratio, rates[v], rates[ref])), 3),
            "steps_per_cpu_s": round(cps, 2),
            "cpu_speedup_vs_" + ref: round(statistics.median(map(_ratio, cpu[v], cpu[ref])), 3),
            "gflops_per_s": round(gf, 1),
            "gflops_per_cpu_s": round(gf_cpu, 1),
            "frac_of_1t_peak": round(gf_cpu / peak, 3),
            "load1": round(load, 2),
        }
        if v == "compile":
            row["compile_s"] = round(warm[v] - 3 / sps, 1)
        out.append(row)
        print(json.dumps(row), file=sys.stderr)
    return out


def _ratio(a: float, b: float) -> float:
    return a / b


CATEGORIES = (  # (category, substrings of profiler event names), first match wins
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul")),
    ("attention", ("scaled_dot_product", "softmax")),
    ("optimizer", ("Optimizer.", "adamw", "_foreach_")),
    ("grad clip", ("linalg_vector_norm", "aten::norm", "clamp")),
    ("layer norm", ("layer_norm",)),
    ("gelu", ("gelu",)),
    ("targets and loss", ("aten::var", "aten::pow", "aten::sub", "aten::div", "aten::mean")),
    ("masking and gather", ("sort", "gather", "scatter", "aten::cat", "aten::rand", "index")),
    ("copies", ("copy_", "_to_copy", "contiguous", "clone", "select_backward", "stack")),
    ("elementwise other", ("aten::add", "aten::mul", "aten::fill_", "aten::sum", "zero_")),
    ("views, allocation, autograd", ("autograd", "Backward", "aten::t", "view", "as_strided")),
    ("views, allocation, autograd", ("empty", "unsqueeze", "reshape", "select", "expand")),
    ("views, allocation, autograd", ("linear", "permute", "detach", "unbind", "slice", "alias")),
)


def profile_step(preset: str, frames: int, batch: int, n: int = 20) -> dict:
    """Self-CPU time of ``n`` steps by category (CATEGORIES), one thread, ``current``.
    "outside aten ops" is the profiled wall minus the ops' self time: Python, module
    calls and autograd bookkeeping."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(1)
    c = Cell("current", preset, frames, batch)
    c.run(0, 5)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        c.run(5, n)
        wall_us = (time.perf_counter() - t0) * 1e6
    cats: dict[str, float] = {}
    for e in prof.key_averages():
        name = next((k for k, subs in CATEGORIES if any(s in e.key for s in subs)), "other ops")
        cats[name] = cats.get(name, 0.0) + e.self_cpu_time_total
    cats["outside aten ops"] = max(0.0, wall_us - sum(cats.values()))
    share = {k: round(v / wall_us, 3) for k, v in sorted(cats.items(), key=lambda kv: -kv[1])}
    ms = round(wall_us / n / 1e3, 2)
    print(f"profile {preset} frames {frames}: {ms} ms/step (profiled) {share}", file=sys.stderr)
    return {"preset": preset, "frames": frames, "ms_per_step_profiled": ms, "share": share}


def _grid(args) -> list[dict]:
    presets = ["atto", "pico"] if args.quick else ["atto", "femto", "pico", "nano", "micro"]
    seconds = args.seconds or (1.0 if args.quick else 4.0)
    cells = []
    for preset in presets:
        for batch in (32, 64):
            for threads in (1, 2):
                c = time_cell(preset, batch, threads, seconds, args.frames[0])
                cells.append(c)
                msg = f"{preset:6s} batch {batch:3d} threads {threads}: {c['steps_per_s']:.2f}"
                print(msg + " steps/s", file=sys.stderr)
    return cells


def _csv(kind):
    return lambda s: [kind(x) for x in s.split(",") if x]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--ab", action="store_true", help="interleaved variants (docstring)")
    ap.add_argument("--presets", type=_csv(str), default=["femto", "pico"])
    ap.add_argument("--threads", type=_csv(int), default=[1, 2])
    ap.add_argument("--frames", type=_csv(int), default=None, help="crop frames (100 = 1 s)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--variants", type=_csv(str), default=["today", "current"])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--interop", type=int, default=None)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
    if bad := [v for v in args.variants if v not in VARIANTS]:
        ap.error(f"--variants: unknown {bad}; choose from {', '.join(VARIANTS)}")
    if args.interop:
        torch.set_num_interop_threads(args.interop)
    args.frames = args.frames or ([100, 200] if args.ab else [200])
    out = {
        "bench": "train_cpu",
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}",
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "precision": "fp32",
        "quick": args.quick,
        "interop_threads": torch.get_num_interop_threads(),
        "load_start": [round(x, 2) for x in os.getloadavg()],
    }
    if args.ab or args.profile:
        out["matmul_peak_1t_gflops"] = peak = {n: round(g, 1) for n, g in matmul_peak().items()}
        print(f"single-thread fp32 matmul GFLOP/s {peak}", file=sys.stderr)
    if args.profile:
        out["profile"] = [profile_step(p, f, args.batch) for p in args.presets for f in args.frames]
    if args.ab:
        out["ab"] = [
            row
            for p in args.presets
            for th in args.threads
            for f in args.frames
            for row in ab_cells(p, th, f, args, max(peak.values()))
        ]
    if not (args.ab or args.profile):
        out["results"] = _grid(args)
    out["load_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
