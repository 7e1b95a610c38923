"""WSD schedule, trunk identity, and trunk-and-branch training against runs from scratch
(tiny synthetic pool, atto preset, CPU, one thread)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from train_helpers import atto_config

from audioscale.config import RunConfig
from audioscale.data.corpus import synthetic_pool
from audioscale.errors import ConfigError, CorruptArtefactError
from audioscale.train import checkpoint as ckpt
from audioscale.train import plan as planning
from audioscale.train import trainer, trunk
from audioscale.train.schedule import Schedule, cooldown_steps


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    return synthetic_pool(tmp_path_factory.mktemp("pool"), n_train=10, n_heldout=3, seed=0)


def _cfg(pool: Path, cache: Path, *extra: str) -> RunConfig:
    wsd = ["train.schedule=wsd", "train.warmup_steps=2", "train.cooldown_fraction=0.25",
           "train.checkpoint_fractions=[0.25, 0.5]"]  # fmt: skip
    return atto_config(pool, cache, *wsd, *extra)


def _weights(run: Path, which: int | str = "final") -> dict[str, torch.Tensor]:
    return ckpt.load_mae(run, which)[0].state_dict()


def _same_bits(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- schedule


def test_wsd_schedule_follows_its_definition():
    s = Schedule(peak=1.0, warmup=4, total=100, min_lr_frac=0.1, cooldown=20, shape="1-sqrt")
    assert s.decay_start == 80
    assert [s.lr_at(k) for k in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert all(s.lr_at(k) == 1.0 for k in range(4, 80))
    for k in range(80, 100):
        q = (k - 79) / 20
        assert s.lr_at(k) == pytest.approx(0.1 + 0.9 * (1 - math.sqrt(q)), abs=1e-15)
    assert s.lr_at(99) == pytest.approx(0.1, abs=1e-15)  # the last update uses lo
    lin = Schedule(1.0, 0, 10, 0.0, cooldown=4, shape="linear")
    assert [lin.lr_at(k) for k in range(6, 10)] == pytest.approx([0.75, 0.5, 0.25, 0.0])
    trunk_ = Schedule(1.0, 2, 50, 0.0, cooldown=0)  # never decays
    assert all(trunk_.lr_at(k) == 1.0 for k in range(2, 50))
    with pytest.raises(ValueError, match="shape"):
        Schedule(1.0, 0, 10, cooldown=2, shape="cosine")
    assert [cooldown_steps(t, 0.2) for t in (1, 3, 10, 1000)] == [1, 1, 2, 200]


def test_wsd_lr_before_the_decay_does_not_depend_on_the_budget(pool, tmp_path):
    short = planning.plan(_cfg(pool, tmp_path, "train.steps=40"))
    long = planning.plan(_cfg(pool, tmp_path, "train.steps=400"))
    assert short.warmup == long.warmup and short.lr == long.lr
    lrs = [(short.schedule.lr_at(k), long.schedule.lr_at(k)) for k in range(30)]
    assert all(a == b for a, b in lrs)
    assert (short.decay_start, long.decay_start) == (30, 300)
    default = planning.plan(_cfg(pool, tmp_path, "train.steps=400", "train.warmup_steps=null"))
    assert default.warmup == 40  # 2 / (1 - beta2) at beta2 = 0.95, whatever the budget
    with pytest.raises(ConfigError, match="cooldown_fraction"):
        planning.plan(_cfg(pool, tmp_path, "train.steps=45", "train.warmup_steps=null"))


def test_identity_cosine_ids_unchanged_and_trunk_identity():
    plain = RunConfig()
    assert plain.run_hash() == RunConfig(train={"schedule": "cosine"}).run_hash()
    assert plain.run_hash() == RunConfig(train={"cooldown_fraction": 0.1}).run_hash()
    a = RunConfig(train={"schedule": "wsd", "steps": 1000, "cooldown_fraction": 0.1})
    b = RunConfig(train={"schedule": "wsd", "examples": 64000, "cooldown_fraction": 0.2,
                         "checkpoint_fractions": [0.5]})  # fmt: skip
    assert a.run_hash() != b.run_hash() and a.trunk_hash() == b.trunk_hash()
    assert a.run_hash() != plain.run_hash()
    for other in ({"seed": 1}, {"base_lr": 2e-3}, {"warmup_steps": 3}):
        c = RunConfig(train={"schedule": "wsd", "steps": 1000, **other})
        assert c.trunk_hash() != a.trunk_hash()
    with pytest.raises(ConfigError, match="wsd"):
        plain.trunk_identity()


# ----------------------------------------------------------------------------- branches


def test_branches_equal_runs_from_scratch_bit_for_bit(pool, tmp_path):
    cache = tmp_path / "cache"
    budgets = (8, 16)
    cfgs = [_cfg(pool, cache, f"train.steps={t}") for t in budgets]
    tdir = tmp_path / "trunk"
    for cfg in cfgs:
        trainer.pretrain(cfg, tmp_path / f"scratch{cfg.train.steps}", progress=False)
    for cfg in reversed(cfgs):  # the longest first: the short one starts from a kept state
        trunk.train_branch(cfg, tmp_path / f"branch{cfg.train.steps}", tdir, cfgs, False)
    assert ckpt.kept_states(tdir) == [6, 12]
    assert trunk.read_branch(tmp_path / "branch8")["branched_at"] == 6
    for t in budgets:
        a, b = tmp_path / f"scratch{t}", tmp_path / f"branch{t}"
        assert _same_bits(_weights(a), _weights(b))
        names = [p.name for p in sorted((a / "checkpoints").glob("*.safetensors"))]
        assert names == [p.name for p in sorted((b / "checkpoints").glob("*.safetensors"))]
        for n in names:
            step = n[: -len(".safetensors")]
            step = "final" if step == "final" else int(step[len("step_") :])
            assert _same_bits(_weights(a, step), _weights(b, step))
            sa = json.loads((a / "checkpoints" / n).with_suffix(".json").read_text())
            sb = json.loads((b / "checkpoints" / n).with_suffix(".json").read_text())
            assert sa["fraction"] == sb["fraction"] and sa["weights"] == sb["weights"]
        la = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines()]
        lb = [json.loads(x) for x in (b / "metrics.jsonl").read_text().splitlines()]
        assert [(r["step"], r["loss"], r["lr"]) for r in la] == [
            (r["step"], r["loss"], r["lr"]) for r in lb
        ]


def test_a_later_budget_extends_the_trunk_and_a_missing_point_uses_an_earlier_state(pool, tmp_path):
    cache, tdir = tmp_path / "cache", tmp_path / "trunk"
    c8, c16 = (_cfg(pool, cache, f"train.steps={t}") for t in (8, 16))
    trunk.train_branch(c8, tmp_path / "b8", tdir, [c8], False)
    assert ckpt.kept_states(tdir) == [6]
    trunk.train_branch(c16, tmp_path / "b16", tdir, [c8, c16], False)  # extends 6 -> 12
    assert ckpt.kept_states(tdir) == [6, 12]
    assert sorted(p.name for p in (tdir / "checkpoints").glob("*.safetensors")) == [
        "step_000002.safetensors",
        "step_000004.safetensors",
        "step_000006.safetensors",
        "step_000008.safetensors",
        "step_000012.safetensors",
    ]
    # decay start 9 is not kept: from the state of 6, whose one earlier checkpoint (4) the
    # trunk holds
    c12 = _cfg(pool, cache, "train.steps=12", "train.checkpoint_fractions=[0.333]")
    trunk.train_branch(c12, tmp_path / "b12", tdir, [c12], False)
    assert trunk.read_branch(tmp_path / "b12")["branched_at"] == 6
    # checkpoints at 3 and 6 are not in the trunk: trained from scratch
    c12b = _cfg(pool, cache, "train.steps=12")
    trunk.train_branch(c12b, tmp_path / "b12b", tdir, [c12b], False)
    assert trunk.read_branch(tmp_path / "b12b") is None
    for cfg, name in ((c12, "b12"), (c16, "b16")):
        trainer.pretrain(cfg, tmp_path / f"s-{name}", progress=False)
        assert _same_bits(_weights(tmp_path / f"s-{name}"), _weights(tmp_path / name))


def test_a_corrupt_kept_state_is_dropped_and_an_earlier_one_used(pool, tmp_path, capsys):
    cache, tdir = tmp_path / "cache", tmp_path / "trunk"
    cfgs = [_cfg(pool, cache, f"train.steps={t}") for t in (8, 16)]
    trunk.train_branch(cfgs[1], tmp_path / "b16", tdir, cfgs, False)
    state = ckpt.kept_state_dir(tdir, 6) / ckpt.STATE_FILE
    state.write_bytes(state.read_bytes()[:100])  # truncated
    trunk.train_branch(cfgs[0], tmp_path / "b8", tdir, cfgs, False)  # its point: 6
    assert "kept training state unusable" in capsys.readouterr().err
    assert ckpt.kept_states(tdir) == [12] and trunk.read_branch(tmp_path / "b8") is None
    trainer.pretrain(cfgs[0], tmp_path / "s8", progress=False)
    assert _same_bits(_weights(tmp_path / "s8"), _weights(tmp_path / "b8"))


def test_a_folder_of_another_trunk_is_refused(pool, tmp_path):
    cache, tdir = tmp_path / "cache", tmp_path / "trunk"
    trunk.check_trunk(tdir, _cfg(pool, cache, "train.steps=8"))
    with pytest.raises(ConfigError, match="holds trunk"):
        trunk.check_trunk(tdir, _cfg(pool, cache, "train.steps=8", "train.seed=3"))
    with pytest.raises(ConfigError, match="wsd"):
        trunk.train_branch(_cfg(pool, cache, "train.schedule=cosine"), tmp_path / "x", tdir)


# ----------------------------------------------------------------------------- sweeps


def _sweep(budgets: list[int], fraction: float, schedule: str = "wsd"):
    from audioscale.sweep.spec import load_sweep

    train = {"schedule": schedule, "cooldown_fraction": fraction, "batch_size": 32}
    return load_sweep({
        "name": "x", "base": {"data": {"pool": "p", "clip_seconds": 1.0}, "train": train},
        "axes": {"size": ["atto", "femto", "pico"], "steps": budgets},
        "baselines": {"random_init": False, "logmel_stats": True},
    })  # fmt: skip


def test_sweep_cost_trunks_and_branches_against_scratch():
    from audioscale.sweep.cost import describe_cost, sweep_cost

    c = sweep_cost(_sweep([1000, 2000, 4000], 0.2).jobs)  # per size: trunk 3,200 + 1,400
    assert (c["trunk_steps"], c["branch_steps"], c["scratch_steps"]) == (9600, 4200, 21000)
    assert c["ratio"] == pytest.approx(13800 / 21000) and c["ratio"] <= 0.7
    five = sweep_cost(_sweep([500, 1000, 2000, 4000, 8000], 0.2).jobs)
    assert five["steps"] == 3 * (6400 + 3100) and five["ratio"] <= 0.65
    cos = sweep_cost(_sweep([1000, 2000, 4000], 0.2, "cosine").jobs)
    assert cos["steps"] == cos["scratch_steps"] == 21000 and cos["trunk_steps"] == 0
    assert describe_cost(c) == (
        "training 13,800 steps (trunks 9,600 + branches 4,200) instead of 21,000 from "
        "scratch (0.66x)"
    )


def test_branches_share_a_trunk_run_shortest_first_and_avoid_a_busy_trunk():
    from audioscale.sweep.cost import order_jobs, trunk_of
    from audioscale.sweep.local import next_job

    jobs = _sweep([1000, 2000, 4000], 0.2).jobs
    trained = [j for j in jobs if j.kind == "trained"]
    assert all(len(j.branches) == 3 for j in trained)
    assert len({trunk_of(j) for j in trained}) == 3
    order = order_jobs(jobs)
    assert order[-1].kind == "baseline"
    sizes = [j.config.model.preset for j in order[:9]]
    assert sizes == ["pico"] * 3 + ["femto"] * 3 + ["atto"] * 3  # the costliest trunk first
    assert [j.config.train.steps for j in order[:3]] == [1000, 2000, 4000]
    # pico's 1,000-step branch is extending the trunk: the next worker takes femto
    assert order[next_job(order[1:], [order[0]]) + 1].config.model.preset == "femto"
    assert next_job(order[1:3], [order[0]]) == 0  # nothing else to do: wait on the lock


def test_a_sibling_the_planner_refuses_does_not_stop_the_other_branches(pool, tmp_path):
    cache, tdir = tmp_path / "cache", tmp_path / "trunk"
    tiny, c8 = (_cfg(pool, cache, f"train.steps={t}") for t in (2, 8))
    with pytest.raises(ConfigError, match="cooldown_fraction"):  # its cooldown is its warm-up
        planning.plan(tiny)
    trunk.train_branch(c8, tmp_path / "b8", tdir, [tiny, c8], False)
    assert ckpt.kept_states(tdir) == [6] and trunk.read_branch(tmp_path / "b8")["branched_at"] == 6


def test_a_corrupt_trunk_checkpoint_is_not_linked_into_a_branch_again(pool, tmp_path, capsys):
    cache, tdir = tmp_path / "cache", tmp_path / "trunk"
    cfgs = [_cfg(pool, cache, f"train.steps={t}") for t in (8, 16)]
    b16 = tmp_path / "b16"
    trunk.train_branch(cfgs[1], b16, tdir, cfgs, False)
    path = b16 / "checkpoints" / "step_000004.safetensors"  # a hard link to the trunk's
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # bit rot in place: the trunk's file is the same inode
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptArtefactError):
        ckpt.load_mae(b16, 4)
    ckpt.discard_corrupt(b16, path)  # the sweep's repair (sweep.run.execute_repairing)
    trunk.train_branch(cfgs[1], b16, tdir, cfgs, False)
    ckpt.load_mae(b16, 4)  # intact: trained again, not linked to the corrupt file again
    assert "checkpoint" in capsys.readouterr().err
    assert trunk.read_branch(b16) is None  # from scratch: no trunk state before step 4 kept
    trunk.train_branch(cfgs[0], tmp_path / "b8", tdir, cfgs, False)  # needs 2 and 4: scratch
    ckpt.load_mae(tmp_path / "b8", 4)


def test_a_corrupt_trunk_training_state_resumes_from_its_last_kept_state(pool, tmp_path, capsys):
    cache, tdir = tmp_path / "cache", tmp_path / "trunk"
    c8, c16 = (_cfg(pool, cache, f"train.steps={t}") for t in (8, 16))
    trunk.train_branch(c8, tmp_path / "b8", tdir, [c8], False)
    state = tdir / ckpt.STATE_FILE
    state.write_bytes(state.read_bytes()[:100])  # the trunk's own resume state, truncated
    trunk.train_branch(c16, tmp_path / "b16", tdir, [c8, c16], False)  # extends 6 -> 12
    assert "training state" in capsys.readouterr().err
    assert ckpt.kept_states(tdir) == [6, 12]
    assert trunk.read_branch(tmp_path / "b16")["branched_at"] == 12
    trainer.pretrain(c16, tmp_path / "s16", progress=False)
    assert _same_bits(_weights(tmp_path / "s16"), _weights(tmp_path / "b16"))


def test_a_kill_between_the_state_and_its_kept_copy_still_keeps_the_point(pool, tmp_path):
    cache, tdir = tmp_path / "cache", tmp_path / "trunk"
    c8, c16 = (_cfg(pool, cache, f"train.steps={t}") for t in (8, 16))
    trunk.train_branch(c16, tmp_path / "b16", tdir, [c8, c16], False)
    # as a kill -9 after train_state.pt of step 12 and before its copy under states/
    (ckpt.kept_state_dir(tdir, 12) / ckpt.STATE_FILE).unlink()
    trunk.train_branch(c16, tmp_path / "again", tdir, [c8, c16], False)
    assert ckpt.kept_states(tdir) == [6, 12]
    assert trunk.read_branch(tmp_path / "again")["branched_at"] == 12


def test_a_trunk_without_its_training_state_resumes_from_its_last_kept_state(pool, tmp_path):
    cache, tdir = tmp_path / "cache", tmp_path / "trunk"
    c8, c16 = (_cfg(pool, cache, f"train.steps={t}") for t in (8, 16))
    trunk.train_branch(c8, tmp_path / "b8", tdir, [c8], False)
    (tdir / ckpt.STATE_FILE).unlink()  # as a kill inside restore_state
    kept6 = (ckpt.kept_state_dir(tdir, 6) / ckpt.STATE_FILE).stat().st_ino
    trunk.train_branch(c16, tmp_path / "b16", tdir, [c8, c16], False)
    assert (ckpt.kept_state_dir(tdir, 6) / ckpt.STATE_FILE).stat().st_ino == kept6  # not redone
    assert trunk.read_branch(tmp_path / "b16")["branched_at"] == 12


def test_a_sibling_that_decays_from_step_0_shares_the_trunk(pool, tmp_path):
    cache, tdir = tmp_path / "cache", tmp_path / "trunk"
    zero = ("train.warmup_steps=0",)
    c8 = _cfg(pool, cache, "train.steps=8", *zero)
    all_decay = _cfg(pool, cache, "train.steps=8", "train.cooldown_fraction=1", *zero)
    assert all_decay.trunk_hash() == c8.trunk_hash() and planning.plan(all_decay).decay_start == 0
    trunk.train_branch(c8, tmp_path / "b8", tdir, [all_decay, c8], False)
    trunk.train_branch(all_decay, tmp_path / "b0", tdir, [all_decay, c8], False)
    assert ckpt.kept_states(tdir) == [6] and trunk.read_branch(tmp_path / "b0") is None
