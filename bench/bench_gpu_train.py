"""GPU pretraining throughput of our MAE on the Dasheng-base-like config (issue 4, DESIGN.md
"Targets"), measured beside the reference anchor in the same run.

What is timed (per variant): the trainer's own update step, ``trainer.train_step``, called
exactly as ``trainer._train`` calls it, on a synthetic log-mel batch already on the device
(the input pipeline is measured separately): the schedule's lr (``Schedule.lr_at``), the
step's mask uniforms from ``trainer.mask_noise`` (the per-step seeded generator, drawn
outside the model and passed as ``noise=``), then inside ``train_step`` the lr assignment,
autocast (bf16 on CUDA), forward, ``zero_grad(set_to_none)``, backward, gradient clipping
at ``grad_clip``, fused AdamW from ``trainer.build_optimizer`` (no decay on 1-D params
and mask tokens), and the loss kept on the device by ``trainer.LossWindow.add``. Warm-up
steps first (they include compilation, reported as ``first_steps_s``), then ``--steps``
timed steps between two ``cuda.synchronize()``.

Config (the anchor's, /work/shared/bench/gpu_anchor_mae.py, read for its method):
64 mel × 1008 frames input, full-height 64 × 4 time patches → 252 tokens, mask 0.75 → 63
visible, encoder 768/12/12, decoder 512/8/16 (ladder preset ``base``,
``max_seconds`` 10.24 ≥ 10.08), batch 128, masked-patch MSE. Differences kept on purpose
because they are what our trainer runs: per-patch normalised targets (MAE's norm_pix
loss; a few element-wise ops), fixed sin-cos positions instead of learned ones, and
gradient clipping (the anchor does not clip).

Variants (``--variants``): ``eager`` (trainer with ``train.compile: false``), ``compile``
(``torch.compile(net)`` as the trainer does with ``train.compile: true``; the noise is an
input, so the forward is one graph), ``compile-nogen`` (same, the uniforms drawn from the
global RNG: the cost of the per-step seeded generator), ``compile-max`` (mode
``max-autotune-no-cudagraphs``; slow to compile), ``anchor-like`` (compiled, global-RNG
noise, no clipping: the anchor's step). All go through ``train_step``; only ``eager`` and
``compile`` are the trainer's exact path (``trainer_path``). Default on CUDA: eager,
compile, compile-nogen.

Numbers: ``samples_per_s``; ``flops_per_sample`` =
audioscale.models.accounting.train_flops_per_example (3 × forward, attention and
embeddings included) and ``flops_per_sample_anchor_formula`` (the anchor's count:
blocks only); ``tflops`` achieved with our count; ``mfu`` = tflops / the measured bf16
8192³ matmul peak (3 warm-up, 10 timed, as the anchor). Then, when
``.gpu/gpu_anchor_mae.py`` exists (or ``--anchor PATH``) and CUDA is there, the anchor
runs as a subprocess (``OUT`` set to a temporary folder; its ``gpu_anchor.json`` is
read) and ``ratio`` = our best trainer-path variant (eager or compile) / the anchor's
``dasheng_base_like`` bf16+compile samples/s; ``ratio_best_variant`` uses our best
variant of any kind. Targets: ratio ≥ 1.25, mfu ≥ 0.40.

The last stdout line is one JSON object (bench/run_all.py reads it); progress goes to
stderr; with ``$OUT`` set the JSON is also written to ``$OUT/bench_gpu_train.json``
(after every variant, so a run cut short still leaves its numbers).

CPU: ``--device cpu --tiny`` (atto, 64 frames, batch 4, fp32, eager, a few steps) runs
the same code path for tests; ``--quick`` without CUDA means exactly that, and with CUDA
fewer steps and variants eager + compile.

Usage: python bench/bench_gpu_train.py [--quick] [--device cuda|cpu] [--tiny]
       [--variants eager,compile,...] [--steps N] [--warmup N] [--batch N]
       [--anchor PATH | --no-anchor] [--time-budget S]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing

VARIANTS = {
    # name: (compile mode or None, per-step seeded noise, grad clip, trainer path)
    "eager": (None, True, True, True),
    "compile": ("default", True, True, True),
    "compile-nogen": ("default", False, True, False),
    "compile-max": ("max-autotune-no-cudagraphs", True, True, False),
    "anchor-like": ("default", False, False, False),
}
ANCHOR_CONFIG = "dasheng_base_like"
ANCHOR_MODE = "bf16+compile"


def log(msg: str) -> None:
    print(f"[bench_gpu_train] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    ap.add_argument("--tiny", action="store_true", help="atto model, 64 frames, batch 4")
    ap.add_argument("--quick", action="store_true", help="fewer steps (CPU: implies --tiny)")
    ap.add_argument("--variants", default=None, help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--frames", type=int, default=None, help="mel frames per example")
    ap.add_argument("--anchor", default=str(ROOT / ".gpu" / "gpu_anchor_mae.py"))
    ap.add_argument("--no-anchor", action="store_true")
    ap.add_argument(
        "--time-budget", type=float, default=560.0, help="seconds; the anchor gets what is left"
    )
    return ap.parse_args(argv)


def settings(args: argparse.Namespace, cuda: bool) -> dict:
    """Resolve defaults: the full config on CUDA, the tiny one on CPU / --tiny."""
    tiny = args.tiny or not cuda
    if tiny:
        s = {"preset": "atto", "frames": 64, "batch": 4, "warmup": 1, "steps": 2}
        variants = ["eager"]
    else:
        s = {"preset": "base", "frames": 1008, "batch": 128, "warmup": 8, "steps": 30}
        variants = ["eager", "compile", "compile-nogen"]
        if args.quick:
            s.update(warmup=5, steps=10)
            variants = ["eager", "compile"]
    if args.variants:
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    for key in ("frames", "batch", "warmup", "steps"):
        if getattr(args, key) is not None:
            s[key] = getattr(args, key)
    s["variants"] = variants
    s["tiny"] = tiny
    return s


def matmul_peak(torch, device: str) -> tuple[float, str]:
    """TFLOP/s of a square matmul: bf16 8192³ on CUDA (as the anchor), fp32 512³ on CPU."""
    if device == "cuda":
        n, dtype, warm, reps = 8192, torch.bfloat16, 3, 10
    else:
        n, dtype, warm, reps = 512, torch.float32, 1, 2
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(warm):
        a @ b
    sync(torch, device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(torch, device)
    dt = time.perf_counter() - t
    return reps * 2 * n**3 / dt / 1e12, f"{str(dtype).split('.')[-1]} {n}^3"


def sync(torch, device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run_variant(torch, name: str, s: dict, device_str: str) -> dict:
    """Time one variant, then free its model, optimizer and compiled graphs."""
    import gc

    try:
        return _measure(torch, name, s, device_str)
    finally:
        gc.collect()
        if VARIANTS[name][0] is not None:
            torch._dynamo.reset()
        if device_str == "cuda":
            torch.cuda.empty_cache()


def _measure(torch, name: str, s: dict, device_str: str) -> dict:
    """Build model + optimizer as the trainer does, time ``s['steps']`` calls of its
    ``train_step``."""
    from audioscale.config import FrontendConfig, ModelConfig, TrainConfig
    from audioscale.models.accounting import count_params, tokens_per_example
    from audioscale.models.mae import build_mae
    from audioscale.train.ddp import DistInfo
    from audioscale.train.schedule import Schedule
    from audioscale.train.trainer import LossWindow, build_optimizer, mask_noise, train_step

    mode, seeded, clip, trainer_path = VARIANTS[name]
    device = torch.device(device_str)
    t_cfg = TrainConfig()  # the trainer's defaults: betas, weight decay, grad clip, precision
    torch.manual_seed(0)
    model_cfg = ModelConfig(preset=s["preset"], max_seconds=10.24, mask_ratio=0.75)
    fe = FrontendConfig()
    model = build_mae(model_cfg, fe).to(device)
    params = count_params(model)
    total = s["warmup"] + s["steps"]
    opt = build_optimizer(model, t_cfg, 1e-4, device)
    sched = Schedule(1e-4, min(s["warmup"], total), total, t_cfg.min_lr_frac)
    net = model
    if mode is not None:
        net = torch.compile(model) if mode == "default" else torch.compile(model, mode=mode)
    b = s["batch"]
    mel = (torch.randn(b, fe.n_mels, s["frames"], device=device) * 20.0 - 40.0).float()
    n_tok = model.encoder.patches(mel[:1]).shape[1]
    clip_seconds = s["frames"] * fe.hop_length / fe.sample_rate
    assert tokens_per_example(model.cfg, fe, clip_seconds)[0] == n_tok
    info = DistInfo()
    window = LossWindow(info, device)
    grad_clip = t_cfg.grad_clip if clip else None

    def step(k: int) -> None:  # the body of trainer._train's loop, minus logging
        lr = sched.lr_at(k)
        x = mel.to(device, non_blocking=True)
        if seeded:
            noise = mask_noise(0, k, device, info, b, n_tok)
        else:
            noise = torch.rand(b, n_tok, device=device)
        window.add(train_step(net, opt, x, noise, lr, t_cfg.precision, grad_clip))

    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for k in range(s["warmup"]):
        step(k)
    sync(torch, device_str)
    first = time.perf_counter() - t0
    t1 = time.perf_counter()
    for k in range(s["warmup"], total):
        step(k)
    sync(torch, device_str)
    dt = (time.perf_counter() - t1) / s["steps"]
    loss_mean = window.close()
    out = {
        "variant": name,
        "compile": mode,
        "mask_generator": seeded,
        "grad_clip": clip,
        "trainer_path": trainer_path,
        "step_ms": dt * 1e3,
        "samples_per_s": b / dt,
        "first_steps_s": first,
        "mean_loss": loss_mean,
        "loss_finite": math.isfinite(loss_mean),
        "params": params,
        "tokens": n_tok,
        "clip_seconds": clip_seconds,
    }
    if device.type == "cuda":
        out["max_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def anchor_flops(n: int, keep: int, d: int, depth: int, dd: int, ddepth: int) -> float:
    """The anchor's FLOP count (blocks only, 3 × forward), for like-for-like MFU."""

    def layer(tokens: int, width: int) -> float:
        return tokens * (24 * width * width + 4 * tokens * width)

    return 3 * (depth * layer(keep, d) + ddepth * layer(n, dd))


