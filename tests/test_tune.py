"""audioscale tune: lr grid per size, pick by held-out loss, power-law fit, load_tuned_lr."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

import audioscale.cli.tune  # noqa: F401  (registers the command)
from audioscale.cli import main
from audioscale.config import ModelConfig, RunConfig
from audioscale.data.corpus import synthetic_pool
from audioscale.data.manifest import read_manifest, write_manifest
from audioscale.errors import ConfigError, DataError
from audioscale.train import recipe
from audioscale.train.tune import (
    TunePoint,
    classify,
    fit_power_law,
    load_tuned_lr,
    pick_best,
    run_name,
    size_model,
    tune,
)

torch.set_num_threads(1)

SIZES = ["atto", "w32d1h1"]
GRID = [0.5, 1.0, 4.0]
STEPS = 10


def _base(pool: Path, cache: Path) -> RunConfig:
    return RunConfig.model_validate(
        {
            "data": {"pool": str(pool), "cache_dir": str(cache), "clip_seconds": 1.0},
            "model": {"preset": "pico"},
            "train": {"batch_size": 8, "device": "cpu", "threads": 1, "log_every": 5},
        }
    )


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    pool = synthetic_pool(root / "pool", n_train=10, n_heldout=3, seconds=(1.2, 2.0), seed=3)
    base = _base(pool, root / "cache")
    out = root / "out"
    res = tune(base, SIZES, GRID, steps=STEPS, out_dir=out, progress=False)
    return base, out, res


def test_tune_json_and_picks(tuned):
    base, out, res = tuned
    d = json.loads((out / "tune.json").read_text())
    assert d["steps"] == STEPS and d["grid"] == GRID and d["batch_size"] == 8
    assert [s["size"] for s in d["sizes"]] == SIZES
    for s, size in zip(d["sizes"], SIZES, strict=True):
        m = size_model(base.model, size)
        rule = recipe.lr_for(m, base.train)
        assert s["rule_lr"] == pytest.approx(rule)
        assert [p["lr"] for p in s["points"]] == pytest.approx([g * rule for g in GRID])
        for p in s["points"]:
            run = out / p["run"]
            done = json.loads((run / "done.json").read_text())
            assert done["steps"] == STEPS
            assert p["heldout_loss"] == pytest.approx(done["heldout_loss"])
            assert p["status"] == "ok"
            card = json.loads((run / "model_card.json").read_text())
            assert card["lr"] == pytest.approx(p["lr"])
            assert card["model"]["width"] == s["model"]["width"]
        losses = [p["heldout_loss"] for p in s["points"]]
        i = min(range(len(losses)), key=lambda j: (losses[j], s["points"][j]["lr"]))
        assert s["best_lr"] == pytest.approx(s["points"][i]["lr"])
        assert s["best_heldout_loss"] == pytest.approx(min(losses))
        assert s["at_grid_edge"] == (i in (0, len(GRID) - 1))
    assert d["sizes"][0]["model"]["width"] == 64 and d["sizes"][1]["model"]["width"] == 32
    # two widths: the fit passes exactly through both picks
    fit = d["fit"]
    assert fit["n"] == 2 and fit["r2"] is None
    for s in d["sizes"]:
        pred = fit["c"] * s["model"]["width"] ** (-fit["k"])
        assert pred == pytest.approx(s["best_lr"], rel=1e-9)
        assert d["predictions"][s["size"]]["tuned"] == s["best_lr"]
    # the rule at these two sizes: width 32 -> 64 halves lr, depth 1 -> 2 divides by sqrt 2
    assert d["rule_effective_exponent"] == pytest.approx(1.5)
    assert d["rule_exponent"] == 1.0
    assert res.fit is not None and res.fit.k == pytest.approx(fit["k"])


def test_rerun_is_idempotent(tuned):
    base, out, res = tuned
    files = sorted(out.glob("*/done.json")) + sorted(out.glob("*/checkpoints/final.safetensors"))
    assert len(files) == 2 * len(SIZES) * len(GRID)
    before = {f: f.stat().st_mtime_ns for f in files}
    again = tune(base, SIZES, GRID, steps=STEPS, out_dir=out, progress=False)
    assert {f: f.stat().st_mtime_ns for f in files} == before
    assert again.to_dict() == res.to_dict()


def test_load_tuned_lr(tuned):
    base, out, _ = tuned
    d = json.loads((out / "tune.json").read_text())
    atto, custom = d["sizes"]
    # exact size match (preset name or the same explicit numbers) -> the pick
    assert load_tuned_lr(out / "tune.json", ModelConfig(preset="atto")) == atto["best_lr"]
    assert (
        load_tuned_lr(out, ModelConfig(preset=None, width=32, depth=1, heads=1))
        == (custom["best_lr"])
    )
    # another width -> the fitted rule
    fit = d["fit"]
    got = load_tuned_lr(d, ModelConfig(preset="pico"))
    assert got == pytest.approx(fit["c"] * 128 ** (-fit["k"]))
    # same width as atto but another depth is not an exact match -> fit at width 64
    got = load_tuned_lr(d, ModelConfig(preset="atto", depth=3))
    assert got == pytest.approx(fit["c"] * 64 ** (-fit["k"]))
    # batch rule: sqrt(batch ratio)
    got = load_tuned_lr(d, ModelConfig(preset="atto"), batch_size=32)
    assert got == pytest.approx(atto["best_lr"] * 2.0)
    # another family is not covered by the fit
    assert load_tuned_lr(d, ModelConfig(preset="pico", family="conformer")) is None
    # no fit (one size) and no match -> None
    one = {**d, "fit": None}
    assert load_tuned_lr(one, ModelConfig(preset="pico")) is None
    with pytest.raises(DataError):
        load_tuned_lr(out / "missing.json", ModelConfig(preset="atto"))


def test_diverged_run_is_excluded(tuned, tmp_path):
    base, out, _ = tuned
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    d = json.loads((copy / "tune.json").read_text())
    s = d["sizes"][0]
    victim = s["points"][[p["lr"] for p in s["points"]].index(s["best_lr"])]
    done_path = copy / victim["run"] / "done.json"
    done = json.loads(done_path.read_text())
    done["heldout_loss"] = float("nan")
    done_path.write_text(json.dumps(done))
    res = tune(base, SIZES, GRID, steps=STEPS, out_dir=copy, progress=False)
    r = res.sizes[0]
    assert [e["run"] for e in r.excluded] == [victim["run"]]
    assert r.excluded[0]["status"] == "diverged"
    rest = [p for p in s["points"] if p["run"] != victim["run"]]
    assert r.best_lr == pytest.approx(min(rest, key=lambda p: p["heldout_loss"])["lr"])
    text = (copy / "tune.json").read_text()
    assert "NaN" not in text  # strict JSON: the diverged loss is null
    assert (
        json.loads(text)["sizes"][0]["points"][GRID.index(victim["multiplier"])]["heldout_loss"]
        is None
    )


def test_cli_table_and_json(tuned, capsys):
    base, out, _ = tuned
    args = [
        "tune",
        "--set", f"data.pool={base.data.pool}",
        "--set", f"data.cache_dir={base.data.cache_dir}",
        "--set", "data.clip_seconds=1.0",
        "--set", "train.batch_size=8",
        "--set", "train.device=cpu",
        "--set", "train.threads=1",
        "--set", "train.log_every=5",
        "--sizes", ",".join(SIZES),
        "--steps", str(STEPS),
        "--grid", ",".join(f"{g:g}" for g in GRID),
        "--out", str(out),
    ]  # fmt: skip
    assert main([*args, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got == json.loads((out / "tune.json").read_text())
    assert main([*args, "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "atto" in text and "w32d1h1" in text and "x0.5" in text and "fit:" in text


def test_cli_user_errors(tuned, tmp_path, capsys):
    base, _, _ = tuned
    assert main(["tune", "--sizes", "atto,gigantic", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "gigantic" in err and len(err.strip().splitlines()) == 1
    assert main(["tune", "--sizes", "atto", "--grid", "1,x", "--out", str(tmp_path / "o")]) == 2
    assert "--grid" in capsys.readouterr().err
    # a pool without held-out clips cannot be tuned: fails before any training
    rows = [r for r in read_manifest(Path(base.data.pool) / "manifest.csv")]
    for r in rows:
        r["split"] = "train"
    write_manifest(tmp_path / "pool.csv", rows, columns=["path", "duration", "source", "split"])
    cfg = base.model_copy(
        update={"data": base.data.model_copy(update={"pool": str(tmp_path / "pool.csv")})}
    )
    with pytest.raises(DataError, match="heldout"):
        tune(cfg, ["atto"], [1.0], steps=2, out_dir=tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()


def test_size_specs():
    m = size_model(ModelConfig(preset="pico", mask_ratio=0.5), "w96d3")
    assert (m.width, m.depth, m.heads, m.mask_ratio) == (96, 3, 3, 0.5)
    assert size_model(ModelConfig(preset="pico", width=999), "femto").width == 96
    with pytest.raises(ConfigError, match="sizes"):
        size_model(ModelConfig(), "w50d2h3")  # 50 not divisible by 3 heads
    with pytest.raises(ConfigError, match="sizes"):
        size_model(ModelConfig(), "tiny2")
    assert run_name("atto", 0.00123456) == "atto-lr0.001235"


def test_pick_classify_and_fit():
    pts = [
        TunePoint(1.0, 2e-3, "a", 0.50, 0.6, "ok"),
        TunePoint(2.0, 1e-3, "b", 0.50, 0.6, "ok"),  # tie -> smaller lr wins
        TunePoint(4.0, 4e-3, "c", 0.10, 0.2, "diverged"),
        TunePoint(8.0, 8e-3, "d", None, 0.2, "no-heldout"),
    ]
    assert pick_best(pts).run == "b"
    assert pick_best(pts[2:]) is None
    assert classify(0.5, 0.6) == "ok"
    assert classify(float("nan"), 0.6) == "diverged"
    assert classify(0.5, float("inf")) == "diverged"
    assert classify(None, 0.6) == "no-heldout"
    widths = [64, 128, 256, 512]
    fit = fit_power_law(widths, [0.3 * w**-0.7 for w in widths])
    assert (
        fit.k == pytest.approx(0.7) and fit.c == pytest.approx(0.3) and fit.r2 == pytest.approx(1)
    )
    assert fit.predict(1024) == pytest.approx(0.3 * 1024**-0.7)
    noisy = fit_power_law(
        widths, [0.3 * w**-0.7 * f for w, f in zip(widths, [1.1, 0.9, 1.05, 1], strict=True)]
    )
    assert 0 < noisy.r2 < 1 and not math.isclose(noisy.k, 0.7)
    assert fit_power_law([64, 64], [1e-3, 2e-3]) is None


def test_cli_out_that_is_a_file_is_one_line(tmp_path, capsys):
    f = tmp_path / "tune.json"
    f.write_text("{}")
    assert main(["tune", "--sizes", "atto", "--steps", "2", "--out", str(f)]) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and len(err.strip().splitlines()) == 1
