"""Sweep spec expansion: grid, zip, explicit runs, shorthands, ids, baselines, errors."""

from __future__ import annotations

import pytest

from audioscale.errors import ConfigError
from audioscale.sweep.spec import expand, load_sweep, run_id

BASE = {"train": {"steps": 20, "batch_size": 4}, "model": {"preset": "atto"}}


def test_grid_product_with_shorthands_and_order():
    spec = {
        "name": "t",
        "base": BASE,
        "axes": {"size": ["atto", "pico"], "data_hours": [0.1, 0.2, 0.4]},
    }
    cfgs = expand(spec)
    assert len(cfgs) == 6
    pairs = [(c.model.preset, c.data.hours) for c in cfgs]
    assert pairs == [(p, h) for p in ["atto", "pico"] for h in [0.1, 0.2, 0.4]]  # last axis fastest
    assert all(c.train.steps == 20 and c.train.batch_size == 4 for c in cfgs)  # base kept


def test_zip_groups_vary_together_and_multiply_with_axes():
    spec = {
        "base": BASE,
        "axes": {"steps": [10, 30]},
        "zip": [{"model.width": [64, 128, 192], "heads": [2, 4, 6], "depth": [2, 3, 4]}],
    }
    cfgs = expand(spec)
    assert len(cfgs) == 6
    for c in cfgs:
        assert c.model.width // c.model.heads == 32 and c.model.depth == c.model.width // 64 + 1
    assert sorted({c.train.steps for c in cfgs}) == [10, 30]


def test_explicit_runs_appended_and_duplicates_dropped():
    spec = {
        "base": BASE,
        "axes": {"mask": [0.5, 0.75]},
        "runs": [{"mask": 0.75}, {"family": "conformer", "seed": 3}],  # first equals a grid point
    }
    cfgs = expand(spec)
    assert len(cfgs) == 3
    assert cfgs[-1].model.family == "conformer" and cfgs[-1].train.seed == 3
    assert len({run_id(c) for c in cfgs}) == 3


def test_run_id_is_readable_slug_plus_hash():
    spec = {"base": BASE, "axes": {"size": ["pico"], "data_hours": [0.5], "steps": [300, 600]}}
    cfgs = expand(spec)
    rid = run_id(cfgs[0])
    assert rid.startswith("pico-h0p5-s300-")
    assert rid.rsplit("-", 1)[1] == cfgs[0].run_hash() and len(cfgs[0].run_hash()) == 12
    # the hash is the identity: same config → same id, any change → different id
    assert run_id(expand(spec)[0]) == rid
    assert run_id(cfgs[1]) != rid


def test_varied_extra_axes_show_in_the_slug():
    spec = {"base": BASE, "axes": {"mask": [0.5, 0.9], "clip": [1.0, 2.0]}}
    names = [c.name for c in expand(spec)]
    assert "atto-hall-s20-m0p5-c1" in names and "atto-hall-s20-m0p9-c2" in names


def test_baselines_one_random_init_per_architecture_and_one_logmel():
    spec = {
        "base": BASE,
        "axes": {"size": ["atto", "femto"], "steps": [10, 20], "mask": [0.5, 0.8]},
    }
    sweep = load_sweep(spec)
    kinds = [j.kind for j in sweep.jobs]
    assert kinds.count("trained") == 8
    assert kinds.count("random-init") == 2  # mask ratio and steps do not change the encoder
    assert kinds.count("baseline") == 1
    ids = [j.run_id for j in sweep.jobs]
    assert len(set(ids)) == len(ids)
    off = load_sweep(spec | {"baselines": {"random_init": False, "logmel_stats": False}})
    assert all(j.kind == "trained" for j in off.jobs)