def run_anchor(path: Path, timeout: float) -> dict:
    """Run the anchor script in a subprocess; its JSON result plus our pick of its best."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OUT": tmp}
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, str(path)],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
            )
        except subprocess.TimeoutExpired as e:
            runs = _json_lines(e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout)
            return {"error": f"timed out after {timeout:.0f} s", "runs": runs}
        wall = time.perf_counter() - t0
        res_path = Path(tmp) / "gpu_anchor.json"
        if res_path.is_file():
            res = json.loads(res_path.read_text())
        else:
            res = {"runs": _json_lines(proc.stdout)}
    res["rc"] = proc.returncode
    res["wall_s"] = wall
    if proc.returncode:
        res["stderr_tail"] = proc.stderr[-800:]
    return res


def _json_lines(text: str | None) -> list[dict]:
    out = []
    for ln in (text or "").splitlines():
        if ln.startswith("{") and ln.endswith("}"):
            try:
                d = json.loads(ln)
            except ValueError:
                continue
            if "config" in d:
                out.append(d)
    return out


def anchor_best(res: dict) -> float | None:
    """The anchor's dasheng_base_like bf16+compile samples/s (None if it did not run)."""
    vals = [
        r["samples_per_s"]
        for r in res.get("runs", [])
        if r.get("config") == ANCHOR_CONFIG
        and r.get("mode") == ANCHOR_MODE
        and "samples_per_s" in r
    ]
    return max(vals) if vals else None


