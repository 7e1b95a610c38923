"""A tiny synthetic corpus and sweep specs for the sweep tests (fast: < 1 s to build).

Pool: 1-s tones and noises (train + heldout splits). Two tasks with known structure:
``tone`` (low vs high pitch, music) and ``noise`` (white vs low-passed noise,
environment). Real enough to exercise every stage; small enough for seconds-long runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def _clip(rng: np.random.Generator, kind: str) -> np.ndarray:
    t = np.arange(SR) / SR
    if kind == "low":
        x = np.sin(2 * np.pi * rng.uniform(200, 400) * t)
    elif kind == "high":
        x = np.sin(2 * np.pi * rng.uniform(2000, 4000) * t)
    elif kind == "white":
        x = rng.standard_normal(SR)
    else:  # low-passed noise
        x = np.convolve(rng.standard_normal(SR), np.ones(32) / 32, mode="same") * 4
    return (0.3 * x / np.abs(x).max() + 0.01 * rng.standard_normal(SR)).astype(np.float32)


def _write(path: Path, x: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, SR)


def make_corpus(root: Path, n_train: int = 24, n_heldout: int = 8, per_class: int = 8) -> Path:
    rng = np.random.default_rng(0)
    kinds = ["low", "high", "white", "brown"]
    lines = ["path,duration,source,split"]
    for i in range(n_train + n_heldout):
        split = "train" if i < n_train else "heldout"
        rel = f"audio/{split}_{i:03d}.wav"
        _write(root / "pool" / rel, _clip(rng, kinds[i % 4]))
        lines.append(f"{rel},1.0,synth,{split}")
    (root / "pool" / "manifest.csv").write_text("\n".join(lines) + "\n")
    for task, domain, classes in [("tone", "music", ["low", "high"]),
                                  ("noise", "environment", ["white", "brown"])]:  # fmt: skip
        tdir = root / "tasks" / task
        rows = ["path,label,split"]
        for c in classes:
            for j in range(per_class):
                split = (
                    "train" if j < per_class // 2 else ("valid" if j == per_class // 2 else "test")
                )
                rel = f"{c}_{j}.wav"
                _write(tdir / rel, _clip(rng, c))
                rows.append(f"{rel},{c},{split}")
        (tdir / "manifest.csv").write_text("\n".join(rows) + "\n")
        (tdir / "task.yaml").write_text(
            f"name: {task}\ndomain: {domain}\nmetric: accuracy\nmultilabel: false\n"
        )
    return root


def tiny_spec(root: Path, axes: dict | None = None, **extra) -> dict:
    """A sweep over the tiny corpus: atto models, a handful of steps, clips of 1 s."""
    base = {
        "data": {"pool": str(root / "pool"), "clip_seconds": 1.0,
                 "cache_dir": str(root / "cache" / "features")},
        "model": {"preset": "atto"},
        "train": {"steps": 12, "batch_size": 8, "checkpoint_fractions": [0.25, 0.5],
                  "log_every": 4, "device": "cpu"},
        "eval": {"tasks": [str(root / "tasks")], "rankme_samples": 64},
    }  # fmt: skip
    spec = {"name": "tiny", "base": base, "axes": axes or {"steps": [8, 12]}}
    spec.update(extra)
    return spec


def fake_result(job, ctx, rankme: float) -> dict:
    """A well-formed result (what run_job returns) without any training."""
    row = {"checkpoint": "final", "step": 1, "fraction": 1.0, "is_final": True,
           "pool": ctx.pool_name, "level": "clip", "layer": -1, "centred": False,
           "n": len(ctx.pool_rows), "k": 8, "route": "svd", "rankme": rankme}  # fmt: skip
    info = {"rankme_pool": ctx.pool_name, "rankme_level": "clip", "rankme_layer": -1,
            "rankme_centred": False, "wall_s": 0.01}  # fmt: skip
    return {"run_id": job.run_id, "kind": job.kind, "info": info, "train_metrics": [],
            "spectral": [row], "probes": []}  # fmt: skip


def flaky_job(job, run_dir, ctx):
    """Fails the 8-step run until a file named ``fixed`` sits in the study folder; a run
    with 4 steps kills its own worker process (exit code 3)."""
    import os

    from audioscale.utils import atomic_save_json

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    steps = job.config.train.steps if job.kind == "trained" else 0
    if steps == 4:
        os._exit(3)
    if steps == 8 and not (run_dir.parent.parent / "fixed").exists():
        atomic_save_json(run_dir / "error.json", {"error": "ValueError: boom at step 3"})
        raise ValueError("boom at step 3")
    result = fake_result(job, ctx, float(steps + 1))
    atomic_save_json(run_dir / "result.json", result)
    return result


def lossy_job(job, run_dir, ctx):
    """Like flaky_job, plus: the 16-step run kills its worker on the first attempt only
    (a marker file remembers the attempt), as a lost node would."""
    import os

    marker = Path(run_dir).parent.parent / f"lost-{job.run_id}"
    if job.kind == "trained" and job.config.train.steps == 16 and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        os._exit(1)
    return flaky_job(job, run_dir, ctx)
