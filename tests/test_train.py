"""Trainer, recipe, schedule and checkpoints on a tiny synthetic pool (atto preset, CPU)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from train_helpers import atto_config

from audioscale.cli import main
from audioscale.config import ModelConfig, TrainConfig
from audioscale.data.corpus import synthetic_pool
from audioscale.errors import ConfigError
from audioscale.train import heldout, recipe, trainer
from audioscale.train import plan as planning
from audioscale.train.checkpoint import STATE_FILE, list_checkpoints, load_mae, read_sidecar
from audioscale.train.schedule import Schedule


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    return synthetic_pool(tmp_path_factory.mktemp("pool"), n_train=10, n_heldout=3, seed=0)


def _cfg(pool: Path, cache: Path, *extra: str):
    return atto_config(pool, cache, *extra)


def _losses(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows]


# ----------------------------------------------------------------------------- recipe


def test_schedule_warmup_and_cosine():
    s = Schedule(peak=1e-3, warmup=10, total=100, min_lr_frac=0.1)
    lrs = [s.lr_at(i) for i in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(b > a for a, b in zip(lrs[:9], lrs[1:10], strict=True))
    assert all(b <= a for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[-1] == pytest.approx(1e-4)
    assert s.lr_at(10 + 89 // 2) == pytest.approx(
        1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi * 44 / 89))
    )


def test_recipe_rule():
    t = TrainConfig(base_lr=1e-3, batch_size=64)
    ref = ModelConfig(preset=None, width=128, depth=4, heads=4)
    assert recipe.lr_for(ref, t) == pytest.approx(1e-3)
    wide = ModelConfig(preset=None, width=256, depth=4, heads=4)
    assert recipe.lr_for(wide, t) == pytest.approx(5e-4)  # 1/width
    deep = ModelConfig(preset=None, width=128, depth=16, heads=4)
    assert recipe.lr_for(deep, t) == pytest.approx(5e-4)  # 1/sqrt(depth)
    assert recipe.lr_for(ref, TrainConfig(batch_size=256)) == pytest.approx(2e-3)  # sqrt(batch)
    assert recipe.lr_for(wide, TrainConfig(lr=3e-4)) == 3e-4  # explicit lr wins
    base = ModelConfig(preset="base")  # resolved from the ladder: 768 wide, 12 deep
    assert recipe.lr_for(base, t) == pytest.approx(1e-3 * 128 / 768 * math.sqrt(4 / 12))
    d = recipe.describe(wide, t, steps=1000)
    assert d["lr"] == pytest.approx(5e-4) and "Tensor Programs V" in d["rule"]
    assert d["warmup_steps"] == 50 and d["source"] == "rule"
    assert recipe.warmup_steps(TrainConfig(warmup_frac=0.01), 1000) == 40  # 2 / (1 - 0.95)
    assert recipe.warmup_steps(TrainConfig(warmup_frac=0.01), 50) == 10  # capped at steps / 5
    assert recipe.warmup_steps(TrainConfig(warmup_frac=0.0), 1000) == 0


def test_plan_budgets_and_checkpoint_steps(pool, tmp_path):
    cfg = _cfg(pool, tmp_path, "train.steps=640")
    p = planning.plan(cfg)
    assert p.steps == 640 and p.clip_frames == 100 and p.tokens_per_example == 25
    assert p.checkpoint_steps == [10, 20, 40, 80, 160, 320]
    assert planning.checkpoint_steps([1 / 64, 1 / 32, 1 / 2], 20) == [1, 10]
    assert planning.checkpoint_steps([], 20) == []
    assert planning.plan(_cfg(pool, tmp_path, "train.examples=100")).steps == 13
    assert planning.plan(_cfg(pool, tmp_path, "train.hours=0.1")).steps == 45  # 360 clips / 8
    fpe = p.flops_per_example
    assert planning.plan(_cfg(pool, tmp_path, f"train.flops={fpe * 8 * 7}")).steps == 7
    with pytest.raises(ConfigError, match="model.preset"):
        planning.plan(_cfg(pool, tmp_path, "model.preset=huge"))
    with pytest.raises(ConfigError, match="clip_seconds"):
        planning.plan(_cfg(pool, tmp_path, "data.clip_seconds=30"))


# ----------------------------------------------------------------------------- training


def test_cli_pretrain_lowers_heldout_loss(pool, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["pretrain", "--out", str(run), "--no-progress", "--json"]
    sets = [f"data.pool={pool}", f"data.cache_dir={tmp_path / 'cache'}", "model.preset=atto",
            "data.clip_seconds=1.0", "train.steps=60", "train.batch_size=16", "train.threads=1",
            "train.log_every=10"]  # fmt: skip
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    done = json.loads((run / "done.json").read_text())
    first = read_sidecar(run / "checkpoints" / "step_000001.safetensors")
    # the held-out reconstruction loss at the end is well below the one after one step
    assert done["heldout_loss"] < 0.8 * first["heldout_loss"]
    assert summary["heldout_loss"] == pytest.approx(done["heldout_loss"])
    assert summary["steps"] == 60 and summary["params"] > 1e5
    for key in ("steps", "examples", "hours_seen", "epochs", "data_hours", "flops", "final_loss",
                "wall_s", "tokens"):  # fmt: skip
        assert done[key] is not None
    assert done["examples"] == 960 and done["tokens"] == 960 * 25
    assert done["epochs"] == pytest.approx(960 * 1.0 / (done["data_hours"] * 3600))
    card = json.loads((run / "model_card.json").read_text())
    assert (
        card["params"]["encoder"] == summary["params"] < summary["params_total"]
        and card["model"]["width"] == 64
    )
    assert card["lr"] == pytest.approx(1e-3 * 2 * math.sqrt(2) * math.sqrt(16 / 64))
    assert "rule" in card["lr_rule"] and card["data"]["files"] == 10
    steps = [s for s, _, _ in list_checkpoints(run)]
    assert steps == [1, 2, 4, 8, 15, 30, 60]
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(10, 61, 10))
    assert {"loss", "lr", "examples", "tokens", "flops", "hours_seen", "epochs",
            "examples_per_s", "tokens_per_s"} <= set(metrics[0])  # fmt: skip
    # the final checkpoint loads without pickle and reproduces the trained weights
    mae, cfg = load_mae(run)
    state = torch.load(run / STATE_FILE, weights_only=True)
    for k, v in mae.state_dict().items():
        assert torch.equal(v, state["model"][k])
    assert cfg.model.width == 64
    # a finished run is returned at once and left untouched
    mtime = (run / "done.json").stat().st_mtime_ns
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["final_loss"] == pytest.approx(done["final_loss"])
    assert (run / "done.json").stat().st_mtime_ns == mtime


def test_train_step_is_the_training_step_and_sidecar_losses(pool, tmp_path):
    """The public pieces (build_optimizer, mask_noise, train_step), called as the loop calls
    them (and as bench/bench_gpu_train.py times them), give pretrain's weights bit for bit;
    every sidecar holds the same kind of loss: the window since the previous log line."""
    from audioscale.data.corpus import ClipDataset
    from audioscale.data.featcache import FeatureCache
    from audioscale.train.ddp import DistInfo

    cfg = _cfg(pool, tmp_path / "cache", "train.steps=7", "train.log_every=3")
    res = trainer.pretrain(cfg, tmp_path / "run", progress=False)
    p, cpu, info = planning.plan(cfg), torch.device("cpu"), DistInfo()
    c, t = p.cfg, p.cfg.train
    cache = FeatureCache.build(heldout.select_rows(c)[0], c.frontend, c.data.cache_dir, False)
    ds = ClipDataset(cache, p.clip_frames, t.seed, t.batch_size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as train.threads=1: the same reduction order
    try:
        model, _ = trainer._seeded_model(c, cpu)
        opt = trainer.build_optimizer(model, t, p.lr, cpu)
        sched = Schedule(p.lr, p.warmup, p.steps, t.min_lr_frac)
        losses = []
        for k in range(p.steps):
            noise = trainer.mask_noise(t.seed, k, cpu, info, ds.local_batch, p.tokens_per_example)
            lr = sched.lr_at(k)
            losses.append(float(trainer.train_step(model, opt, ds[k], noise, lr, t.precision,
                                                   t.grad_clip)))  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    trained = load_mae(tmp_path / "run")[0].state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())
    # checkpoints 1, 2, 4 (fractions 1/64 .. 1/2 of 7), log lines at 3, 6, 7
    assert p.checkpoint_steps == [1, 2, 4]
    side = {s: read_sidecar(path) for s, _, path in list_checkpoints(tmp_path / "run")}
    assert "loss" not in side[1]
    want = {1: (losses[0], 1), 2: (sum(losses[:2]) / 2, 2), 4: (losses[3], 1),
            7: (losses[6], 1)}  # fmt: skip
    for s, (mean, n) in want.items():
        assert side[s]["loss_window"] == pytest.approx(mean, rel=1e-6)
        assert side[s]["loss_window_steps"] == n
        assert side[s]["loss_batch"] == pytest.approx(losses[s - 1], rel=1e-6)
    assert side[7]["loss_window"] == res.final_loss == _losses(tmp_path / "run")[-1][1]


def test_resume_reproduces_the_uninterrupted_curve(pool, tmp_path, monkeypatch):
    cfg = _cfg(pool, tmp_path / "cache", "train.steps=24")
    full = trainer.pretrain(cfg, tmp_path / "full", progress=False)

    real = Schedule.lr_at

    def killed_at_17(self, step):
        if step == 17:  # after checkpoints 1, 2, 3, 6, 12 and log lines up to step 16
            raise KeyboardInterrupt
        return real(self, step)

    monkeypatch.setattr(Schedule, "lr_at", killed_at_17)
    with pytest.raises(KeyboardInterrupt):
        trainer.pretrain(cfg, tmp_path / "resumed", progress=False)
    assert not (tmp_path / "resumed" / "done.json").exists()
    assert _losses(tmp_path / "resumed")[-1][0] == 16
    with open(tmp_path / "resumed" / "metrics.jsonl", "a") as f:
        f.write('{"step": 18, "lo')  # as if kill -9 hit in the middle of a write
    monkeypatch.setattr(Schedule, "lr_at", real)
    resumed = trainer.pretrain(cfg, tmp_path / "resumed", progress=False)
    a, b = _losses(tmp_path / "full"), _losses(tmp_path / "resumed")
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(2, 25, 2))
    for (_, la), (_, lb) in zip(a, b, strict=True):
        assert lb == pytest.approx(la, rel=1e-6, abs=1e-7)
    if importlib.util.find_spec("tensorboard") is not None:  # the TensorBoard curve too:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(tmp_path / "resumed" / "tb"))  # steps 14, 16 of the
        acc.Reload()  # interrupted attempt are hidden, trained again after step 12
        tb = [(e.step, e.value) for e in acc.Scalars("train/loss")]
        assert [s for s, _ in tb] == list(range(2, 25, 2))
        assert [v for _, v in tb] == pytest.approx([lb for _, lb in b], rel=1e-6)
    assert resumed.final_loss == pytest.approx(full.final_loss, rel=1e-6)
    assert resumed.heldout_loss == pytest.approx(full.heldout_loss, rel=1e-6)
    wa = load_mae(tmp_path / "full")[0].state_dict()
    wb = load_mae(tmp_path / "resumed")[0].state_dict()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_changed_config_in_existing_folder_and_bad_inputs(pool, tmp_path, capsys):
    run = tmp_path / "run"
    cfg = _cfg(pool, tmp_path / "cache", "train.steps=2")
    trainer.pretrain(cfg, run, progress=False)
    other = _cfg(pool, tmp_path / "cache", "train.steps=3")
    with pytest.raises(ConfigError, match="different config"):
        trainer.pretrain(other, run, progress=False)
    assert trainer.pretrain(other, run, progress=False, resume=False).steps == 3
    # CLI: a bad key or a missing pool fails in one line, before any work
    assert main(["pretrain", "--out", str(tmp_path / "x"), "--set", "train.stepz=3"]) == 2
    assert main(["pretrain", "--out", str(tmp_path / "x"), "--set", "data.pool=/nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("audioscale: error: config key 'train.stepz'")
    assert "manifest not found" in err[-1] and len(err) == 2
    assert not (tmp_path / "x").exists()


def test_subset_hours_bad_files_no_heldout_and_bf16(tmp_path):
    pool = synthetic_pool(tmp_path / "pool", n_train=6, n_heldout=0, seed=4)
    (pool / "zz_corrupt.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    with open(pool / "manifest.csv", "a") as f:
        f.write("zz_corrupt.wav,2.0,noise,train\n")
    sets = ["data.hours=0.002", "train.steps=3", "train.precision=bf16", "train.log_every=1"]
    cfg = _cfg(pool, tmp_path / "cache", *sets)
    res = trainer.pretrain(cfg, tmp_path / "run", progress=False)
    assert res.heldout_loss is None  # no heldout split: no held-out loss, no failure
    card = json.loads((tmp_path / "run" / "model_card.json").read_text())
    assert card["data"]["subset_hours"] == pytest.approx(0.002)
    assert res.data_hours <= 0.002 + 1e-6  # the subset minus any unreadable file
    assert res.epochs == pytest.approx(res.examples * 1.0 / (res.data_hours * 3600))
    assert all(math.isfinite(loss) for _, loss in _losses(tmp_path / "run"))
    # the whole pool (hours unset) reaches the corrupt file: it is skipped and reported
    res = trainer.pretrain(_cfg(pool, tmp_path / "cache", "train.steps=1"), tmp_path / "all")
    card = json.loads((tmp_path / "all" / "model_card.json").read_text())
    assert res.skipped_files == 1 and card["data"]["files"] == 6
    assert "zz_corrupt.wav" in card["data"]["skipped_files"][0]["path"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_requested_without_cuda_is_one_line(pool, tmp_path, capsys):
    sets = [f"data.pool={pool}", f"data.cache_dir={tmp_path}", "train.device=cuda"]
    args = ["pretrain", "--out", str(tmp_path / "r")] + [x for s in sets for x in ("--set", s)]
    assert main(args) == 2
    assert "train.device" in capsys.readouterr().err


def test_unparsable_device_is_a_config_error_before_work(pool, tmp_path):
    """A device string torch cannot parse (``gpu``) fails in plan() with the key, not as a
    RuntimeError traceback from torch.device after the pool is read."""
    with pytest.raises(ConfigError, match="train.device"):
        planning.plan(_cfg(pool, tmp_path, "train.device=gpu"))


def test_out_that_is_a_file_is_one_line(pool, tmp_path, capsys):
    f = tmp_path / "run.yaml"
    f.write_text("x: 1\n")
    sets = [f"data.pool={pool}", f"data.cache_dir={tmp_path}", "model.preset=atto"]
    args = ["pretrain", "--out", str(f)] + [x for s in sets for x in ("--set", s)]
    assert main(args) == 2
    assert "is a file" in capsys.readouterr().err
