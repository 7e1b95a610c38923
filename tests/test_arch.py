"""One architecture key (models.arch) for random-init jobs, the learning pairing and tune,
and torch-free FLOP accounting that the sweep's job costs come from.

The pins below were computed on main before issue 22 (the architecture was then keyed
three ways and the sweep re-derived FLOPs): the packaged studies keep every job, run id,
job cost and random-init pairing, and every size keeps its FLOPs, to the last bit.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from audioscale.config import FrontendConfig, ModelConfig, RunConfig
from audioscale.models import accounting
from audioscale.models.arch import arch_id, architecture
from audioscale.models.ladder import SIZE_PRESETS, resolve
from audioscale.scaling import learning
from audioscale.sweep import store
from audioscale.sweep.cost import job_cost
from audioscale.sweep.runner import STUDY_PRESETS, preset_path
from audioscale.sweep.spec import load_sweep
from audioscale.train.tune import load_tuned_lr

# sha256 of the numbers as main computed them (float.hex, sorted-key JSON)
FLOPS_PIN = "999fc1151211e962ce2836d1f91a7ce0122793da32cd8cf71a0822c84ecbac43"
JOBS_PIN = "0f898038480cc94b8bf9fb3d84377d8fa7fd001433c2ccd4ac4cfd6342abd028"
FORMER_KEYS = ("family", "patch", "width", "depth", "heads")  # learning's key before


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def test_flops_of_every_size_are_unchanged():
    flops = {}
    for name in SIZE_PRESETS:
        for family in ("vit", "conformer"):
            for patch, n_mels in (("time", 64), ("square", 128)):
                for clip in (0.5, 1.0, 2.0, 10.0):
                    m = ModelConfig(preset=name, family=family, patch=patch)
                    fe = FrontendConfig(n_mels=n_mels)
                    flops[f"{name}/{family}/{patch}/{clip}"] = [
                        list(accounting.tokens_per_example(resolve(m), fe, clip)),
                        accounting.train_flops_per_example(m, fe, clip).hex(),
                        accounting.pretrain_forward_flops(m, fe, clip).hex(),
                        accounting.forward_flops_per_example(m, fe, clip).hex(),
                    ]
    assert len(flops) == 160
    assert _digest(flops) == FLOPS_PIN


def test_demo_and_unify_jobs_ids_and_costs_are_unchanged():
    jobs = {}
    for name in ("demo", "unify"):
        sweep = load_sweep(preset_path(name))
        jobs[name] = [[j.run_id, j.kind, float(job_cost(j)).hex()] for j in sweep.jobs]
    assert [len(v) for v in jobs.values()] == [30, 47]
    assert _digest(jobs) == JOBS_PIN


def _row(job) -> dict:
    """A results row as the store builds it: the resolved architecture columns (the run's
    model card) and the ``arch`` column."""
    cfg = job.config
    m = resolve(cfg.model)
    row = {"run_id": job.run_id, "kind": job.kind, "suite": 0.5}
    row |= {k: getattr(m, k) for k in FORMER_KEYS}
    row["arch"] = store._config_columns(cfg.model_dump(mode="json"), job.kind)["arch"]
    return row


def _pairing(rows: list[dict], key) -> dict[str, list[str]]:
    randoms = [r for r in rows if r["kind"] == "random-init"]
    return {
        r["run_id"]: sorted(b["run_id"] for b in randoms if key(b) == key(r))
        for r in rows
        if r["kind"] == "trained"
    }


@pytest.mark.parametrize("name", STUDY_PRESETS)
def test_every_preset_pairs_trained_runs_with_the_same_random_inits(name):
    rows = [_row(j) for j in load_sweep(preset_path(name)).jobs]
    before = _pairing(rows, lambda r: tuple(r[k] for k in FORMER_KEYS))
    after = _pairing(rows, learning._arch)
    assert after == before
    # and learning's means are over exactly those groups
    means = learning.random_init_means([r for r in rows if r["kind"] == "random-init"])
    for r in rows:
        if r["kind"] == "trained":
            assert sorted(means[learning._arch(r)]["run_ids"]) == after[r["run_id"]]
    if name in ("demo", "unify"):  # three init seeds for every trained run
        assert all(len(v) == 3 for v in after.values())


def test_the_key_is_complete_and_canonical():
    base = ModelConfig(preset="femto")
    spelt = ModelConfig(preset=None, width=96, depth=3, heads=3, decoder_depth=1)
    assert arch_id(spelt) == arch_id(base)  # a preset and its sizes spelt out are one
    assert arch_id(base.model_copy(update={"mask_ratio": 0.5, "norm_pix_loss": False})) == (
        arch_id(base)
    )  # training-only keys leave the network as it is
    assert arch_id(base.model_copy(update={"mlp_ratio": 2.0})) != arch_id(base)
    assert arch_id(base, FrontendConfig(n_mels=128)) != arch_id(base, FrontendConfig())
    assert "preset" not in architecture(base)["model"]


def test_mlp_ratio_or_n_mels_alone_gets_its_own_random_inits():
    """The bug of issue 22: these shared one random-init mean."""
    spec = {
        "base": {"model": {"preset": "atto"}, "train": {"steps": 5}},
        "runs": [{}, {"model.mlp_ratio": 2.0}, {"frontend.n_mels": 128}],
        "baselines": {"random_init_seeds": 2, "logmel_stats": False},
    }
    jobs = load_sweep(spec).jobs
    assert [j.kind for j in jobs].count("random-init") == 6
    rows = [_row(j) for j in jobs]
    pairs = _pairing(rows, learning._arch)
    groups = list(pairs.values())
    assert all(len(g) == 2 for g in groups) and len({tuple(g) for g in groups}) == 3
    means = learning.random_init_means([r for r in rows if r["kind"] == "random-init"])
    assert len(means) == 3


def test_tune_matches_the_whole_architecture():
    atto = ModelConfig(preset="atto")
    tuned = {
        "version": 1,
        "sizes": [{"size": "atto", "model": architecture(atto)["model"], "best_lr": 0.004}],
        "frontend": FrontendConfig().model_dump(mode="json"),
        "fit": {"c": 0.1, "k": 1.0},
        "family": "vit",
        "patch": "time",
        "batch_size": 64,
    }
    assert load_tuned_lr(tuned, atto) == 0.004
    assert load_tuned_lr(tuned, atto, frontend=FrontendConfig()) == 0.004
    fitted = pytest.approx(0.1 / 64)  # no exact match: the fitted rule at width 64
    assert load_tuned_lr(tuned, atto.model_copy(update={"mlp_ratio": 2.0})) == fitted
    assert load_tuned_lr(tuned, atto, frontend=FrontendConfig(n_mels=128)) == fitted
    # a tune.json written before the whole architecture was recorded matches on what it holds
    old = {**tuned, "sizes": [{**tuned["sizes"][0], "model": {"width": 64, "depth": 2}}]}
    del old["frontend"]
    assert load_tuned_lr(old, atto, frontend=FrontendConfig(n_mels=128)) == 0.004


def test_the_store_writes_the_arch_column():
    cfg = RunConfig.model_validate({"model": {"preset": "atto"}}).model_dump(mode="json")
    assert store._config_columns(cfg, "random-init")["arch"] == arch_id(ModelConfig(preset="atto"))
    assert store._config_columns(cfg, "baseline")["arch"] is None
    assert store._config_columns({"model": {"preset": "nope"}}, "trained")["arch"] is None
