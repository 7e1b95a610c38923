"""One run identity: ``RunConfig.run_hash`` covers what determines a run's
weights and nothing else; ``TrainConfig.budget()`` is the one reading of the budget.

Evaluation (``eval.*``) and execution settings (device, log_every, cache folder, …) of a
finished study can change without retraining any run; a run budgeted by FLOPs or by
examples is named and costed by that budget, not by the default 200 steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sweep_helpers import make_corpus, tiny_spec

from audioscale.config import (
    DEFAULT_STEPS,
    EXECUTION_KEYS,
    WSD_KEYS,
    Budget,
    RunConfig,
    dump_yaml,
    load_config,
)
from audioscale.errors import ConfigError
from audioscale.sweep.cost import job_cost
from audioscale.sweep.runner import run_sweep
from audioscale.sweep.spec import Job, budget_tag, load_sweep
from audioscale.sweep.store import Store

# ----------------------------------------------------------------------------- the hash

SAME_RUN = [
    "name=other",
    "eval.tasks=[/some/tasks]",
    "eval.protocols=[knn]",
    "eval.rankme_samples=100",
    "eval.rankme_level=frame",
    "eval.rankme_pool=/some/pool",
    "train.log_every=1",
    "train.state_every_s=5",
    "train.device=cuda",
    "train.device=cpu",
    "train.threads=2",
    "train.compile=true",
    "data.cache_dir=/elsewhere",
    "data.num_workers=3",
]
OTHER_RUN = [
    "data.pool=/other/pool",
    "data.hours=0.5",
    "data.subset_seed=1",
    "data.clip_seconds=1.0",
    "frontend.n_mels=128",
    "model.preset=femto",
    "model.mask_ratio=0.5",
    "train.seed=1",
    "train.lr=0.002",
    "train.batch_size=32",
    "train.steps=300",
    "train.examples=6400",
    "train.flops=1e13",
    "train.warmup_frac=0.1",
    "train.precision=bf16",
    "train.checkpoint_fractions=[0.5]",
    "train.schedule=wsd",
    "train.warmup_steps=3",
]


@pytest.mark.parametrize("override", SAME_RUN)
def test_eval_and_execution_keys_leave_the_run_hash(override):
    assert load_config(None, [override]).run_hash() == RunConfig().run_hash()


@pytest.mark.parametrize("override", OTHER_RUN)
def test_what_determines_the_weights_changes_the_run_hash(override):
    assert load_config(None, [override]).run_hash() != RunConfig().run_hash()


def test_identity_is_every_key_but_name_eval_and_execution():
    full = RunConfig().model_dump(mode="json")
    ident = RunConfig().identity()
    assert set(ident) == {"data", "frontend", "model", "train"}
    for section, keys in ident.items():
        dropped = set(full[section]) - set(keys)
        # keys added later are left out at their defaults (the ids of older runs stay),
        # and the cooldown keys of a cosine run (they do not act)
        later = {"schedule", "warmup_steps", *WSD_KEYS} if section == "train" else set()
        assert dropped == set(EXECUTION_KEYS.get(section, ())) | later, section
    assert "precision" in ident["train"] and "checkpoint_fractions" in ident["train"]


def test_resume_check_uses_the_same_identity(tmp_path):
    """A folder trained under one config is taken up by a config of the same identity
    (eval and execution keys differ) and refused by one of another identity."""
    from audioscale.data.corpus import synthetic_pool
    from audioscale.train import trainer
    from audioscale.train.plan import plan

    pool = synthetic_pool(tmp_path / "pool", n_train=6, n_heldout=2, seed=0)
    base = [f"data.pool={pool}", f"data.cache_dir={tmp_path / 'cache'}",
            "data.clip_seconds=1.0", "model.preset=atto", "train.batch_size=4",
            "train.threads=1", "train.steps=2"]  # fmt: skip
    cfg = load_config(None, base)
    run = tmp_path / "run"
    trainer.pretrain(cfg, run, progress=False)
    stamp = (run / "done.json").stat().st_mtime_ns
    card = json.loads((run / "model_card.json").read_text())
    assert card["run_hash"] == cfg.run_hash() == plan(cfg).run_hash  # as the sweep names it
    assert card["execution"]["device"] == "cpu" and card["execution"]["precision"] == "fp32"
    same = load_config(None, [*base, "eval.tasks=[x]", "train.log_every=1", "train.device=auto",
                              f"data.cache_dir={tmp_path / 'other-cache'}"])  # fmt: skip
    assert trainer.pretrain(same, run, progress=False).steps == 2
    assert (run / "done.json").stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match="different config"):
        trainer.pretrain(load_config(None, [*base, "train.seed=3"]), run, progress=False)


# ----------------------------------------------------------------------------- budgets


def test_budget_reads_the_one_budget_set():
    assert RunConfig().train.budget() == Budget("steps", DEFAULT_STEPS)
    assert load_config(None, ["train.steps=30"]).train.budget() == Budget("steps", 30)
    assert load_config(None, ["train.examples=640"]).train.budget() == Budget("examples", 640)
    assert load_config(None, ["train.hours=0.5"]).train.budget() == Budget("hours", 0.5)
    assert load_config(None, ["train.flops=1e12"]).train.budget() == Budget("flops", 1e12)
    with pytest.raises(ConfigError, match="one budget"):
        load_config(None, ["train.steps=30", "train.flops=1e12"])
    b = Budget("flops", 1e12)
    assert b.steps(8, 1.0, 1e9) == 125 and Budget("examples", 100).steps(8, 1.0, 1.0) == 13
    assert Budget("hours", 0.1).steps(8, 1.0, 1.0) == 45 and b.to_dict() == {
        "kind": "flops", "value": 1e12}  # fmt: skip


def test_a_run_budgeted_by_examples_round_trips_its_config_yaml(tmp_path):
    """config.yaml of a run budgeted by examples (or FLOPs) loads again (it used to carry
    the default ``steps: 200`` beside the real budget and failed 'set one budget')."""
    for extra in ("train.examples=640", "train.flops=1e12"):
        cfg = load_config(None, [extra])
        path = tmp_path / "config.yaml"
        path.write_text(dump_yaml(cfg))
        again = load_config(path)
        assert again.train.budget() == cfg.train.budget() and again.run_hash() == cfg.run_hash()


def _job(*overrides: str) -> Job:
    cfg = load_config(None, ["model.preset=femto", "train.batch_size=32", *overrides])
    return Job("x", "trained", cfg)


def test_runs_are_named_and_costed_by_their_budget(tmp_path):
    from audioscale.train.plan import plan

    assert budget_tag(_job().config) == "s200"
    assert budget_tag(_job("train.examples=6400").config) == "e6400"
    assert budget_tag(_job("train.hours=0.5").config) == "th0p5"
    assert budget_tag(_job("train.flops=1e13").config) == "f1e13"
    assert budget_tag(_job("train.flops=1.5e12").config) == "f1p5e12"
    # costed by the budget: FLOPs ≈ the FLOPs, examples = the steps they make
    f1, f2 = job_cost(_job("train.flops=1e13")), job_cost(_job("train.flops=2e13"))
    assert f1 == pytest.approx(1e13, rel=0.01) and f2 == pytest.approx(2 * f1, rel=0.01)
    assert job_cost(_job("train.examples=6400")) == job_cost(_job("train.steps=200"))
    assert job_cost(_job("train.examples=640")) == pytest.approx(job_cost(_job()) / 10)
    # the estimate is within a factor 2 of the trainer's accounting at the same budget
    p = plan(_job("train.steps=100").config)
    exact = p.steps * 32 * p.flops_per_example
    assert 0.5 < job_cost(_job("train.steps=100")) / exact < 2
    # in a sweep: the names carry the budget, never the default steps
    root = tmp_path
    spec = {"name": "b", "base": {"data": {"pool": str(root)}, "model": {"preset": "atto"}},
            "axes": {"flops": [1e12, 2e12]}, "runs": [{"examples": 640}],
            "baselines": {"random_init": False, "logmel_stats": False}}  # fmt: skip
    ids = [j.run_id for j in load_sweep(spec).jobs]
    assert [i.split("-")[2] for i in ids] == ["f1e12", "f2e12", "e640"]
    assert not any("s200" in i for i in ids)


# ----------------------------------------------------------------------------- a study


def _stamps(run_dir: Path) -> dict[str, int]:
    names = ["done.json", "metrics.jsonl", "train_state.pt", "checkpoints/final.safetensors"]
    return {n: (run_dir / n).stat().st_mtime_ns for n in names}


def test_changed_eval_or_execution_settings_never_retrain(tmp_path):
    """A finished study rerun with another log_every, device and feature-cache folder does
    nothing; with another task set it re-evaluates every run (the baseline too) from the
    stored checkpoints and trains none: run ids, done.json and checkpoints stay as they were."""
    root = make_corpus(tmp_path / "c", n_train=8, n_heldout=4, per_class=4)
    spec = tiny_spec(root, axes={"steps": [4]},
                     baselines={"random_init": False, "logmel_stats": True})  # fmt: skip
    out = tmp_path / "study"
    run_sweep(spec, out, workers=1, progress=False)
    with Store(out / "study.db") as store:
        runs = {r["run_id"]: r for r in store.runs()}
    (rid,) = [r for r, v in runs.items() if v["kind"] == "trained"]
    run_dir = out / "runs" / rid
    trained = _stamps(run_dir)
    card = json.loads((run_dir / "model_card.json").read_text())
    assert rid.endswith("-" + card["run_hash"])  # one identity: sweep id = trainer's hash

    # execution settings only: nothing runs at all
    exe = json.loads(json.dumps(spec))
    exe["base"]["train"].update(log_every=1, device="auto")
    exe["base"]["data"]["cache_dir"] = str(root / "other-cache")
    results = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/result.json")}
    s = run_sweep(exe, out, workers=1, progress=False)
    assert s["counts"]["done"] == 2 and s["sweep_runs"] == 2
    with Store(out / "study.db") as store:
        assert {r["run_id"]: r["attempts"] for r in store.runs()} == {
            r: v["attempts"] for r, v in runs.items()}  # fmt: skip
    assert {p: p.stat().st_mtime_ns for p in results} == results
    assert _stamps(run_dir) == trained and not (root / "other-cache").exists()

    # another task set: evaluated again, trained never
    ev = json.loads(json.dumps(exe))
    ev["base"]["eval"]["tasks"] = [str(root / "tasks" / "tone")]
    s = run_sweep(ev, out, workers=1, progress=False)
    assert s["counts"]["done"] == 2
    with Store(out / "study.db") as store:
        after = {r["run_id"]: r for r in store.runs()}
        rows = store.results()
    assert set(after) == set(runs)  # the same run ids
    assert all(after[r]["attempts"] == runs[r]["attempts"] + 1 for r in runs)
    assert _stamps(run_dir) == trained  # not retrained
    for row in rows:
        assert row["task.tone.linear"] is not None and "task.noise.linear" not in row


def test_run_folders_from_before_the_none_default_still_load():
    """config.yaml files once wrote the old default ``steps: 200`` beside the real budget."""
    from audioscale.config import TrainConfig

    t = TrainConfig(steps=200, flops=1e12)
    assert t.steps is None and t.budget().kind == "flops"
    with pytest.raises(ValueError, match="one budget"):
        TrainConfig(steps=300, flops=1e12)  # a real choice of both is still refused