def save(result: dict) -> None:
    out = os.environ.get("OUT")
    if out and Path(out).is_dir():
        (Path(out) / "bench_gpu_train.json").write_text(json.dumps(result, indent=1))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    try:
        import torch

        import audioscale.train.trainer  # noqa: F401  (pydantic, yaml, safetensors)
    except ImportError as e:
        print(
            f"bench_gpu_train: missing Python package {e.name!r}; install it first "
            "(the GPU machine lacks pydantic: carry its wheel)",
            file=sys.stderr,
        )
        return 2
    cuda_ok = torch.cuda.is_available()
    device = args.device or ("cuda" if cuda_ok else "cpu")
    if device.startswith("cuda") and not cuda_ok:
        print("bench_gpu_train: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    device = "cuda" if device.startswith("cuda") else "cpu"
    s = settings(args, device == "cuda")
    if device == "cpu":
        torch.set_num_threads(1)
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    from audioscale.config import FrontendConfig, ModelConfig
    from audioscale.models.accounting import tokens_per_example, train_flops_per_example
    from audioscale.models.ladder import resolve

    fe = FrontendConfig()
    mcfg = resolve(ModelConfig(preset=s["preset"], max_seconds=10.24, mask_ratio=0.75))
    clip_seconds = s["frames"] * fe.hop_length / fe.sample_rate
    fps = train_flops_per_example(mcfg, fe, clip_seconds)
    n, keep = tokens_per_example(mcfg, fe, clip_seconds)
    fps_anchor = anchor_flops(
        n, keep, mcfg.width, mcfg.depth, mcfg.decoder_width, mcfg.decoder_depth
    )
    peak, peak_kind = matmul_peak(torch, device)
    log(f"{device}: matmul peak {peak:.1f} TFLOP/s ({peak_kind}); settings {s}")
    result = {
        "bench": "gpu_train",
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "config": {
            "preset": s["preset"],
            "width": mcfg.width,
            "depth": mcfg.depth,
            "heads": mcfg.heads,
            "decoder": [mcfg.decoder_width, mcfg.decoder_depth, mcfg.decoder_heads],
            "n_mels": fe.n_mels,
            "frames": s["frames"],
            "tokens": n,
            "visible": keep,
            "mask_ratio": 0.75,
            "batch": s["batch"],
            "precision": "bf16 autocast" if device == "cuda" else "fp32",
            "warmup_steps": s["warmup"],
            "timed_steps": s["steps"],
        },
        "flops_per_sample": fps,
        "flops_per_sample_anchor_formula": fps_anchor,
        "matmul_peak_tflops": peak,
        "matmul_peak_kind": peak_kind,
        "variants": [],
    }
    for name in s["variants"]:
        log(f"variant {name} ...")
        try:
            r = run_variant(torch, name, s, device)
            r["tflops"] = fps * r["samples_per_s"] / 1e12
            r["mfu"] = r["tflops"] / peak
            r["mfu_anchor_formula"] = fps_anchor * r["samples_per_s"] / 1e12 / peak
        except Exception as e:  # one failing variant (e.g. a compile error) must not lose the rest
            r = {"variant": name, "error": repr(e)[:400]}
        log(json.dumps(r))
        result["variants"].append(r)
        save(result)
    ok = [r for r in result["variants"] if "samples_per_s" in r]
    best = max(ok, key=lambda r: r["samples_per_s"], default=None)
    best_trainer = max(
        (r for r in ok if r["trainer_path"]), key=lambda r: r["samples_per_s"], default=None
    )
    result["best_variant"] = best["variant"] if best else None
    result["best_trainer_variant"] = best_trainer["variant"] if best_trainer else None
    result["samples_per_s"] = best_trainer["samples_per_s"] if best_trainer else None
    result["mfu"] = best_trainer["mfu"] if best_trainer else None

    anchor_path = Path(args.anchor)
    if args.no_anchor:
        result["anchor"] = {"skipped": "--no-anchor"}
    elif device != "cuda":
        result["anchor"] = {"skipped": "needs CUDA"}
    elif not anchor_path.is_file():
        result["anchor"] = {"skipped": f"{anchor_path} not found"}
    else:
        left = args.time_budget - (time.perf_counter() - t_start)
        if left < 60:
            result["anchor"] = {"skipped": f"only {left:.0f} s of --time-budget left"}
        else:
            log(f"anchor {anchor_path} (timeout {left:.0f} s) ...")
            result["anchor"] = run_anchor(anchor_path, left)
    a = anchor_best(result["anchor"])
    result["anchor_samples_per_s"] = a
    result["ratio"] = best_trainer["samples_per_s"] / a if a and best_trainer else None
    result["ratio_best_variant"] = best["samples_per_s"] / a if a and best else None
    result["targets"] = {"ratio": 1.25, "mfu": 0.40}
    result["wall_s"] = time.perf_counter() - t_start
    save(result)
    print(json.dumps(result), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