def test_random_init_seeds_add_one_encoder_per_seed_and_keep_the_first_id():
    spec = {"base": BASE, "axes": {"size": ["atto", "femto"], "steps": [10, 20]}}
    one = [j for j in load_sweep(spec).jobs if j.kind == "random-init"]
    three = [j for j in load_sweep(spec | {"baselines": {"random_init_seeds": 3}}).jobs
             if j.kind == "random-init"]  # fmt: skip
    assert [j.config.name for j in three] == [
        "random-atto", "random-atto-seed1", "random-atto-seed2",
        "random-femto", "random-femto-seed1", "random-femto-seed2",
    ]  # fmt: skip
    assert [j.config.train.seed for j in three] == [0, 1, 2, 0, 1, 2]
    assert {j.run_id for j in one} <= {j.run_id for j in three}  # seed 0 keeps its run id
    assert len({j.run_id for j in three}) == 6
    with pytest.raises(ConfigError, match="random_init_seeds"):
        load_sweep(spec | {"baselines": {"random_init_seeds": 0}})
    # a seed axis overlaps the seeds: each (architecture, seed) is one job, once
    seeded = load_sweep({"base": BASE, "axes": {"seed": [0, 1]},
                         "baselines": {"random_init_seeds": 3}})  # fmt: skip
    rand = [j for j in seeded.jobs if j.kind == "random-init"]
    assert sorted(j.config.train.seed for j in rand) == [0, 1, 2, 3]
    assert len({j.run_id for j in seeded.jobs}) == len(seeded.jobs)


def test_random_init_names_tell_architectures_of_one_size_apart():
    spec = {"base": BASE, "axes": {"family": ["vit", "conformer"], "patch": ["time", "square"]}}
    names = [j.config.name for j in load_sweep(spec).jobs if j.kind == "random-init"]
    assert sorted(names) == [
        "random-atto", "random-atto-conformer", "random-atto-conformer-square",
        "random-atto-square",
    ]  # fmt: skip


def test_study_settings_parsed():
    sweep = load_sweep({"base": BASE, "study": {"workers": 3, "executor": "ray"}})
    assert sweep.settings.workers == 3 and sweep.settings.executor == "ray"
    assert len(sweep.trained) == 1  # no axes: the base config is the one run


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"base": BASE, "axes": {"model.widht": [64]}}, "run 0: model.widht"),
        ({"base": BASE, "axes": {"steps": [10, -5]}}, "run 1: train.steps"),
        ({"base": BASE, "runs": [{}, {"mask": 1.5}]}, "run 1: model.mask_ratio"),
        ({"base": BASE, "zip": [{"width": [64, 128], "heads": [2]}]}, "zip[0]"),
        ({"base": BASE, "axes": {"steps": []}}, "axes.steps"),
        ({"base": BASE, "axis": {"steps": [1]}}, "axis"),
        ({"base": {"model": {"bogus": 1}}}, "model.bogus"),
        ({"base": BASE, "axes": {"eval.rankme_samples": [10, 20]}}, "eval"),
    ],
)
def test_bad_specs_fail_before_work_with_one_line(spec, needle):
    with pytest.raises(ConfigError) as e:
        load_sweep(spec)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg


