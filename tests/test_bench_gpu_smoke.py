"""bench/bench_gpu_train.py: the CPU smoke path runs and prints its JSON; the anchor's
result is parsed and compared like the GPU run will do (with a stand-in anchor script)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "bench_gpu_train.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_gpu_train", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cpu_tiny_prints_json(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--tiny"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    d = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in (
        "device",
        "config",
        "flops_per_sample",
        "flops_per_sample_anchor_formula",
        "matmul_peak_tflops",
        "variants",
        "samples_per_s",
        "mfu",
        "anchor",
        "ratio",
        "targets",
    ):
        assert key in d, key
    assert d["device"] == "cpu" and d["config"]["preset"] == "atto"
    assert d["config"]["tokens"] == 16 and d["config"]["visible"] == 4
    (v,) = d["variants"]
    assert v["variant"] == "eager" and v["trainer_path"] and v["loss_finite"]
    assert v["samples_per_s"] > 0 and v["tflops"] > 0 and 0 < v["mfu"]
    assert v["tflops"] == pytest.approx(d["flops_per_sample"] * v["samples_per_s"] / 1e12)
    assert d["samples_per_s"] == v["samples_per_s"]
    assert d["anchor"] == {"skipped": "needs CUDA"} and d["ratio"] is None
    assert json.loads((tmp_path / "bench_gpu_train.json").read_text()) == d


def test_flops_match_the_accounting_and_the_anchor_formula():
    from audioscale.config import FrontendConfig, ModelConfig
    from audioscale.models.accounting import tokens_per_example, train_flops_per_example
    from audioscale.models.ladder import resolve

    mod = _bench_module()
    cfg = resolve(ModelConfig(preset="base", max_seconds=10.24))
    fe = FrontendConfig()
    assert tokens_per_example(cfg, fe, 1008 * 160 / 16000) == (252, 63)
    ours = train_flops_per_example(cfg, fe, 10.08)
    anchor = mod.anchor_flops(252, 63, 768, 12, 512, 8)
    # ours adds the patch projection, decoder embedding and prediction head: a few percent
    assert anchor < ours < 1.1 * anchor


def test_anchor_subprocess_is_parsed(tmp_path):
    """A stand-in anchor writes gpu_anchor.json to $OUT as the real one does."""
    mod = _bench_module()
    fake = tmp_path / "anchor.py"
    runs = [
        {"config": "dasheng_base_like", "mode": "bf16", "samples_per_s": 2000.0},
        {"config": "dasheng_base_like", "mode": "bf16+compile", "samples_per_s": 3537.0},
        {"config": "audiomae_base_like", "mode": "bf16+compile", "samples_per_s": 9999.0},
        {"config": "dasheng_base_like", "mode": "fp32", "error": "OOM"},
    ]
    fake.write_text(
        "import json, os\n"
        f"runs = {runs!r}\n"
        "for r in runs: print(json.dumps(r))\n"
        "json.dump({'matmul_bf16_tflops': 790.0, 'runs': runs},"
        " open(os.path.join(os.environ['OUT'], 'gpu_anchor.json'), 'w'))\n"
    )
    res = mod.run_anchor(fake, timeout=60)
    assert res["rc"] == 0 and res["matmul_bf16_tflops"] == 790.0
    assert mod.anchor_best(res) == 3537.0
    # without the file, the printed JSON lines are used
    fake.write_text(f"import json\nfor r in {runs!r}: print(json.dumps(r))\n")
    res = mod.run_anchor(fake, timeout=60)
    assert mod.anchor_best(res) == 3537.0
    # a failing anchor is reported, not fatal
    fake.write_text("raise SystemExit('no GPU')\n")
    res = mod.run_anchor(fake, timeout=60)
    assert res["rc"] == 1 and "no GPU" in res["stderr_tail"] and mod.anchor_best(res) is None


def test_settings_defaults():
    mod = _bench_module()
    s = mod.settings(mod.parse_args([]), cuda=True)
    assert (s["preset"], s["frames"], s["batch"]) == ("base", 1008, 128)
    assert s["variants"] == ["eager", "compile", "compile-nogen"]
    q = mod.settings(mod.parse_args(["--quick"]), cuda=False)
    assert q["tiny"] and q["preset"] == "atto" and q["variants"] == ["eager"]
    with pytest.raises(SystemExit):
        mod.settings(mod.parse_args(["--variants", "warp-speed"]), cuda=True)