def test_yaml_file_round_trip(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: y\nbase: {train: {steps: 5}}\naxes: {size: [atto, pico]}\n")
    sweep = load_sweep(p)
    assert sweep.name == "y" and [j.config.model.preset for j in sweep.trained] == ["atto", "pico"]
    with pytest.raises(ConfigError, match="not found"):
        load_sweep(tmp_path / "missing.yaml")


def _encoder_params(cfg) -> int:
    import torch

    from audioscale.models.accounting import count_params
    from audioscale.models.mae import build_mae

    with torch.device("meta"):  # shapes only: no memory, no init time
        return count_params(build_mae(cfg.model, cfg.frontend))["encoder"]


@pytest.mark.parametrize(
    ("name", "lo", "hi"),
    [("demo", 5e4, 2e6), ("unify", 5e4, 2e6), ("gpu", 5e5, 2.5e7), ("gpu-hour", 5e5, 1.2e8)],
)
def test_presets_are_valid_studies(name, lo, hi):
    from audioscale.models.ladder import resolve
    from audioscale.sweep.runner import preset_path, resolve_source

    assert resolve_source(name) == preset_path(name)
    sweep = load_sweep(preset_path(name))
    trained = [j.config for j in sweep.trained]
    assert len(trained) >= 12
    models = [resolve(c.model) for c in trained]
    assert len({m.width for m in models}) >= 3 and len({m.depth for m in models}) >= 3
    assert len({c.data.hours for c in trained}) >= 3 and len({c.train.steps for c in trained}) >= 2
    # the CPU demo uses the full corpus; the GPU studies its synthesis-enlarged pool
    corpus = {"demo": ("full", "data/demo"), "unify": ("full", "data/demo"),
              "gpu": ("large", "data/demo-large")}  # fmt: skip
    size, folder = corpus.get(name, corpus["gpu"])
    assert sweep.settings.demo == size and sweep.settings.demo_dir == folder
    assert sweep.base.eval.tasks == [f"{folder}/tasks"] and sweep.base.data.pool == f"{folder}/pool"
    params = [_encoder_params(c) for c in trained]
    assert lo <= min(params) and max(params) <= hi
    if name in ("demo", "unify"):
        assert len({c.model.mask_ratio for c in trained}) == 3
        assert all(c.train.device == "cpu" and c.train.lr is None for c in trained)  # lr rule


def test_unify_varies_every_axis_of_the_law_once_beyond_the_demo():
    from audioscale.scaling.axes import AXES, base_values, varies
    from audioscale.sweep.runner import preset_path

    demo, unify = (load_sweep(preset_path(n)) for n in ("demo", "unify"))
    assert {j.config.run_hash() for j in demo.trained} < {
        j.config.run_hash() for j in unify.trained
    }
    rows = []
    for j in unify.trained:
        m, c = j.config.model, j.config
        from audioscale.models.ladder import resolve

        r = resolve(m)
        rows.append({"width": r.width, "depth": r.depth, "data_hours": c.data.hours,
                     "examples_seen": c.train.steps * c.train.batch_size,
                     "clip_seconds": c.data.clip_seconds, "mask_ratio": m.mask_ratio,
                     "family": m.family, "patch": m.patch})  # fmt: skip
    masks = varies(rows, base_values(rows))
    assert set(masks) == set(AXES) and all(m.any() and (~m).sum() >= 4 for m in masks.values())


def test_study_tune_json_sets_the_lr_of_rule_runs_only(tmp_path):
    """A study folder's tune.json (audioscale tune) replaces the recipe lr of trained runs
    that do not set train.lr; explicit lrs and baselines are untouched; ids follow the lr."""
    import json

    from audioscale.config import ModelConfig
    from audioscale.models.arch import model_architecture as arch_of
    from audioscale.sweep.runner import apply_tuned_lr
    from audioscale.sweep.spec import load_sweep

    spec = {
        "name": "t",
        "base": {"train": {"steps": 5}},
        "axes": {"size": ["atto", "femto"]},
        "runs": [{"size": "atto", "train.lr": 0.5}],
    }
    sweep = load_sweep(spec)
    assert apply_tuned_lr(sweep, tmp_path) is sweep  # no tune.json: nothing changes
    atto = arch_of(ModelConfig(preset="atto"))
    tune = {
        "version": 1,
        "sizes": [{"size": "atto", "model": atto, "best_lr": 0.0042}],
        "fit": {"c": 0.1, "k": 1.0},
        "family": atto["family"],
        "patch": atto["patch"],
        "batch_size": 64,
    }
    (tmp_path / "tune").mkdir()
    (tmp_path / "tune" / "tune.json").write_text(json.dumps(tune))
    tuned = apply_tuned_lr(sweep, tmp_path)
    by_lr = {}
    for old, new in zip(sweep.jobs, tuned.jobs, strict=True):
        if new.kind != "trained" or old.config.train.lr is not None:
            assert new == old
            continue
        assert new.run_id != old.run_id
        by_lr[new.config.model.preset] = new.config.train.lr
    assert by_lr["atto"] == pytest.approx(0.0042)  # the size's own pick (same batch 64)
    assert by_lr["femto"] == pytest.approx(0.1 / 96)  # the fitted c * width^-k
